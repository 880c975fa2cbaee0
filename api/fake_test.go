package api_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/mptcpd/mptcpd/api"
	"github.com/mptcpd/mptcpd/diag"
	"github.com/mptcpd/mptcpd/events"
	"github.com/mptcpd/mptcpd/genl"
	"github.com/mptcpd/mptcpd/pm"
	"github.com/mptcpd/mptcpd/pm/userspace"
	pb "github.com/mptcpd/mptcpd/proto/mptcpd/v1"
)

// callTimeout bounds every call a test makes, so a hung server fails the
// test with the call's name instead of eating the test binary's timeout.
const callTimeout = 20 * time.Second

// fakeBackend is an api.Backend that records the calls that reach it and
// answers from its fields. Interface lookups are not recorded: the server
// makes them while it checks a request.
type fakeBackend struct {
	mu      sync.Mutex
	calls   []string
	err     error
	conns   []diag.Connection
	filters []diag.Filter

	// snapshot is what Watch returns before the live events, which come
	// from broker.
	snapshot []events.Event
	broker   events.Broker

	ifaces map[string]int
}

func newFakeBackend() *fakeBackend {
	return &fakeBackend{ifaces: map[string]int{"lo": 1, "wlan0": 3}}
}

// record notes a call and returns the error the backend is told to return.
func (f *fakeBackend) record(call string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
	return f.err
}

// Calls returns the calls that reached the backend, in order.
func (f *fakeBackend) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func (f *fakeBackend) setErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

func (f *fakeBackend) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls, f.filters, f.err = nil, nil, nil
}

func (f *fakeBackend) Status(context.Context) (api.Status, error) {
	return api.Status{Mode: "kernel", Version: "test", Started: time.Unix(1700000000, 0), Ready: true}, f.record("Status")
}

func (f *fakeBackend) Endpoints() ([]pm.EndpointInfo, error) {
	return []pm.EndpointInfo{{Endpoint: genl.Endpoint{ID: 1, Addr: netip.MustParseAddr("192.0.2.1"), Flags: genl.FlagSubflow}, Owner: pm.OwnerPolicy}}, f.record("Endpoints")
}

func (f *fakeBackend) Endpoint(id uint8) (pm.EndpointInfo, error) {
	return pm.EndpointInfo{Endpoint: genl.Endpoint{ID: id, Addr: netip.MustParseAddr("192.0.2.1")}, Owner: pm.OwnerPolicy}, f.record("Endpoint")
}

func (f *fakeBackend) AddEndpoint(ep genl.Endpoint, _ string) (pm.EndpointInfo, error) {
	if ep.ID == 0 {
		ep.ID = 42
	}
	return pm.EndpointInfo{Endpoint: ep, Owner: pm.OwnerManual}, f.record("AddEndpoint")
}

func (f *fakeBackend) DeleteEndpoint(id uint8) (pm.EndpointInfo, error) {
	return pm.EndpointInfo{Endpoint: genl.Endpoint{ID: id}}, f.record("DeleteEndpoint")
}

func (f *fakeBackend) SetEndpointFlags(id uint8, _, _ *bool) (pm.EndpointInfo, error) {
	return pm.EndpointInfo{Endpoint: genl.Endpoint{ID: id}}, f.record("SetEndpointFlags")
}

func (f *fakeBackend) FlushEndpoints() ([]pm.EndpointInfo, error) {
	return nil, f.record("FlushEndpoints")
}

func (f *fakeBackend) Limits() (genl.Limits, bool, error) {
	return genl.Limits{Subflows: 2}, false, f.record("Limits")
}

func (f *fakeBackend) SetLimits(l genl.Limits) (genl.Limits, error) { return l, f.record("SetLimits") }

func (f *fakeBackend) Policy() (api.Policy, error) {
	return api.Policy{Document: "mode = \"kernel\"\n", Source: "test"}, f.record("Policy")
}

func (f *fakeBackend) PlanPolicy(string) (pm.Result, error) {
	return pm.Result{}, f.record("PlanPolicy")
}
func (f *fakeBackend) ApplyPolicy(string) (pm.Result, error) {
	return pm.Result{}, f.record("ApplyPolicy")
}

