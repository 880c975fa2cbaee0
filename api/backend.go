// Package api is mptcpd's gRPC API: it turns requests (package
// proto/mptcpd/v1) into calls on a Backend, the daemon, and their results
// back into responses; it checks every request before anything is changed,
// decides who may change things, and maps errors to gRPC codes in one
// place (ToStatus) and back (FromStatus).
package api

import (
	"context"
	"net/netip"
	"time"

	"github.com/mptcpd/mptcpd/diag"
	"github.com/mptcpd/mptcpd/events"
	"github.com/mptcpd/mptcpd/genl"
	"github.com/mptcpd/mptcpd/pm"
	"github.com/mptcpd/mptcpd/pm/userspace"
)

// Backend is what the API serves: the daemon. Its methods are called
// concurrently, and return errors that match the domain sentinels
// (genl.ErrNotFound, pm.ErrOwnedByPolicy …).
type Backend interface {
	Status(ctx context.Context) (Status, error)

	Endpoints() ([]pm.EndpointInfo, error)
	Endpoint(id uint8) (pm.EndpointInfo, error)
	// AddEndpoint adds an endpoint on request; ifName, if set, is the
	// interface to bind it to.
	AddEndpoint(ep genl.Endpoint, ifName string) (pm.EndpointInfo, error)
	DeleteEndpoint(id uint8) (pm.EndpointInfo, error)
	SetEndpointFlags(id uint8, backup, fullmesh *bool) (pm.EndpointInfo, error)
	FlushEndpoints() ([]pm.EndpointInfo, error)

	// Limits returns the kernel's limits and whether the policy states
	// them explicitly.
	Limits() (genl.Limits, bool, error)
	SetLimits(genl.Limits) (genl.Limits, error)

	Policy() (Policy, error)
	// PlanPolicy and ApplyPolicy take a configuration document; a bad one
	// gives an error naming its line and key that matches genl.ErrInvalid.
	PlanPolicy(doc string) (pm.Result, error)
	ApplyPolicy(doc string) (pm.Result, error)

	Connections(ctx context.Context, f diag.Filter) ([]diag.Connection, error)
	Connection(ctx context.Context, token uint32) (diag.Connection, error)
	// ConnectionPolicy returns what the userspace path manager applies to
	// the connection; false outside userspace mode or for a connection it
	// does not track.
	ConnectionPolicy(token uint32) (userspace.ConnInfo, bool)

	Announce(token uint32, addr genl.Endpoint) error
	Withdraw(token uint32, id uint8) error
	CreateSubflow(token uint32, local genl.Endpoint, remote netip.AddrPort) error
	DestroySubflow(token uint32, local, remote netip.AddrPort) error
	SetSubflowBackup(token uint32, local, remote netip.AddrPort, backup bool) error

	// Watch subscribes to events with a buffer of size events, then
	// returns a snapshot of the current state: every event after the
	// snapshot is on the subscription.
	Watch(ctx context.Context, size int) ([]events.Event, *events.Subscription, error)

	// InterfaceName returns the name of the interface with the index, ""
	// if unknown; InterfaceIndex the other way round, 0 if unknown.
	InterfaceName(index int) string
	InterfaceIndex(name string) int
}

// Status is the daemon's state for GetStatus.
type Status struct {
	Mode, ConfiguredMode, ModeReason string
	Version                          string
	NetNS                            string
	Capabilities                     genl.Capabilities
	Started                          time.Time
	Ready                            bool
	LastReconcile                    *events.Reconcile
	ReconcileRuns, ReconcileErrors   uint64
	KernelEvents                     uint64
	EndpointsPolicy                  int
	EndpointsManual                  int
	EndpointsForeign                 int
	Connections, Subflows            int
}

// Policy is the running policy.
type Policy struct {
	// Document is the configuration document; Source where it came from.
	Document string
	Source   string
	Applied  time.Time
	// Explicit reports whether the document states the limits.
	ExplicitLimits bool
}
