package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/grpc"

	"github.com/mptcpd/mptcpd/api"
	"github.com/mptcpd/mptcpd/config"
	"github.com/mptcpd/mptcpd/netns"
	mptcpdv1 "github.com/mptcpd/mptcpd/proto/mptcpd/v1"
)

// defaultTimeout bounds each call to the daemon unless --timeout says
// otherwise.
const defaultTimeout = 10 * time.Second

// app is one invocation of mptcpctl: its streams, its global flags and its
// connection to the daemon. Nothing of it outlives the invocation.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	// loc is the time zone timestamps are printed in.
	loc *time.Location
	// socketDir is where daemons' sockets live; --netns NAME picks
	// socketDir/mptcpd-NAME.sock.
	socketDir string

	// Global flags.
	output    outputFormat
	server    string
	netns     string
	timeout   time.Duration
	tlsCert   string
	tlsKey    string
	tlsCA     string
	plaintext bool

	// serverFlag is --server, to tell whether it was given.
	serverFlag *pflag.Flag

	// cmd is the command being run, once its own code has started; errors
	// before that are usage errors.
	cmd *cobra.Command

	// The daemon: where it is, and the connection once made.
	target *target
	conn   *grpc.ClientConn
	client mptcpdv1.MptcpdServiceClient
}

// newApp returns an invocation reading stdin and writing stdout and stderr.
func newApp(stdin io.Reader, stdout, stderr io.Writer) *app {
	return &app{
		stdin:     stdin,
		stdout:    stdout,
		stderr:    stderr,
		loc:       time.Local,
		socketDir: filepath.Dir(api.DefaultSocket),
		output:    outputTable,
		server:    api.DefaultSocket,
		timeout:   defaultTimeout,
	}
}

// run runs mptcpctl with args and returns its exit status. Errors are
// printed once, to stderr, as "mptcpctl: ...".
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return newApp(stdin, stdout, stderr).run(ctx, args)
}

func (a *app) run(ctx context.Context, args []string) int {
	if args == nil {
		args = []string{} // cobra reads os.Args when given nil
	}
	root := a.rootCmd()
	root.SetArgs(args)
	root.SetIn(a.stdin)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if a.conn != nil {
		_ = a.conn.Close() // nothing is left to lose on a client connection
	}
	if err == nil {
		return exitOK
	}
	code, msg := a.explain(err)
	fmt.Fprintf(a.stderr, "mptcpctl: %s\n", msg)
	if code == exitUsage && cmd != nil {
		fmt.Fprintf(a.stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
	}
	return code
}

const rootLong = `mptcpctl shows and changes a host's Multipath TCP through mptcpd: the
endpoints and limits of the kernel's path manager, the connections and
their subflows, announcements, the running policy, and a live stream of
events. It speaks the words of ip-mptcp(8).

mptcpctl talks to the mptcpd at /run/mptcpd/mptcpd.sock; --netns NAME
picks the mptcpd that manages the network namespace NAME
(/run/mptcpd/mptcpd-NAME.sock), and --server a socket path or a TCP
address (host:port, with --tls-cert, --tls-key and --tls-ca, or
--plaintext for a loopback listener). Reading needs the group of the
socket; changing anything needs root or mptcpd's admin group.

Every argument is checked before anything is sent. With -o json each
response is printed as one protobuf JSON object (lists as an object with
the list); monitor prints one object per line.

Exit status:

    0  success
    1  any other error
    2  usage: unknown command, flag or keyword, or wrong number of arguments
    3  mptcpd is not running, cannot be reached or did not answer,
       or MPTCP is unavailable in the kernel
    4  permission denied
    5  not found: no such endpoint, connection or subflow
    6  already exists: the address or the ID is taken
    7  invalid argument, found by mptcpctl or by mptcpd
    8  failed precondition: the endpoint belongs to the policy, or mptcpd
       or the kernel is in the wrong mode for the command
    9  a kernel limit was reached
`

// rootCmd builds the command tree of this invocation.
func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "mptcpctl",
		Short: "Control Multipath TCP through mptcpd",
		Long:  rootLong,
		Example: `  mptcpctl status
  mptcpctl endpoint add 192.0.2.10 dev eth1 subflow backup
  mptcpctl endpoint show
  mptcpctl limits set subflows 4
  mptcpctl connection list
  mptcpctl monitor --kind subflow-established --kind subflow-closed
  mptcpctl policy apply --dry-run /etc/mptcpd/mptcpd.toml`,
		SilenceErrors:     true,
		SilenceUsage:      true,
		DisableAutoGenTag: true,
		Args:              cobra.NoArgs,
		RunE:              showHelp,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Name() == cobra.ShellCompRequestCmd || cmd.Name() == cobra.ShellCompNoDescRequestCmd {
				// The flags of the command line being completed are
				// not parsed yet; the completion functions resolve.
				return nil
			}
			if _, err := a.resolve(); err != nil {
				return err
			}
			a.cmd = cmd
			return nil
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &exitError{code: exitUsage, err: err}
	})

	f := root.PersistentFlags()
	f.VarP(&a.output, "output", "o", "output format: table or json")
	f.StringVar(&a.server, "server", a.server, "mptcpd's API: a unix socket path, or host:port of a TCP listener")
	f.StringVar(&a.netns, "netns", "", "talk to the mptcpd that manages the network namespace `NAME`")
	f.DurationVar(&a.timeout, "timeout", a.timeout, "how long to wait for each answer (0: no limit)")
	f.StringVar(&a.tlsCert, "tls-cert", "", "client certificate (PEM `file`) for a TCP server")
	f.StringVar(&a.tlsKey, "tls-key", "", "client key (PEM `file`) for a TCP server")
	f.StringVar(&a.tlsCA, "tls-ca", "", "CA bundle (PEM `file`) the TCP server's certificate must chain to (default: the system's)")
	f.BoolVar(&a.plaintext, "plaintext", false, "talk to a TCP server on a loopback address without TLS")
	a.serverFlag = f.Lookup("server")
	_ = root.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"table", "json"}, cobra.ShellCompDirectiveNoFileComp))
	_ = root.RegisterFlagCompletionFunc("netns", a.completeNetns)

	root.AddCommand(
		a.statusCmd(),
		a.endpointCmd(),
		a.limitsCmd(),
		a.connectionCmd(),
		a.subflowCmd(),
		a.announceCmd(),
		a.withdrawCmd(),
		a.monitorCmd(),
		a.policyCmd(),
		a.genManCmd(),
	)
	root.InitDefaultCompletionCmd()
	return root
}

