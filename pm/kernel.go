package pm

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"

	"github.com/mptcpd/mptcpd/config"
	"github.com/mptcpd/mptcpd/genl"
	"github.com/mptcpd/mptcpd/netmon"
)

// Kernel is what kernel mode needs of the kernel in one namespace.
// *genl.Client provides the endpoint and limit methods; the path manager
// selection is the namespace's net.mptcp sysctl.
type Kernel interface {
	Endpoints() ([]genl.Endpoint, error)
	AddEndpoint(genl.Endpoint) (genl.Endpoint, error)
	DeleteEndpoint(id uint8) error
	SetEndpointFlags(id uint8, flags genl.EndpointFlags) error
	Limits() (genl.Limits, error)
	SetLimits(genl.Limits) error
	PathManager() (string, error)
	SetPathManager(string) error
}

// changeableFlags are the flags SET_FLAGS changes in place; a change of any
// other flag, the port or the interface needs the endpoint deleted and added.
const changeableFlags = genl.FlagBackup | genl.FlagFullmesh

// Reconciler brings the in-kernel path manager of one namespace to what
// the policy wants: desired state from the policy and the interfaces,
// actual state from the kernel, the difference applied. It changes only
// endpoints it owns, and says which it owns. Its methods are serialised.
type Reconciler struct {
	kernel Kernel
	store  Store
	log    *slog.Logger

	mu sync.Mutex
	// own caches the records: the reconciler is their only writer (the
	// daemon holds the namespace's lock), so they are read from the store
	// once.
	own *Ownership
	// onChange, if set, is told of every change a reconcile makes.
	onChange func(Change)
	// deferTo, if set, names a manager of other endpoints (NetworkManager)
	// whose interfaces are left to it: an interface with a foreign endpoint
	// on it gets none of ours.
	deferTo string
}

// DeferTo makes the reconciler leave every interface that carries a
// foreign endpoint to manager (e.g. "NetworkManager"), so the two do not
// fight over it. Empty turns it off.
func (r *Reconciler) DeferTo(manager string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.deferTo = manager
}

// NewReconciler returns a Reconciler over kernel that records ownership in
// store and logs each change it makes, with the reason, to log.
func NewReconciler(kernel Kernel, store Store, log *slog.Logger) *Reconciler {
	return &Reconciler{kernel: kernel, store: store, log: log}
}

// Result is what one reconcile found and did.
type Result struct {
	// Added, Removed and Changed are the endpoints this run added, removed
	// and changed the flags of.
	Added, Removed, Changed []genl.Endpoint
	// Owned are the endpoints the daemon owns after the run; Foreign the
	// endpoints others added (left alone).
	Owned, Foreign []genl.Endpoint
	// Skipped are addresses the policy did not make endpoints, with why.
	Skipped []Skip
	// Manual are the endpoints added on request (through the API), which
	// the policy leaves alone.
	Manual []genl.Endpoint
	// Limits are the limits in the kernel after the run, LimitsBefore
	// before it.
	Limits, LimitsBefore genl.Limits
	// Made are the changes made, in order, with their reasons.
	Made []Change
}

// Changes returns the number of changes made to the kernel.
func (r Result) Changes() int { return len(r.Added) + len(r.Removed) + len(r.Changed) }

