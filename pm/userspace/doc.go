// Package userspace is mptcpd's userspace path manager: with the
// namespace's net.mptcp.path_manager set to "userspace" the kernel opens no
// subflow, sends no announcement and joins no peer address on its own, and
// this package decides each of them per connection.
//
// A Manager follows the kernel's MPTCP events. Each new connection is
// matched against the policy's rules (first match wins), which select a
// strategy — fullmesh, per-interface, ndiffports, backup or none — and a
// cap on subflows; the Manager computes the subflows the strategy wants
// from the usable local addresses (the interface policy) and the peer's
// known addresses, and asks the kernel for the missing ones. It accepts or
// refuses the peer's announcements (prefixes, the host's own addresses, a
// per-connection cap and rate), announces local addresses on server-side
// connections, re-creates subflows that failed with exponential backoff and
// jitter, follows local addresses as they come and go, promotes backup
// subflows when no primary is left, and rebuilds its state from the
// kernel's connection listing at start and after lost events.
//
// Events are spread over workers by connection token; each worker owns its
// connections and its own kernel socket, so there is no global lock on the
// event path.
package userspace