// showHelp is the RunE of commands that only group others: without
// arguments it prints the help; an argument is an unknown command.
func showHelp(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		names := make([]string, 0, len(cmd.Commands()))
		for _, c := range cmd.Commands() {
			if c.IsAvailableCommand() {
				names = append(names, c.Name())
			}
		}
		return usageErrorf("unknown command %q for %q: want one of %s", args[0], cmd.CommandPath(), strings.Join(names, ", "))
	}
	return cmd.Help()
}

// group returns a command that only groups its subcommands.
func group(use, short, long string, aliases ...string) *cobra.Command {
	return &cobra.Command{
		Use:               use,
		Short:             short,
		Long:              long,
		Aliases:           aliases,
		Args:              cobra.ArbitraryArgs,
		RunE:              showHelp,
		ValidArgsFunction: cobra.NoFileCompletions,
	}
}

// Annotations of commands, used to explain errors.
const (
	// annAction names what the command does, for "permission denied:
	// ACTION needs ...". Commands without it only read.
	annAction = "action"
	// annSee says where to look when something is not found.
	annSee = "see"
	// annMode says which mode the command needs.
	annMode = "mode"
)

// target is where the daemon is.
type target struct {
	// server is what api.Dial gets; socket the unix socket's path, "" for
	// a TCP server.
	server string
	socket string
	tls    *tls.Config
	// dialer dials the daemon and keeps the last dial error, which says
	// why a call could not reach it.
	dialer *dialer
}

// resolve checks the global flags and works out the target, once.
func (a *app) resolve() (*target, error) {
	if a.target != nil {
		return a.target, nil
	}
	server := a.server
	if a.netns != "" {
		if a.serverFlag != nil && a.serverFlag.Changed {
			return nil, usageErrorf("give --server or --netns, not both")
		}
		if err := netns.ValidName(a.netns); err != nil {
			return nil, invalidf("--netns: %v", err)
		}
		server = filepath.Join(a.socketDir, config.SocketName(a.netns))
	}
	if server == "" {
		return nil, invalidf("--server is empty: give a unix socket path or host:port")
	}
	tlsFlags := a.tlsCert != "" || a.tlsKey != "" || a.tlsCA != ""

	t := &target{}
	if path, ok := socketPath(server); ok {
		if tlsFlags || a.plaintext {
			return nil, usageErrorf("--tls-cert, --tls-key, --tls-ca and --plaintext are for a TCP server; %s is a unix socket", path)
		}
		t.server, t.socket = path, path
	} else {
		host, err := checkHostPort(server)
		if err != nil {
			return nil, err
		}
		t.server = server
		switch {
		case a.plaintext && tlsFlags:
			return nil, usageErrorf("--plaintext and the --tls-* flags exclude each other")
		case a.plaintext:
			if !isLoopback(host) {
				return nil, invalidf("--plaintext is only for a server on a loopback address (127.0.0.1, ::1, localhost), not %q: use --tls-cert and --tls-key", host)
			}
		case a.tlsCert == "" || a.tlsKey == "":
			return nil, usageErrorf("the TCP server %s needs a client certificate: give --tls-cert and --tls-key (and --tls-ca), or --plaintext for a loopback server", server)
		default:
			if t.tls, err = a.tlsConfig(); err != nil {
				return nil, err
			}
		}
	}
	t.dialer = &dialer{socket: t.socket}
	a.target = t
	return t, nil
}