// Reconcile applies the policy cfg to the interfaces in st. It first reads
// the kernel's endpoints and the ownership records, so it is correct at
// start, after lost events, after a reload and after a crash alike. Errors
// of single changes are collected; the rest of the run goes on.
func (r *Reconciler) Reconcile(cfg *config.Config, st netmon.State) (Result, error) {
	r.mu.Lock()
	defer r.mu.Unlock()

	var res Result
	own, ours, foreign, err := r.read()
	if err != nil {
		return res, err
	}
	res.Foreign = foreign
	// Endpoints added on request are the operator's: the policy neither
	// removes nor changes them, and they take room like foreign ones.
	manual := own.manual(ours)
	ours = slices.DeleteFunc(ours, func(ep genl.Endpoint) bool { return slices.Contains(manual, ep) })
	res.Manual = manual
	foreign = append(slices.Clip(foreign), manual...)

	wants, skipped := Desired(cfg, st)
	// A foreign endpoint with the same address and port stays as it is.
	foreignKeys := make(map[addrKey]genl.Endpoint, len(foreign))
	for _, ep := range foreign {
		foreignKeys[keyOf(ep)] = ep
	}
	wants = slices.DeleteFunc(wants, func(w Want) bool {
		ep, clash := foreignKeys[w.key()]
		if clash {
			who := "someone else"
			if slices.Contains(manual, ep) {
				who = "an API request"
			}
			skipped = append(skipped, Skip{Addr: w.Addr, Interface: w.Interface,
				Reason: fmt.Sprintf("endpoint id %d with this address was added by %s; left alone", ep.ID, who)})
		}
		return clash
	})
	if r.deferTo != "" {
		managed := foreignInterfaces(res.Foreign, st)
		wants = slices.DeleteFunc(wants, func(w Want) bool {
			if managed[int(w.IfIndex)] {
				skipped = append(skipped, Skip{Addr: w.Addr, Interface: w.Interface,
					Reason: fmt.Sprintf("%s manages MPTCP endpoints on interface %s; left to it", r.deferTo, w.Interface)})
				return true
			}
			return false
		})
	}
	if room := MaxEndpoints - len(foreign); len(wants) > room {
		for _, w := range wants[max(room, 0):] {
			skipped = append(skipped, Skip{Addr: w.Addr, Interface: w.Interface,
				Reason: fmt.Sprintf("over the kernel's limit of %d endpoints (%d foreign or added on request); raise its rule's preference to prefer it", MaxEndpoints, len(foreign))})
		}
		wants = wants[:max(room, 0)]
	}
	res.Skipped = skipped
	why := make(map[netip.Addr]string, len(skipped))
	for _, s := range skipped {
		why[s.Addr] = s.Reason
	}

	var errs []error
	wantByKey := make(map[addrKey]Want, len(wants))
	for _, w := range wants {
		wantByKey[w.key()] = w
	}
	// Remove and replace first: that frees room for the adds.
	var kept []genl.Endpoint
	for _, ep := range ours {
		w, wanted := wantByKey[keyOf(ep)]
		switch {
		case !wanted:
			reason, ok := why[ep.Addr]
			if !ok {
				reason = "address no longer on any interface"
			}
			if err := r.remove(&own, ep, reason); err != nil {
				errs = append(errs, err)
				kept = append(kept, ep)
				continue
			}
			res.Removed = append(res.Removed, ep)
			res.Made = append(res.Made, Change{Action: ActionRemove, Endpoint: ep, Reason: reason})
		case ep.IfIndex != w.IfIndex || ep.Flags&^changeableFlags != w.Flags&^changeableFlags:
			reason := fmt.Sprintf("rule %s now wants flags %s on interface %s; replacing it", w.Rule, w.Flags, w.Interface)
			if err := r.remove(&own, ep, reason); err != nil {
				errs = append(errs, err)
				kept = append(kept, ep)
				delete(wantByKey, keyOf(ep))
				continue
			}
			res.Removed = append(res.Removed, ep)
			res.Made = append(res.Made, Change{Action: ActionRemove, Endpoint: ep, Interface: w.Interface, Rule: w.Rule, Reason: reason})
		case ep.Flags != w.Flags:
			if err := r.kernel.SetEndpointFlags(ep.ID, w.Flags); err != nil {
				errs = append(errs, fmt.Errorf("changing the flags of endpoint %d (%s): %w", ep.ID, ep.Addr, err))
			} else {
				r.log.Info("endpoint changed", "id", ep.ID, "addr", ep.Addr, "from", ep.Flags.String(), "to", w.Flags.String(),
					"interface", w.Interface, "rule", w.Rule, "reason", "rule flags changed")
				from := ep.Flags
				ep.Flags = w.Flags
				res.Changed = append(res.Changed, ep)
				res.Made = append(res.Made, Change{Action: ActionUpdate, Endpoint: ep, From: from, Interface: w.Interface, Rule: w.Rule, Reason: "rule flags changed"})
			}
			kept = append(kept, ep)
			delete(wantByKey, keyOf(ep))
		default:
			kept = append(kept, ep)
			delete(wantByKey, keyOf(ep))
		}
	}
	var toAdd []Want
	for _, w := range wants {
		if _, missing := wantByKey[w.key()]; missing {
			toAdd = append(toAdd, w)
		}
	}
	added, err := r.add(&own, toAdd, append(slices.Clone(kept), foreign...))
	if err != nil {
		errs = append(errs, err)
	}
	res.Added = added
	for _, ep := range added {
		w := wants[slices.IndexFunc(wants, func(w Want) bool { return w.key() == keyOf(ep) })]
		res.Made = append(res.Made, Change{Action: ActionAdd, Endpoint: ep, Interface: w.Interface, Rule: w.Rule, Reason: reasonAdd})
	}
	kept = append(kept, added...)
	slices.SortFunc(kept, func(a, b genl.Endpoint) int { return int(a.ID) - int(b.ID) })
	res.Owned = kept

	before, limits, err := r.applyLimits(&own, DesiredLimits(cfg, wants))
	if err != nil {
		errs = append(errs, err)
	}
	res.Limits, res.LimitsBefore = limits, before
	if before != limits {
		res.Made = append(res.Made, Change{Action: ActionLimits, Limits: limits, LimitsFrom: before, Reason: "policy"})
	}
	if r.onChange != nil {
		for _, c := range res.Made {
			r.onChange(c)
		}
	}
	return res, errors.Join(errs...)
}

