package metrics

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestNilRecordsNothing: the daemon calls the recorders without metrics.
func TestNilRecordsNothing(t *testing.T) {
	var m *Metrics
	m.KernelEvent("created")
	m.Subflow("failed")
	m.Reconciled(errors.New("x"))
	m.NetlinkError("add_addr")
	m.Latency("interface change", time.Millisecond)
	m.Endpoints(1, 2, 3)
	m.Request("/mptcpd.v1.MptcpdService/GetStatus", "OK")
}

// TestServe scrapes the endpoint and finds what was recorded.
func TestServe(t *testing.T) {
	m := New(func() float64 { return 7 })
	m.KernelEvent("established")
	m.KernelEvent("established")
	m.Subflow("failed")
	m.Reconciled(nil)
	m.Reconciled(errors.New("kernel said no"))
	m.NetlinkError("add_addr")
	m.Latency("interface change", 300*time.Microsecond)
	m.Endpoints(4, 1, 2)
	m.Request("/mptcpd.v1.MptcpdService/GetStatus", "OK")

	lis, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Serve(ctx, lis) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+lis.Addr().String()+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`mptcpd_kernel_events_total{type="established"} 2`,
		`mptcpd_subflows_total{result="failed"} 1`,
		`mptcpd_reconcile_runs_total 2`,
		`mptcpd_reconcile_errors_total 1`,
		`mptcpd_netlink_errors_total{op="add_addr"} 1`,
		`mptcpd_event_to_action_seconds_count{trigger="interface change"} 1`,
		`mptcpd_endpoints{owner="policy"} 4`,
		`mptcpd_endpoints{owner="api"} 1`,
		`mptcpd_endpoints{owner="foreign"} 2`,
		`mptcpd_connections 7`,
		`mptcpd_api_requests_total{code="OK",method="/mptcpd.v1.MptcpdService/GetStatus"} 1`,
		`go_goroutines`,
		`process_resident_memory_bytes`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}
