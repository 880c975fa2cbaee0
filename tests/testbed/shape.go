package testbed

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// The methods in this file change a path's behaviour for a test: its rate
// (Shape), whether its link is up (Cut), and whether it silently drops
// everything (Blackhole). Each change takes effect before the method
// returns; each has an undo, which is harmless when nothing was changed.

// shapeLatency is the tbf queue's bound: packets that would wait longer are
// dropped.
const shapeLatency = "100ms"

// minBurst is the smallest tbf bucket Shape uses (64 KiB, as tc reads
// "64kb").
const minBurst = 64 << 10

// Shape limits the path to rate in each direction, with a token bucket
// filter as the root qdisc of both ends' interfaces: `tc qdisc replace dev
// IF root tbf rate RATE burst B latency 100ms`, with a bucket B of 2 ms
// worth of bytes at the rate, at least 64 KiB. rate is in tc's syntax:
// bits per second with an optional unit such as "kbit", "mbit" or "gbit"
// ("10mbit"); tc's bytes-per-second units ("bps", "mbps") are refused, as
// they are easily misread. Shaping again replaces the rate. With 1500-byte
// frames a TCP connection's goodput is at most 1448/1514 ≈ 95.6 % of the
// rate (the headers count against it).
func (p Path) Shape(rate string) error {
	bits, err := parseTCRate(rate)
	if err != nil {
		return err
	}
	burst := max(uint64(minBurst), bits/8*2/1000)
	for _, end := range p.ends() {
		if err := tc(end.h, "qdisc", "replace", "dev", end.ifName, "root", "tbf",
			"rate", strconv.FormatUint(bits, 10)+"bit", "burst", strconv.FormatUint(burst, 10),
			"latency", shapeLatency); err != nil {
			return fmt.Errorf("shaping path %d to %s: %w", p.Index, rate, err)
		}
	}
	return nil
}

// Unshape removes the rate limit from both ends of the path.
func (p Path) Unshape() error {
	for _, end := range p.ends() {
		out, err := tcOutput(end.h, "qdisc", "show", "dev", end.ifName, "root")
		if err != nil {
			return fmt.Errorf("unshaping path %d: %w", p.Index, err)
		}
		if !strings.Contains(out, "qdisc tbf ") {
			continue
		}
		if err := tc(end.h, "qdisc", "del", "dev", end.ifName, "root"); err != nil {
			return fmt.Errorf("unshaping path %d: %w", p.Index, err)
		}
	}
	return nil
}

// parseTCRate parses a rate as tc does (bits per second, optional decimal
// or binary unit) and returns bits per second.
func parseTCRate(s string) (uint64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	i := strings.LastIndexAny(t, "0123456789.")
	num, unit := t[:i+1], t[i+1:]
	mult, ok := map[string]float64{
		"": 1, "bit": 1,
		"kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "tbit": 1e12,
		"kibit": 1 << 10, "mibit": 1 << 20, "gibit": 1 << 30, "tibit": 1 << 40,
	}[unit]
	if !ok {
		return 0, fmt.Errorf("rate %q: unit %q not understood (want bits per second, e.g. 10mbit, 1gbit)", s, unit)
	}
	v, err := strconv.ParseFloat(num, 64)
	bits := v * mult
	if err != nil || bits < 8 || bits > 1e13 {
		return 0, fmt.Errorf("rate %q: want a number of bits per second from 8 to 10tbit", s)
	}
	return uint64(bits), nil
}

// Cut takes the path's link down at the A end (`ip link set AIf down`), as
// when a host's own interface fails; the B end then loses its carrier. It
// returns once A's interface is down and B's is no longer running. The A
// end keeps its IPv6 addresses (keep_addr_on_down is set for it), but the
// kernel deletes the routes through the interface other than the
// connected ones, as on any host: a test that added routes over the path
// adds them again after Restore.
func (p Path) Cut() error {
	if err := p.A.WriteSysctl("net/ipv6/conf/"+p.AIf+"/keep_addr_on_down", "1"); err != nil {
		return fmt.Errorf("cutting path %d: %w", p.Index, err)
	}
	if _, err := p.A.IP("link", "set", p.AIf, "down"); err != nil {
		return fmt.Errorf("cutting path %d: %w", p.Index, err)
	}
	err := WaitFor(5*time.Second, func() (bool, error) {
		a, err := ifFlags(p.A, p.AIf)
		if err != nil {
			return false, err
		}
		b, err := ifFlags(p.B, p.BIf)
		return a&net.FlagUp == 0 && b&net.FlagRunning == 0, err
	})
	if err != nil {
		return fmt.Errorf("cutting path %d: waiting for the link to go down: %w", p.Index, err)
	}
	return nil
}