// read loads the ownership records and the kernel's endpoints and splits
// the endpoints into ours and foreign; records of endpoints that are gone
// are dropped.
func (r *Reconciler) read() (own Ownership, ours, foreign []genl.Endpoint, err error) {
	own, err = r.load()
	if err != nil {
		return own, nil, nil, err
	}
	actual, err := r.kernel.Endpoints()
	if err != nil {
		return own, nil, nil, fmt.Errorf("reading the kernel's endpoints: %w", err)
	}
	records := own.Endpoints
	own.Endpoints = nil
	for _, ep := range actual {
		i := slices.IndexFunc(records, func(o OwnedEndpoint) bool { return o.Matches(ep) })
		if i < 0 {
			foreign = append(foreign, ep)
			continue
		}
		ours = append(ours, ep)
		rec := records[i]
		rec.ID = ep.ID
		own.Endpoints = append(own.Endpoints, rec)
		records = slices.Delete(records, i, i+1)
	}
	if len(records) > 0 {
		// Gone while we were not looking (deleted by hand, or the add never
		// happened): forget them.
		if err := r.save(own); err != nil {
			return own, nil, nil, err
		}
	}
	return own, ours, foreign, nil
}

// load returns the ownership records, read from the store the first time.
// The caller gets its own copy to change and then save.
func (r *Reconciler) load() (Ownership, error) {
	if r.own == nil {
		o, err := r.store.Load()
		if err != nil {
			return o, err
		}
		r.own = &o
	}
	o := *r.own
	o.Endpoints = slices.Clone(o.Endpoints)
	return o, nil
}

// save writes the records to the store and, once written, keeps them.
func (r *Reconciler) save(o Ownership) error {
	if err := r.store.Save(o); err != nil {
		return err
	}
	o.Endpoints = slices.Clone(o.Endpoints)
	r.own = &o
	return nil
}

// add adds the wanted endpoints with IDs it picks itself, so that one save
// before the requests records them completely: if the daemon dies right
// after the kernel added them, the records still claim them. present are
// the endpoints in the kernel, whose IDs are taken.
func (r *Reconciler) add(own *Ownership, wants []Want, present []genl.Endpoint) ([]genl.Endpoint, error) {
	if len(wants) == 0 {
		return nil, nil
	}
	var used [256]bool
	highest := 0
	for _, ep := range present {
		used[ep.ID] = true
		highest = max(highest, int(ep.ID))
	}
	eps := make([]genl.Endpoint, 0, len(wants))
	for _, w := range wants {
		id := nextID(&used, highest)
		if id == 0 {
			break // 255 IDs in use: the kernel could not hold more anyway
		}
		used[id], highest = true, int(id)
		ep := w.Endpoint()
		ep.ID = id
		eps = append(eps, ep)
		own.Endpoints = append(own.Endpoints, OwnedEndpoint{ID: id, Addr: ep.Addr, Port: ep.Port, Rule: w.Rule})
	}
	if err := r.save(*own); err != nil {
		own.Endpoints = own.Endpoints[:len(own.Endpoints)-len(eps)]
		return nil, err
	}
	var (
		added []genl.Endpoint
		errs  []error
	)
	for i, ep := range eps {
		w := wants[i]
		got, err := r.kernel.AddEndpoint(ep)
		if err != nil {
			errs = append(errs, fmt.Errorf("adding endpoint %s on %s: %w", w.Addr, w.Interface, err))
			own.Endpoints = slices.DeleteFunc(own.Endpoints, func(o OwnedEndpoint) bool { return o.ID == ep.ID && o.Addr == ep.Addr })
			continue
		}
		r.log.Info("endpoint added", "id", got.ID, "addr", got.Addr, "port", got.Port, "flags", got.Flags.String(),
			"interface", w.Interface, "rule", w.Rule, "reason", reasonAdd)
		added = append(added, got)
	}
	if len(errs) > 0 {
		errs = append(errs, r.save(*own))
	}
	return added, errors.Join(errs...)
}

// nextID picks the ID for a new endpoint as the kernel does: the one after
// the highest in use, wrapping around to the lowest free one; 0 if none is
// free. Not reusing a just-freed ID at once spares peers an RM_ADDR and an
// ADD_ADDR with the same ID in quick succession.
func nextID(used *[256]bool, highest int) uint8 {
	for id := highest + 1; id <= 255; id++ {
		if !used[id] {
			return uint8(id)
		}
	}
	for id := 1; id <= highest; id++ {
		if !used[id] {
			return uint8(id)
		}
	}
	return 0
}

