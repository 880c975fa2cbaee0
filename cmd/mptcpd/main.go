// Command mptcpd is the MPTCP path-manager daemon. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/mptcpd/mptcpd/config"
	"github.com/mptcpd/mptcpd/daemon"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "mptcpd:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("mptcpd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", config.DefaultPath, "configuration `file`")
	nsName := fs.String("netns", "", "manage the named network namespace (as `ip netns` names it) instead of mptcpd's own")
	check := fs.Bool("check", false, "validate the configuration file and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q (all options are flags; see mptcpd -h)", fs.Args())
	}
	opts := daemon.Options{ConfigPath: *configPath, NetNS: *nsName}

	cfg, err := daemon.LoadConfig(opts)
	if err != nil {
		return err
	}
	if *check {
		fmt.Fprintf(stderr, "%s: configuration is valid\n", *configPath)
		return nil
	}

	level := new(slog.LevelVar)
	hopts := &slog.HandlerOptions{Level: level}
	var handler slog.Handler = slog.NewTextHandler(stderr, hopts)
	if cfg.Log.Format == "json" {
		handler = slog.NewJSONHandler(stderr, hopts)
	}
	opts.Config, opts.Log, opts.LogLevel = cfg, slog.New(handler), level

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	reload := make(chan os.Signal, 1)
	signal.Notify(reload, syscall.SIGHUP)
	defer signal.Stop(reload)
	opts.Reload = reload
	return daemon.Run(ctx, opts)
}