// Restore brings the A end's link up again and returns once both ends
// are running (the kernel reports carrier with a delay of up to a second).
func (p Path) Restore() error {
	if _, err := p.A.IP("link", "set", p.AIf, "up"); err != nil {
		return fmt.Errorf("restoring path %d: %w", p.Index, err)
	}
	err := WaitFor(5*time.Second, func() (bool, error) {
		a, err := ifFlags(p.A, p.AIf)
		if err != nil {
			return false, err
		}
		b, err := ifFlags(p.B, p.BIf)
		return a&net.FlagRunning != 0 && b&net.FlagRunning != 0, err
	})
	if err != nil {
		return fmt.Errorf("restoring path %d: waiting for the link to run: %w", p.Index, err)
	}
	return nil
}

// ifFlags returns the flags of host h's interface name.
func ifFlags(h *Host, name string) (net.Flags, error) {
	var f net.Flags
	err := h.Do(func() error {
		ifi, err := net.InterfaceByName(name)
		if err != nil {
			return fmt.Errorf("host %s: %w", h.Name, err)
		}
		f = ifi.Flags
		return nil
	})
	return f, err
}

// BlackholeTable is the name of the nftables table (family inet) that
// Blackhole adds to both hosts of path i.
func BlackholeTable(i int) string { return fmt.Sprintf("testbed-drop-%d", i) }

// Blackhole makes the path drop every IP packet silently, in both
// directions, while the links stay up, as a failed middlebox would: each
// host gets an nftables table (BlackholeTable) whose input, output and
// forward chains drop what enters or leaves by the path's interface.
// Nothing else is affected; ARP still works. It needs the nft command.
func (p Path) Blackhole() error {
	for _, end := range p.ends() {
		table := BlackholeTable(p.Index)
		// Adding then deleting the table first makes this idempotent,
		// in one transaction.
		script := fmt.Sprintf(`add table inet %[1]s
delete table inet %[1]s
table inet %[1]s {
	chain input { type filter hook input priority -300; policy accept; iifname %[2]q drop; }
	chain forward { type filter hook forward priority -300; policy accept; iifname %[2]q drop; oifname %[2]q drop; }
	chain output { type filter hook output priority -300; policy accept; oifname %[2]q drop; }
}
`, table, end.ifName)
		if err := nft(end.h, script); err != nil {
			return fmt.Errorf("blackholing path %d: %w", p.Index, err)
		}
	}
	return nil
}

// Unblackhole removes Blackhole's tables.
func (p Path) Unblackhole() error {
	for _, end := range p.ends() {
		table := BlackholeTable(p.Index)
		if err := nft(end.h, fmt.Sprintf("add table inet %[1]s\ndelete table inet %[1]s\n", table)); err != nil {
			return fmt.Errorf("removing the blackhole of path %d: %w", p.Index, err)
		}
	}
	return nil
}

type pathEnd struct {
	h      *Host
	ifName string
}

func (p Path) ends() []pathEnd { return []pathEnd{{p.A, p.AIf}, {p.B, p.BIf}} }

// tc runs `tc -n NS args...` for host h.
func tc(h *Host, args ...string) error {
	_, err := tcOutput(h, args...)
	return err
}

func tcOutput(h *Host, args ...string) (string, error) {
	cmd := exec.Command("tc", append([]string{"-n", h.NS}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("tc -n %s %s: %w: %s", h.NS, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// ErrNoNft is returned when the nft command is missing.
var ErrNoNft = errors.New("the nft command is missing (apt-get install nftables)")

// nft runs an nft script in host h's namespace.
func nft(h *Host, script string) error {
	if _, err := exec.LookPath("nft"); err != nil {
		return ErrNoNft
	}
	cmd := exec.Command("ip", "netns", "exec", h.NS, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft -f in host %s: %w: %s", h.Name, err, strings.TrimSpace(string(out)))
	}
	return nil
}
