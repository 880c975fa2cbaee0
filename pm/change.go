package pm

import (
	"slices"

	"github.com/mptcpd/mptcpd/genl"
)

// Action is what a Change does.
type Action int

const (
	// ActionAdd adds an endpoint.
	ActionAdd Action = iota + 1
	// ActionRemove removes an endpoint.
	ActionRemove
	// ActionUpdate changes an endpoint's flags in place.
	ActionUpdate
	// ActionLimits sets the limits.
	ActionLimits
)

func (a Action) String() string {
	switch a {
	case ActionAdd:
		return "add"
	case ActionRemove:
		return "remove"
	case ActionUpdate:
		return "update"
	case ActionLimits:
		return "limits"
	}
	return "unknown"
}

// reasonAdd is why the policy adds an endpoint.
const reasonAdd = "address on an interface the policy selects"

// Change is one change made to the kernel (or, in a Plan, one that would
// be made), with where it comes from and why.
type Change struct {
	Action Action
	// Endpoint is the endpoint added, removed or changed (with its new
	// flags; From holds the old ones).
	Endpoint genl.Endpoint
	From     genl.EndpointFlags
	// Limits and LimitsFrom are the new and the old limits (ActionLimits).
	Limits, LimitsFrom genl.Limits
	// Interface and Rule say which interface and policy rule the endpoint
	// belongs to, when known; Manual that the change was an API request.
	Interface, Rule string
	Manual          bool
	Reason          string
}

// OnChange makes the reconciler call fn with every change it makes to the
// kernel, after the run that made it (or at once, for a change on
// request). fn must not call the Reconciler.
func (r *Reconciler) OnChange(fn func(Change)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.onChange = fn
}

// manual returns the endpoints of ours that were added on request.
func (o Ownership) manual(ours []genl.Endpoint) []genl.Endpoint {
	var m []genl.Endpoint
	for _, ep := range ours {
		if i := slices.IndexFunc(o.Endpoints, func(rec OwnedEndpoint) bool { return rec.Matches(ep) }); i >= 0 && o.Endpoints[i].Manual {
			m = append(m, ep)
		}
	}
	return m
}
