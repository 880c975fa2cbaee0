package pm

import "errors"

var (
	// ErrOwnedByPolicy: the endpoint is one the policy derives from an
	// interface address; deleting or changing it by hand would be undone by
	// the next reconcile. Change the policy instead.
	ErrOwnedByPolicy = errors.New("endpoint is managed by the policy")
	// ErrWrongMode: the operation belongs to another mode than the one the
	// daemon runs in (e.g. per-connection calls in kernel mode).
	ErrWrongMode = errors.New("not available in this mode")
)
