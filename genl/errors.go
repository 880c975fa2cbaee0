package genl

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
)

// Sentinel errors. Every error a Client returns for a kernel refusal is an
// *Error that matches one or more of these with errors.Is, and also the errno
// the kernel returned (so errors.Is(err, os.ErrPermission) works too).
var (
	// ErrNotFound: the endpoint, address ID, subflow or connection does not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists: an endpoint with this address already exists.
	ErrExists = errors.New("already exists")
	// ErrIDInUse: the ID is already used by another address.
	ErrIDInUse = errors.New("ID already in use")
	// ErrLimit: a kernel limit was reached or exceeded (at most 8 endpoints
	// per namespace on current kernels, limits at most 8).
	ErrLimit = errors.New("kernel limit reached")
	// ErrPermission: the request needs CAP_NET_ADMIN in the network namespace.
	ErrPermission = errors.New("permission denied: needs CAP_NET_ADMIN (run as root)")
	// ErrUnavailable: the kernel has no usable MPTCP path manager (the
	// mptcp_pm family is not registered, or the request is not supported).
	ErrUnavailable = errors.New("MPTCP path manager unavailable in this kernel")
	// ErrWrongPathManager: a userspace-PM command was sent for a connection
	// managed by the in-kernel path manager.
	ErrWrongPathManager = errors.New("connection is not managed by the userspace path manager")
	// ErrUnknownToken: no connection has this token. It also matches ErrNotFound.
	ErrUnknownToken = errors.New("unknown connection token")
	// ErrInvalid: the request was malformed or refused as invalid.
	ErrInvalid = errors.New("invalid argument")
	// ErrEventsLost: the kernel dropped events because the receive buffer
	// overflowed. The caller must resynchronise its view from the kernel.
	ErrEventsLost = errors.New("events were lost: resynchronise from the kernel")
)

// Error is an error returned by the kernel for one request.
type Error struct {
	// Op names the request, e.g. "add endpoint".
	Op string
	// Message is the kernel's extended-acknowledgement text, if any.
	Message string
	// Err is the underlying error, usually a syscall.Errno.
	Err error

	kinds []error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("mptcp_pm ")
	b.WriteString(e.Op)
	if len(e.kinds) > 0 {
		b.WriteString(": ")
		b.WriteString(e.kinds[0].Error())
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	if e.Message != "" {
		fmt.Fprintf(&b, " (kernel: %q)", e.Message)
	}
	return b.String()
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is one of the sentinels this error matches.
func (e *Error) Is(target error) bool {
	for _, k := range e.kinds {
		if k == target {
			return true
		}
	}
	return false
}

// newError builds an *Error for op from an errno and the kernel's
// extended-ACK text, classifying it into the sentinels.
func newError(op string, err error, message string) *Error {
	return &Error{Op: op, Message: message, Err: err, kinds: classify(err, message)}
}

// classify maps an errno and the kernel's text to sentinels. The kernel
// reports several distinct refusals as EINVAL; only the text tells them
// apart, so it is matched here and nowhere else.
func classify(err error, message string) []error {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return nil
	}
	msg := strings.ToLower(message)
	switch errno {
	case syscall.EPERM, syscall.EACCES:
		return []error{ErrPermission}
	case syscall.EEXIST:
		return []error{ErrExists}
	case syscall.EBUSY:
		return []error{ErrIDInUse}
	case syscall.ERANGE:
		return []error{ErrLimit}
	case syscall.ENOENT, syscall.ESRCH:
		return []error{ErrNotFound}
	case syscall.EOPNOTSUPP, syscall.EPROTONOSUPPORT, syscall.ENOPROTOOPT:
		return []error{ErrUnavailable}
	case syscall.ENOBUFS:
		return []error{ErrEventsLost}
	case syscall.EINVAL:
		switch {
		case strings.Contains(msg, "invalid token"):
			return []error{ErrUnknownToken, ErrNotFound}
		case strings.Contains(msg, "userspace pm not selected"):
			return []error{ErrWrongPathManager}
		case strings.Contains(msg, "not found"):
			return []error{ErrNotFound}
		case strings.Contains(msg, "greater than maximum"):
			return []error{ErrLimit, ErrInvalid}
		case strings.Contains(msg, "did not match address and id"):
			return []error{ErrIDInUse}
		}
		return []error{ErrInvalid}
	}
	return nil
}

// invalidf returns a client-side validation error: nothing was sent.
func invalidf(op, format string, args ...any) error {
	return &Error{Op: op, Message: "", Err: fmt.Errorf(format, args...), kinds: []error{ErrInvalid}}
}
