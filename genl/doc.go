// Package genl is a typed client of the Linux kernel's MPTCP path-manager
// generic-netlink family, "mptcp_pm".
//
// A Client speaks every command of the family: endpoints and limits for the
// in-kernel path manager, and the per-connection commands (announce, remove,
// create and destroy subflows, change a subflow's backup flag) a userspace
// path manager uses. A Subscription delivers the family's multicast events.
// Probe and the Sysctl helpers tell what the running kernel offers and read
// and write the net.mptcp sysctls of a network namespace.
//
// Everything in the kernel's MPTCP stack is per network namespace. By default
// a Client works in the namespace of the calling thread; WithNetNS selects
// another one, so one process can drive several namespaces.
//
// Errors from the kernel are *Error values that keep the kernel's own
// extended-acknowledgement text and can be tested with errors.Is against the
// sentinels of this package (ErrNotFound, ErrExists, ...) and against the
// underlying errno.
//
// The package holds no policy: it says what the kernel has and does what it
// is told.
package genl