// socketPath returns the unix socket path server names: an absolute or
// relative path, or a unix: or unix:// URL.
func socketPath(server string) (string, bool) {
	path, ok := strings.CutPrefix(server, "unix://")
	if !ok {
		path, ok = strings.CutPrefix(server, "unix:")
	}
	if !ok && !strings.ContainsRune(server, '/') {
		return "", false
	}
	if !filepath.IsAbs(path) {
		if abs, err := filepath.Abs(path); err == nil {
			path = abs
		}
	}
	return path, true
}

// checkHostPort checks a TCP server address and returns its host.
func checkHostPort(server string) (string, error) {
	host, port, err := net.SplitHostPort(server)
	if err != nil || host == "" {
		return "", invalidf("--server %q is neither a socket path (/run/mptcpd/mptcpd.sock) nor host:port (mptcpd.example.net:7300)", server)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return "", invalidf("--server %q: bad port %q: want a number from 1 to 65535", server, port)
	}
	return host, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// tlsConfig loads the client certificate and the CA bundle.
func (a *app) tlsConfig() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(a.tlsCert, a.tlsKey)
	if err != nil {
		return nil, invalidf("--tls-cert %s, --tls-key %s: %v", a.tlsCert, a.tlsKey, err)
	}
	conf := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if a.tlsCA != "" {
		pem, err := os.ReadFile(a.tlsCA)
		if err != nil {
			return nil, invalidf("--tls-ca: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, invalidf("--tls-ca %s holds no PEM certificate", a.tlsCA)
		}
		conf.RootCAs = pool
	}
	return conf, nil
}

// connect returns the client of the daemon, dialling it on first use. A
// unix socket that does not exist means the daemon is not running.
func (a *app) connect() (mptcpdv1.MptcpdServiceClient, error) {
	if a.client != nil {
		return a.client, nil
	}
	t, err := a.resolve()
	if err != nil {
		return nil, err
	}
	if t.socket != "" {
		if err := checkSocket(t.socket); err != nil {
			return nil, err
		}
	}
	conn, client, err := api.Dial(t.server, t.tls, a.plaintext, grpc.WithContextDialer(t.dialer.dial))
	if err != nil {
		return nil, &exitError{code: exitUnreachable, err: err}
	}
	a.conn, a.client = conn, client
	return client, nil
}

// checkSocket says why the daemon cannot be reached at path, if the file
// already tells.
func checkSocket(path string) error {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return notRunning(path)
	case errors.Is(err, os.ErrPermission):
		return noAccess(filepath.Dir(path), "reach "+path)
	case err != nil:
		return &exitError{code: exitUnreachable, err: fmt.Errorf("cannot reach mptcpd at %s: %w", path, err)}
	case fi.Mode().Type() != os.ModeSocket:
		return &exitError{code: exitUnreachable, err: fmt.Errorf("%s is not a socket: is --server right?", path)}
	}
	return nil
}

func notRunning(path string) error {
	return &exitError{code: exitUnreachable, err: fmt.Errorf("mptcpd is not running: no socket at %s; start it with `systemctl start mptcpd` (or `sudo scripts/run.sh`)", path)}
}

// noAccess explains EACCES on path (the socket, or its directory).
func noAccess(path, what string) error {
	g := fileGroup(path)
	if g == "" {
		// Private to its owner, or inside a directory that is (systemd
		// keeps a dynamic user's runtime directory under /run/private).
		return &exitError{code: exitPermission, err: fmt.Errorf("permission denied: you may not %s — only root may; use sudo, or give a group the API (the group drop-in in mptcpd.service's comments)", what)}
	}
	return &exitError{code: exitPermission, err: fmt.Errorf("permission denied: you may not %s — you are not in its group (%s); ask for it, or use sudo", what, g)}
}

// call returns a context for one call to the daemon, bounded by --timeout.
func (a *app) call(ctx context.Context) (context.Context, context.CancelFunc) {
	if a.timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, a.timeout)
}

// dialer dials the daemon for gRPC and keeps the outcome of the last
// attempt.
type dialer struct {
	// socket is the unix socket's path; "" dials TCP.
	socket string

	mu  sync.Mutex
	err error
}

func (d *dialer) dial(ctx context.Context, addr string) (net.Conn, error) {
	network := "tcp"
	if d.socket != "" {
		// gRPC hands a custom dialer "unix:///path"; dial the path itself.
		network, addr = "unix", d.socket
	}
	var nd net.Dialer
	c, err := nd.DialContext(ctx, network, addr)
	d.mu.Lock()
	d.err = err
	d.mu.Unlock()
	return c, err
}

// lastErr is the error of the last dial, nil if it succeeded or none was
// made.
func (d *dialer) lastErr() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.err
}
