package pm

import (
	"errors"
	"fmt"
	"slices"

	"github.com/mptcpd/mptcpd/genl"
)

// Owner says who added an endpoint.
type Owner int

const (
	// OwnerPolicy: the daemon, because its policy derives the endpoint from
	// an interface address.
	OwnerPolicy Owner = iota + 1
	// OwnerManual: the daemon, on request (the API).
	OwnerManual
	// OwnerForeign: someone else (ip mptcp, NetworkManager, the kernel).
	OwnerForeign
)

func (o Owner) String() string {
	switch o {
	case OwnerPolicy:
		return "policy"
	case OwnerManual:
		return "api"
	case OwnerForeign:
		return "foreign"
	}
	return "unknown"
}

// EndpointInfo is an endpoint in the kernel with its owner and, for the
// policy's, the rule that wants it.
type EndpointInfo struct {
	genl.Endpoint
	Owner Owner
	Rule  string
}

// Endpoints returns the kernel's endpoints with their owners, by ID.
func (r *Reconciler) Endpoints() ([]EndpointInfo, error) {
	r.mu.Lock()
	defer r.unlock()
	own, ours, foreign, err := r.read()
	if err != nil {
		return nil, err
	}
	infos := make([]EndpointInfo, 0, len(ours)+len(foreign))
	for _, ep := range ours {
		info := EndpointInfo{Endpoint: ep, Owner: OwnerPolicy}
		if i := slices.IndexFunc(own.Endpoints, func(o OwnedEndpoint) bool { return o.Matches(ep) }); i >= 0 {
			info.Rule = own.Endpoints[i].Rule
			if own.Endpoints[i].Manual {
				info.Owner = OwnerManual
			}
		}
		infos = append(infos, info)
	}
	for _, ep := range foreign {
		infos = append(infos, EndpointInfo{Endpoint: ep, Owner: OwnerForeign})
	}
	slices.SortFunc(infos, func(a, b EndpointInfo) int { return int(a.ID) - int(b.ID) })
	return infos, nil
}

// Endpoint returns the endpoint with the given ID; the error matches
// genl.ErrNotFound when there is none.
func (r *Reconciler) Endpoint(id uint8) (EndpointInfo, error) {
	infos, err := r.Endpoints()
	if err != nil {
		return EndpointInfo{}, err
	}
	for _, info := range infos {
		if info.ID == id {
			return info, nil
		}
	}
	return EndpointInfo{}, fmt.Errorf("endpoint %d: %w", id, genl.ErrNotFound)
}

// CheckManual checks an endpoint requested by hand before anything is
// sent: a usable unicast address, flags a request may set, a port only
// with signal. Errors match genl.ErrInvalid.
func CheckManual(ep genl.Endpoint) error {
	switch {
	case !ep.Addr.IsValid():
		return fmt.Errorf("%w: an endpoint needs an address", genl.ErrInvalid)
	case ep.Addr.IsUnspecified() || ep.Addr.IsMulticast():
		return fmt.Errorf("%w: %s is not a unicast address", genl.ErrInvalid, ep.Addr)
	case ep.Addr.Zone() != "":
		return fmt.Errorf("%w: %s has a zone; give the interface instead", genl.ErrInvalid, ep.Addr)
	case ep.Flags&genl.FlagImplicit != 0:
		return fmt.Errorf("%w: the implicit flag is set by the kernel only", genl.ErrInvalid)
	case ep.Flags&^(genl.FlagSignal|genl.FlagSubflow|genl.FlagBackup|genl.FlagFullmesh|genl.FlagLaminar) != 0:
		return fmt.Errorf("%w: unknown flags %#x", genl.ErrInvalid, uint32(ep.Flags))
	case ep.Flags&genl.FlagSignal != 0 && ep.Flags&genl.FlagFullmesh != 0:
		return fmt.Errorf("%w: signal and fullmesh cannot be combined", genl.ErrInvalid)
	case ep.Port != 0 && ep.Flags&genl.FlagSignal == 0:
		return fmt.Errorf("%w: a port needs the signal flag", genl.ErrInvalid)
	}
	return nil
}

