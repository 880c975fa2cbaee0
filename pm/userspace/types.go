package userspace

import (
	"context"
	"net/netip"

	"github.com/mptcpd/mptcpd/diag"
	"github.com/mptcpd/mptcpd/genl"
)

// Kernel is what a worker needs of the kernel: the userspace path
// manager's per-connection commands (*genl.Client has them).
type Kernel interface {
	Announce(token uint32, addr genl.Endpoint) error
	Remove(token uint32, id uint8) error
	CreateSubflow(token uint32, local genl.Endpoint, remote netip.AddrPort) error
	DestroySubflow(token uint32, local, remote netip.AddrPort) error
	SetSubflowBackup(token uint32, local, remote netip.AddrPort, backup bool) error
}

// Lister lists the namespace's MPTCP connections (*diag.Client does).
type Lister interface {
	Connections(ctx context.Context, f diag.Filter) ([]diag.Connection, error)
}

// Local is a usable local address: one the interface policy selects.
type Local struct {
	Addr      netip.Addr
	IfIndex   int32
	Interface string
	// Backup marks an address of a backup interface (its rule has the
	// backup flag).
	Backup bool
	// ID is the address ID the Manager gives the address on every
	// connection (1..255), stable while the address stays.
	ID uint8
}

// Action is what a Decision did.
type Action string

// The decisions the Manager makes.
const (
	ActionCreate      Action = "create-subflow"
	ActionDestroy     Action = "destroy-subflow"
	ActionRetry       Action = "retry-subflow"
	ActionGiveUp      Action = "give-up-subflow"
	ActionAnnounce    Action = "announce"
	ActionWithdraw    Action = "withdraw"
	ActionAccept      Action = "accept-announcement"
	ActionRefuse      Action = "refuse-announcement"
	ActionPromote     Action = "promote-backup"
	ActionDemote      Action = "demote-backup"
	ActionMatch       Action = "match-rule"
	ActionAdopt       Action = "adopt-connection"
	ActionFailed      Action = "command-failed"
	ActionListen      Action = "listen"
	ActionStopListen  Action = "stop-listening"
	ActionRateLimited Action = "rate-limited"
)

// Decision is one decision of the Manager, with its reason, for logs,
// metrics and the watch stream.
type Decision struct {
	Action Action
	Token  uint32
	// Local and Remote are the subflow's ends or the announced address;
	// LocalID and RemoteID their address IDs.
	Local, Remote     netip.AddrPort
	LocalID, RemoteID uint8
	Backup            bool
	Rule              string
	Reason            string
	Err               error
}

// ConnInfo is what the Manager knows of one connection.
type ConnInfo struct {
	Token    uint32
	Server   bool
	Rule     string
	Strategy string
	// Wanted is the number of subflows the strategy wants (the initial one
	// included); Present those established now.
	Wanted, Present int
	// Accepted and Refused count the peer's announcements.
	Accepted, Refused int
}