func (r *Reconciler) remove(own *Ownership, ep genl.Endpoint, reason string) error {
	if err := r.kernel.DeleteEndpoint(ep.ID); err != nil && !errors.Is(err, genl.ErrNotFound) {
		return fmt.Errorf("removing endpoint %d (%s): %w", ep.ID, ep.Addr, err)
	}
	own.Endpoints = slices.DeleteFunc(own.Endpoints, func(o OwnedEndpoint) bool { return o.Matches(ep) })
	r.log.Info("endpoint removed", "id", ep.ID, "addr", ep.Addr, "port", ep.Port, "flags", ep.Flags.String(), "reason", reason)
	return r.save(*own)
}

// applyLimits sets the limits to want; it returns the limits before and
// after.
func (r *Reconciler) applyLimits(own *Ownership, want genl.Limits) (before, after genl.Limits, err error) {
	cur, err := r.kernel.Limits()
	if err != nil {
		return cur, cur, fmt.Errorf("reading the kernel's limits: %w", err)
	}
	if cur == want {
		return cur, cur, nil
	}
	if own.LimitsBefore == nil {
		before := cur
		own.LimitsBefore = &before
		if err := r.save(*own); err != nil {
			return cur, cur, err
		}
	}
	if err := r.kernel.SetLimits(want); err != nil {
		return cur, cur, fmt.Errorf("setting limits to subflows %d add_addr_accepted %d: %w", want.Subflows, want.AddAddrAccepted, err)
	}
	r.log.Info("limits set", "subflows", want.Subflows, "add_addr_accepted", want.AddAddrAccepted,
		"from_subflows", cur.Subflows, "from_add_addr_accepted", cur.AddAddrAccepted, "reason", "policy")
	return cur, want, nil
}

// SelectPathManager sets the namespace's path manager, remembering the one
// it found the first time so Release can put it back.
func (r *Reconciler) SelectPathManager(pm string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur, err := r.kernel.PathManager()
	if err != nil {
		return fmt.Errorf("reading the path manager: %w", err)
	}
	if cur == pm {
		return nil
	}
	own, err := r.load()
	if err != nil {
		return err
	}
	if own.PathManagerBefore == "" {
		own.PathManagerBefore = cur
		if err := r.save(own); err != nil {
			return err
		}
	}
	if err := r.kernel.SetPathManager(pm); err != nil {
		return fmt.Errorf("selecting the %s path manager: %w", pm, err)
	}
	r.log.Info("path manager selected", "path_manager", pm, "from", cur, "reason", "mode")
	return nil
}

// Release removes every endpoint the daemon owns and puts back the limits
// and path manager it found, unless keep is set; then the records are
// cleared. It is what a clean exit does.
func (r *Reconciler) Release(keepEndpoints, keepPathManager bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	own, ours, _, err := r.read()
	if err != nil {
		return err
	}
	var errs []error
	if !keepEndpoints {
		for _, ep := range ours {
			if err := r.remove(&own, ep, "daemon stopping"); err != nil {
				errs = append(errs, err)
			}
		}
		if own.LimitsBefore != nil {
			if err := r.kernel.SetLimits(*own.LimitsBefore); err != nil {
				errs = append(errs, fmt.Errorf("restoring limits: %w", err))
			} else {
				r.log.Info("limits restored", "subflows", own.LimitsBefore.Subflows, "add_addr_accepted", own.LimitsBefore.AddAddrAccepted, "reason", "daemon stopping")
				own.LimitsBefore = nil
			}
		}
	}
	if !keepPathManager && own.PathManagerBefore != "" {
		if err := r.kernel.SetPathManager(own.PathManagerBefore); err != nil {
			errs = append(errs, fmt.Errorf("restoring the path manager: %w", err))
		} else {
			r.log.Info("path manager restored", "path_manager", own.PathManagerBefore, "reason", "daemon stopping")
			own.PathManagerBefore = ""
		}
	}
	if keepEndpoints {
		// Kept endpoints are left to whoever comes next: stop claiming them.
		own = Ownership{PathManagerBefore: own.PathManagerBefore}
	}
	errs = append(errs, r.save(own))
	return errors.Join(errs...)
}

// foreignInterfaces returns the indexes of the interfaces foreign endpoints
// are on: bound to them, or holding their address.
func foreignInterfaces(foreign []genl.Endpoint, st netmon.State) map[int]bool {
	managed := make(map[int]bool)
	for _, ep := range foreign {
		if ep.IfIndex != 0 {
			managed[int(ep.IfIndex)] = true
			continue
		}
		for _, a := range st.Addrs {
			if a.Prefix.Addr() == ep.Addr {
				managed[a.Index] = true
			}
		}
	}
	return managed
}