// AddManual adds an endpoint on request. The daemon owns it (and removes
// it on a clean exit unless told to keep endpoints), but the policy leaves
// it alone. ID 0 picks one. Errors match genl.ErrInvalid, genl.ErrExists
// (an endpoint has the address), genl.ErrIDInUse and genl.ErrLimit.
func (r *Reconciler) AddManual(ep genl.Endpoint) (genl.Endpoint, error) {
	if err := CheckManual(ep); err != nil {
		return genl.Endpoint{}, err
	}
	r.run.Lock()
	defer r.run.Unlock()
	r.mu.Lock()
	defer r.unlock()
	r.last = nil // the fast path waits for the next full reconcile
	own, ours, foreign, err := r.read()
	if err != nil {
		return genl.Endpoint{}, err
	}
	present := append(slices.Clone(ours), foreign...)
	var used [256]bool
	highest := 0
	for _, p := range present {
		if p.Addr == ep.Addr && p.Port == ep.Port {
			return genl.Endpoint{}, fmt.Errorf("endpoint %s: %w as id %d", ep.AddrPort(), genl.ErrExists, p.ID)
		}
		if ep.ID != 0 && p.ID == ep.ID {
			return genl.Endpoint{}, fmt.Errorf("endpoint id %d: %w by %s", ep.ID, genl.ErrIDInUse, p.Addr)
		}
		used[p.ID] = true
		highest = max(highest, int(p.ID))
	}
	if len(present) >= MaxEndpoints {
		return genl.Endpoint{}, fmt.Errorf("%w: the kernel holds at most %d endpoints and has %d", genl.ErrLimit, MaxEndpoints, len(present))
	}
	if ep.ID == 0 {
		if ep.ID = nextID(&used, highest); ep.ID == 0 {
			return genl.Endpoint{}, fmt.Errorf("%w: no endpoint ID is free", genl.ErrLimit)
		}
	}
	own.Endpoints = append(own.Endpoints, OwnedEndpoint{ID: ep.ID, Addr: ep.Addr, Port: ep.Port, Manual: true})
	if err := r.save(own); err != nil {
		return genl.Endpoint{}, err
	}
	got, err := r.kernel.AddEndpoint(ep)
	if err != nil {
		own.Endpoints = own.Endpoints[:len(own.Endpoints)-1]
		return genl.Endpoint{}, errors.Join(fmt.Errorf("adding endpoint %s: %w", ep.AddrPort(), err), r.save(own))
	}
	r.log.Info("endpoint added", "id", got.ID, "addr", got.Addr, "port", got.Port, "flags", got.Flags.String(), "reason", "API request")
	r.notify(Change{Action: ActionAdd, Endpoint: got, Manual: true, Reason: "API request"})
	return got, nil
}

// find returns the endpoint with the ID and its owner.
func (r *Reconciler) find(id uint8) (own Ownership, ep genl.Endpoint, owner Owner, err error) {
	own, ours, foreign, err := r.read()
	if err != nil {
		return own, ep, 0, err
	}
	if i := slices.IndexFunc(foreign, func(ep genl.Endpoint) bool { return ep.ID == id }); i >= 0 {
		return own, foreign[i], OwnerForeign, nil
	}
	i := slices.IndexFunc(ours, func(ep genl.Endpoint) bool { return ep.ID == id })
	if i < 0 {
		return own, ep, 0, fmt.Errorf("endpoint %d: %w", id, genl.ErrNotFound)
	}
	if len(own.manual(ours[i:i+1])) == 1 {
		return own, ours[i], OwnerManual, nil
	}
	return own, ours[i], OwnerPolicy, nil
}