func (f *fakeBackend) Connections(_ context.Context, filter diag.Filter) ([]diag.Connection, error) {
	err := f.record("Connections")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.filters = append(f.filters, filter)
	return slices.Clone(f.conns), err
}

func (f *fakeBackend) Filters() []diag.Filter {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.filters)
}

func (f *fakeBackend) ConnectionPolicy(uint32) (userspace.ConnInfo, bool) {
	return userspace.ConnInfo{}, false
}

func (f *fakeBackend) Connection(_ context.Context, token uint32) (diag.Connection, error) {
	return diag.Connection{Token: token}, f.record("Connection")
}

func (f *fakeBackend) Announce(uint32, genl.Endpoint) error { return f.record("Announce") }
func (f *fakeBackend) Withdraw(uint32, uint8) error         { return f.record("Withdraw") }
func (f *fakeBackend) CreateSubflow(uint32, genl.Endpoint, netip.AddrPort) error {
	return f.record("CreateSubflow")
}
func (f *fakeBackend) DestroySubflow(uint32, netip.AddrPort, netip.AddrPort) error {
	return f.record("DestroySubflow")
}
func (f *fakeBackend) SetSubflowBackup(uint32, netip.AddrPort, netip.AddrPort, bool) error {
	return f.record("SetSubflowBackup")
}

// Watch subscribes to the broker first, then returns the snapshot, as the
// Backend contract asks: every event published after Watch returned is on
// the subscription.
func (f *fakeBackend) Watch(_ context.Context, size int) ([]events.Event, *events.Subscription, error) {
	if err := f.record("Watch"); err != nil {
		return nil, nil, err
	}
	sub := f.broker.Subscribe(size)
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.snapshot), sub, nil
}

func (f *fakeBackend) InterfaceName(index int) string {
	for name, i := range f.ifaces {
		if i == index {
			return name
		}
	}
	return ""
}

func (f *fakeBackend) InterfaceIndex(name string) int { return f.ifaces[name] }

// socketPath returns a path for a unix socket in a fresh directory, short
// enough for sun_path whatever the test's name.
func socketPath(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "mptcpd-api-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return filepath.Join(dir, "api.sock")
}

// rootAccess lets root and the test's own user write and anyone read.
func rootAccess() api.Access {
	return api.Access{DaemonUID: os.Getuid(), AdminGID: -1, ReadGID: -1}
}

// listen opens the real service over backend on a unix socket in a
// temporary directory (unless opts names one), serving and ready.
func listen(t testing.TB, backend api.Backend, opts api.Options) *api.Service {
	t.Helper()
	if opts.Socket == "" && opts.TCP == "" {
		opts.Socket, opts.SocketGID = socketPath(t), -1
	}
	if opts.Access == (api.Access{}) {
		opts.Access = rootAccess()
	}
	svc, err := api.Listen(opts, backend)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	svc.SetServing(true)
	return svc
}

// serve serves svc until the test ends. The function it returns stops the
// service and waits for Serve to return its error (it may be called more
// than once).
func serve(t testing.TB, svc *api.Service) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Serve(ctx) }()
	var (
		once sync.Once
		err  error
	)
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(callTimeout):
				err = errors.New("Serve did not return after its context ended")
			}
		})
		return err
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return stop
}

// dial returns a client of the server at target through api.Dial, closed
// when the test ends.
func dial(t testing.TB, target string, tlsConf *tls.Config, plaintext bool, opts ...grpc.DialOption) (*grpc.ClientConn, pb.MptcpdServiceClient) {
	t.Helper()
	conn, client, err := api.Dial(target, tlsConf, plaintext, opts...)
	if err != nil {
		t.Fatalf("Dial(%s): %v", target, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn, client
}

// startUnix serves the real service over backend on a unix socket and
// returns a client through api.Dial.
func startUnix(t testing.TB, backend api.Backend) (*api.Service, pb.MptcpdServiceClient) {
	t.Helper()
	socket := socketPath(t)
	svc := listen(t, backend, api.Options{Socket: socket, SocketGID: -1})
	serve(t, svc)
	_, client := dial(t, socket, nil, false)
	return svc, client
}

func callCtx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	t.Cleanup(cancel)
	return ctx
}
