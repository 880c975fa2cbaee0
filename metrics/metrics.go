// Package metrics exposes mptcpd's Prometheus metrics: what the kernel
// reported, what the daemon did, and how fast it reacted. Each Metrics has
// its own registry, served over HTTP by Serve.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are the daemon's collectors. A nil *Metrics records nothing, so
// the daemon runs the same with metrics off.
type Metrics struct {
	reg *prometheus.Registry

	events          *prometheus.CounterVec
	subflows        *prometheus.CounterVec
	reconciles      prometheus.Counter
	reconcileErrors prometheus.Counter
	netlinkErrors   *prometheus.CounterVec
	latency         *prometheus.HistogramVec
	endpoints       *prometheus.GaugeVec
	rpcs            *prometheus.CounterVec
}

// New returns Metrics with a fresh registry. connections, if not nil, is
// called at each scrape for the number of MPTCP connections.
func New(connections func() float64) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mptcpd_kernel_events_total", Help: "MPTCP events received from the kernel, by type.",
		}, []string{"type"}),
		subflows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mptcpd_subflows_total", Help: "Subflows established and closed (closed with an error: failed), as the kernel reported them.",
		}, []string{"result"}),
		reconciles: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mptcpd_reconcile_runs_total", Help: "Reconcile runs.",
		}),
		reconcileErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mptcpd_reconcile_errors_total", Help: "Reconcile runs that failed.",
		}),
		netlinkErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mptcpd_netlink_errors_total", Help: "Netlink requests the kernel refused or that failed, by operation.",
		}, []string{"op"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mptcpd_event_to_action_seconds",
			Help:    "Time from the event that caused a change (an interface change, a request) to the change made in the kernel.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 16),
		}, []string{"trigger"}),
		endpoints: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "mptcpd_endpoints", Help: "Endpoints of the in-kernel path manager, by owner (policy, api, foreign).",
		}, []string{"owner"}),
		rpcs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mptcpd_api_requests_total", Help: "API calls, by method and gRPC code.",
		}, []string{"method", "code"}),
	}
	m.reg.MustRegister(m.events, m.subflows, m.reconciles, m.reconcileErrors, m.netlinkErrors, m.latency, m.endpoints, m.rpcs,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if connections != nil {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "mptcpd_connections", Help: "MPTCP connections in the namespace (read from the kernel at each scrape).",
		}, connections))
	}
	return m
}

// Registry returns the registry, for tests and other exporters.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// KernelEvent counts a kernel event of the named type; for subflow events,
// established or closed (failed when err).
func (m *Metrics) KernelEvent(typ string) {
	if m != nil {
		m.events.WithLabelValues(typ).Inc()
	}
}

// Subflow counts a subflow established ("established"), closed cleanly
// ("closed") or closed with an error ("failed").
func (m *Metrics) Subflow(result string) {
	if m != nil {
		m.subflows.WithLabelValues(result).Inc()
	}
}

// Reconciled counts a reconcile run.
func (m *Metrics) Reconciled(err error) {
	if m == nil {
		return
	}
	m.reconciles.Inc()
	if err != nil {
		m.reconcileErrors.Inc()
	}
}

// NetlinkError counts a failed netlink operation.
func (m *Metrics) NetlinkError(op string) {
	if m != nil {
		m.netlinkErrors.WithLabelValues(op).Inc()
	}
}

// Latency records the time from an event to the change it caused.
func (m *Metrics) Latency(trigger string, d time.Duration) {
	if m != nil {
		m.latency.WithLabelValues(trigger).Observe(d.Seconds())
	}
}

// Endpoints sets the number of endpoints by owner.
func (m *Metrics) Endpoints(policy, api, foreign int) {
	if m == nil {
		return
	}
	m.endpoints.WithLabelValues("policy").Set(float64(policy))
	m.endpoints.WithLabelValues("api").Set(float64(api))
	m.endpoints.WithLabelValues("foreign").Set(float64(foreign))
}

// Request counts an API call.
func (m *Metrics) Request(method, code string) {
	if m != nil {
		m.rpcs.WithLabelValues(method, code).Inc()
	}
}

// Listen opens the metrics listener at addr ("host:port").
func Listen(addr string) (net.Listener, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listening on %s: %w", addr, err)
	}
	return lis, nil
}

// Serve serves /metrics on lis until ctx ends.
func (m *Metrics) Serve(ctx context.Context, lis net.Listener) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	stop := context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	})
	defer stop()
	if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}