// DeleteManual removes an endpoint on request: one added on request, or a
// foreign one (the operator asks for it by ID). The policy's own are
// refused with an error matching ErrOwnedByPolicy; a missing one matches
// genl.ErrNotFound.
func (r *Reconciler) DeleteManual(id uint8) (genl.Endpoint, error) {
	r.run.Lock()
	defer r.run.Unlock()
	r.mu.Lock()
	defer r.unlock()
	r.last = nil // the fast path waits for the next full reconcile
	own, ep, owner, err := r.find(id)
	if err != nil {
		return ep, err
	}
	if owner == OwnerPolicy {
		return ep, fmt.Errorf("endpoint %d (%s): %w: remove its address from the policy's interfaces or rules instead", id, ep.Addr, ErrOwnedByPolicy)
	}
	reason := "API request"
	if owner == OwnerForeign {
		reason = "API request (an endpoint mptcpd did not add)"
	}
	if err := r.remove(&own, ep, reason); err != nil {
		return ep, err
	}
	r.notify(Change{Action: ActionRemove, Endpoint: ep, Manual: true, Reason: reason})
	return ep, nil
}

// SetManualFlags changes the backup and fullmesh flags of an endpoint on
// request (nil leaves a flag as it is). The policy's endpoints are refused
// with ErrOwnedByPolicy.
func (r *Reconciler) SetManualFlags(id uint8, backup, fullmesh *bool) (genl.Endpoint, error) {
	r.run.Lock()
	defer r.run.Unlock()
	r.mu.Lock()
	defer r.unlock()
	r.last = nil // the fast path waits for the next full reconcile
	_, ep, owner, err := r.find(id)
	if err != nil {
		return ep, err
	}
	if owner == OwnerPolicy {
		return ep, fmt.Errorf("endpoint %d (%s): %w: change the flags of its rule instead", id, ep.Addr, ErrOwnedByPolicy)
	}
	flags := ep.Flags
	for _, f := range []struct {
		set  *bool
		flag genl.EndpointFlags
	}{{backup, genl.FlagBackup}, {fullmesh, genl.FlagFullmesh}} {
		switch {
		case f.set == nil:
		case *f.set:
			flags |= f.flag
		default:
			flags &^= f.flag
		}
	}
	if flags&genl.FlagSignal != 0 && flags&genl.FlagFullmesh != 0 {
		return ep, fmt.Errorf("%w: endpoint %d is a signal endpoint, which cannot be fullmesh", genl.ErrInvalid, id)
	}
	if flags == ep.Flags {
		return ep, nil
	}
	if err := r.kernel.SetEndpointFlags(id, flags); err != nil {
		return ep, fmt.Errorf("changing the flags of endpoint %d: %w", id, err)
	}
	from := ep.Flags
	ep.Flags = flags
	r.log.Info("endpoint changed", "id", id, "addr", ep.Addr, "from", from.String(), "to", flags.String(), "reason", "API request")
	r.notify(Change{Action: ActionUpdate, Endpoint: ep, From: from, Manual: true, Reason: "API request"})
	return ep, nil
}

// FlushManual removes every endpoint the policy does not derive: those
// added on request and foreign ones. It returns those removed.
func (r *Reconciler) FlushManual() ([]genl.Endpoint, error) {
	r.run.Lock()
	defer r.run.Unlock()
	r.mu.Lock()
	defer r.unlock()
	r.last = nil // the fast path waits for the next full reconcile
	own, ours, foreign, err := r.read()
	if err != nil {
		return nil, err
	}
	var (
		removed []genl.Endpoint
		errs    []error
	)
	for _, ep := range append(own.manual(ours), foreign...) {
		if err := r.remove(&own, ep, "API request: flush"); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, ep)
		r.notify(Change{Action: ActionRemove, Endpoint: ep, Manual: true, Reason: "API request: flush"})
	}
	return removed, errors.Join(errs...)
}

func (r *Reconciler) notify(c Change) {
	if r.onChange != nil {
		r.onChange(c)
	}
}
