// Package diag lists the MPTCP connections of a network namespace, with
// their subflows, through the kernel's socket diagnostics
// (NETLINK_SOCK_DIAG, inet_diag): what `ss -M` and `ss -ti` show, as Go
// values.
//
// An MPTCP connection is an MPTCP socket (IPPROTO_MPTCP) whose inet_diag
// reply carries struct mptcp_info: its token, subflow and address counts,
// limits, flags (fallback), data sequence numbers and byte counters. Its
// subflows are TCP sockets with the "mptcp" upper-layer protocol, whose
// replies carry struct tcp_info and the MPTCP subflow attributes (tokens,
// address IDs, flags such as backup and fully established); each is joined
// to its connection by its local token.
//
// A listing of the whole namespace costs one dump of the MPTCP sockets and
// one of the TCP sockets per address family, whatever the number of
// connections; replies are decoded in place, and a listing allocates a few
// dozen times however large it is. Structures the kernel grows over
// releases (mptcp_info, tcp_info) are read by length, so older and newer
// kernels both work: fields a kernel does not have read as 0.
//
// Listing needs no privileges. It needs Linux 5.9 or later (MPTCP socket
// diagnostics, CONFIG_INET_MPTCP_DIAG).
package diag
