// Command fakenm stands in for NetworkManager in mptcpd's integration
// tests. It connects to the bus at DBUS_SYSTEM_BUS_ADDRESS, takes
// NetworkManager's name and exports the devices its arguments describe,
// each as IFACE:STATE:FLAGS (e.g. p0:100:0x20; FLAGS "-" for a device with
// no applied connection). Then it prints "ready" and reads commands, one a
// line, from its standard input:
//
//	set IFACE:STATE:FLAGS    add or change a device, sending the signals
//	remove IFACE             remove a device
//
// answering each with "ok" or "error: ..." on its standard output. It
// exits when its standard input ends. Run through a link named
// NetworkManager, it is known by that name.
package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/godbus/dbus/v5"

	"github.com/mptcpd/mptcpd/nm/nmtest"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "fakenm:", err)
		os.Exit(1)
	}
}

func run() error {
	conn, err := dbus.ConnectSystemBus()
	if err != nil {
		return fmt.Errorf("connecting to the bus: %w", err)
	}
	defer conn.Close()
	fake, err := nmtest.Serve(conn)
	if err != nil {
		return err
	}
	for _, arg := range os.Args[1:] {
		d, err := parseDevice(arg)
		if err != nil {
			return err
		}
		if err := fake.Set(d); err != nil {
			return err
		}
	}
	fmt.Println("ready")
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		verb, arg, _ := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		switch verb {
		case "set":
			var d nmtest.Device
			if d, err = parseDevice(arg); err == nil {
				err = fake.Set(d)
			}
		case "remove":
			err = fake.Remove(arg)
		default:
			err = fmt.Errorf("unknown command %q", verb)
		}
		if err != nil {
			fmt.Println("error:", err)
		} else {
			fmt.Println("ok")
		}
	}
	return sc.Err()
}

// parseDevice parses IFACE:STATE:FLAGS.
func parseDevice(s string) (nmtest.Device, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 || parts[0] == "" {
		return nmtest.Device{}, fmt.Errorf("device %q: want IFACE:STATE:FLAGS", s)
	}
	state, err := strconv.ParseUint(parts[1], 0, 32)
	if err != nil {
		return nmtest.Device{}, fmt.Errorf("device %q: state: %w", s, err)
	}
	d := nmtest.Device{Interface: parts[0], State: uint32(state)}
	if parts[2] == "-" {
		return d, nil
	}
	flags, err := strconv.ParseUint(parts[2], 0, 32)
	if err != nil {
		return nmtest.Device{}, fmt.Errorf("device %q: flags: %w", s, err)
	}
	d.Applied, d.Flags = true, uint32(flags)
	return d, nil
}
