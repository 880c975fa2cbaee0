package pm

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
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
	// CreateEndpoint adds an endpoint with the ID given, without reading
	// it back.
	CreateEndpoint(genl.Endpoint) error
	// SetLimitsAndCreateEndpoint is SetLimits, then CreateEndpoint, the
	// second not waiting for the first's answer; each has its error.
	SetLimitsAndCreateEndpoint(genl.Limits, genl.Endpoint) (limitsErr, createErr error)
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

	// run serialises the methods that change endpoints or records, except
	// AddNew: Reconcile holds it, but not mu, while it waits for the
	// kernel to delete endpoints (DEL_ADDR waits for an RCU grace period,
	// milliseconds), so that a new address's fast path does not wait too.
	// Taken before mu.
	run sync.Mutex
	mu  sync.Mutex
	// own caches the records: the reconciler is their only writer (the
	// daemon holds the namespace's lock), so they are read from the store
	// once.
	own *Ownership
	// onChange, if set, is told of every change a reconcile makes.
	onChange func(Change)
	// deferTo says which interfaces are left to other managers of
	// endpoints (NetworkManager). Plan's dry run copies it.
	deferTo deferral
	// deferredLogged are the interfaces DeferInterfaces named at the last
	// reconcile, as logged.
	deferredLogged string
	// last is what the last Reconcile applied and left in the kernel, with
	// what AddNew added since; the fast path works from it. Nil before the
	// first Reconcile, after one that could not read the kernel, and after
	// Release.
	last *lastRun
	// logs are the records logged while mu is held, written once it is
	// released: writing one is a system call, and the fast path waits for
	// mu.
	logs []func()
}

// unlock releases mu, then writes the logs made while it was held.
func (r *Reconciler) unlock() {
	logs := r.logs
	r.logs = nil
	r.mu.Unlock()
	for _, log := range logs {
		log()
	}
}

// info logs at level Info once mu is released; mu must be held.
func (r *Reconciler) info(msg string, args ...any) {
	r.logs = append(r.logs, func() { r.log.Info(msg, args...) })
}

// lastRun is the policy the last Reconcile applied, the endpoints it
// wanted, and the kernel's endpoints and limits as it left them; with what
// the policy says of each interface it saw, ready for the next address.
type lastRun struct {
	cfg           *config.Config
	wants         []Want
	ours, foreign []genl.Endpoint
	limits        genl.Limits
	links         map[int]linkDecision
}

// deferral is who the reconciler leaves interfaces to.
type deferral struct {
	// foreign, if set, names the manager (NetworkManager) left every
	// interface that carries a foreign endpoint: DeferTo.
	foreign string
	// manager is left the interfaces that which names:
	// DeferInterfaces.
	manager string
	which   func(netmon.State) map[string]string
}

// active reports whether any interface may be left to another manager.
func (d deferral) active() bool { return d.foreign != "" || d.which != nil }

// name names the other manager, for the log.
func (d deferral) name() string {
	if d.which != nil {
		return d.manager
	}
	return d.foreign
}

// DeferTo makes the reconciler leave every interface that carries a
// foreign endpoint to manager (e.g. "NetworkManager"), so the two do not
// fight over it. Empty turns it off.
func (r *Reconciler) DeferTo(manager string) {
	r.mu.Lock()
	defer r.unlock()
	r.deferTo.foreign = manager
}

// DeferInterfaces makes the reconciler leave to manager (e.g.
// "NetworkManager") the interfaces that which names, besides those DeferTo
// finds by their foreign endpoints: their addresses get no endpoints of
// ours, and endpoints of ours already on them are removed. Each reconcile
// calls which with the interfaces it has read; which returns the names of
// the interfaces manager takes, each with why (for the log, may be
// empty). It is called with the reconciler's lock held, perhaps from
// several goroutines (Plan): it must be quick, safe for concurrent use,
// and must not call the Reconciler. The reconciler logs the set of
// interfaces left to manager when it changes. Nil turns it off.
func (r *Reconciler) DeferInterfaces(manager string, which func(netmon.State) map[string]string) {
	r.mu.Lock()
	defer r.unlock()
	if manager == "" {
		manager = "another manager"
	}
	r.deferTo.manager, r.deferTo.which = manager, which
	if which == nil {
		r.deferredLogged = ""
	}
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
	r.run.Lock()
	defer r.run.Unlock()
	r.mu.Lock()
	res, drops, err := r.reconcile(cfg, st)
	if len(drops) == 0 {
		r.unlock()
		return res, err
	}
	// The endpoints nothing wants any more go last, with mu released: the
	// fast path may add a new address's endpoint meanwhile.
	r.unlock()
	errs := []error{err}
	for _, d := range drops {
		derr := r.kernel.DeleteEndpoint(d.ep.ID)
		r.mu.Lock()
		if derr != nil && !errors.Is(derr, genl.ErrNotFound) {
			errs = append(errs, fmt.Errorf("removing endpoint %d (%s): %w", d.ep.ID, d.ep.Addr, derr))
			res.Owned = append(res.Owned, d.ep)
			r.unlock()
			continue
		}
		if r.last != nil {
			r.last.ours = slices.DeleteFunc(r.last.ours, func(ep genl.Endpoint) bool { return ep.ID == d.ep.ID })
		}
		own, lerr := r.load()
		if lerr == nil {
			lerr = r.forget(&own, d.ep, d.reason)
		}
		errs = append(errs, lerr)
		res.Removed = append(res.Removed, d.ep)
		c := Change{Action: ActionRemove, Endpoint: d.ep, Reason: d.reason}
		res.Made = append(res.Made, c)
		if r.onChange != nil {
			r.onChange(c)
		}
		r.unlock()
	}
	slices.SortFunc(res.Owned, func(a, b genl.Endpoint) int { return int(a.ID) - int(b.ID) })
	return res, errors.Join(errs...)
}

// drop is an endpoint a reconcile removes after the rest, and why.
type drop struct {
	ep     genl.Endpoint
	reason string
}

// reconcile is Reconcile with mu held, but for the endpoints to remove
// that no add needs the room of: those it returns, still in the kernel
// and counted in r.last as such, for the caller to remove.
func (r *Reconciler) reconcile(cfg *config.Config, st netmon.State) (Result, []drop, error) {
	var res Result
	r.last = nil
	own, ours, foreign, err := r.read()
	if err != nil {
		return res, nil, err
	}
	res.Foreign = foreign
	// Endpoints added on request are the operator's: the policy neither
	// removes nor changes them, and they take room like foreign ones.
	manual := own.manual(ours)
	ours = slices.DeleteFunc(ours, func(ep genl.Endpoint) bool { return slices.Contains(manual, ep) })
	res.Manual = manual
	foreign = append(slices.Clip(foreign), manual...)

	wants, skipped := r.plan(cfg, st, foreign, manual)
	res.Skipped = skipped
	why := make(map[netip.Addr]string, len(skipped))
	for _, s := range skipped {
		why[s.Addr] = s.Reason
	}

	var errs []error
	// The limits first: the kernel weighs them when an endpoint is added,
	// so a connection gets a subflow from a new endpoint at once only if
	// the limits already allow it.
	cur, err := r.kernel.Limits()
	if err != nil {
		return res, nil, fmt.Errorf("reading the kernel's limits: %w", err)
	}
	res.LimitsBefore = cur
	res.Limits, err = r.applyLimits(&own, cur, DesiredLimits(cfg, wants))
	if err != nil {
		errs = append(errs, err)
	}
	if res.Limits != cur {
		res.Made = append(res.Made, Change{Action: ActionLimits, Limits: res.Limits, LimitsFrom: cur, Reason: "policy"})
	}
	var drops []drop
	defer func() {
		links := make(map[int]linkDecision, len(st.Links))
		for i, l := range st.Links {
			links[i] = decideLink(cfg, l)
		}
		still := slices.Clone(res.Owned)
		for _, d := range drops {
			still = append(still, d.ep)
		}
		r.last = &lastRun{cfg: cfg, wants: slices.Clone(wants), ours: still, foreign: slices.Clone(foreign), limits: res.Limits, links: links}
	}()

	wantByKey := make(map[addrKey]Want, len(wants))
	for _, w := range wants {
		wantByKey[w.key()] = w
	}
	// The endpoints nobody wants any more are removed after the adds when
	// the kernel has room for those with them still there; otherwise
	// first, to make the room.
	missing := 0
	for _, w := range wants {
		if indexKey(ours, w.key()) < 0 {
			missing++
		}
	}
	dropLater := len(ours)+len(foreign)+missing <= MaxEndpoints
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
			if dropLater {
				drops = append(drops, drop{ep: ep, reason: reason})
				continue
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
				r.info("endpoint changed", "id", ep.ID, "addr", ep.Addr, "from", ep.Flags.String(), "to", w.Flags.String(),
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
	present := slices.Clone(kept)
	for _, d := range drops {
		present = append(present, d.ep) // their IDs are taken until they go
	}
	added, err := r.add(&own, toAdd, [2][]genl.Endpoint{present, foreign}, r.kernel.AddEndpoint, "address on an interface the policy selects")
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
	if r.onChange != nil {
		for _, c := range res.Made {
			r.onChange(c)
		}
	}
	return res, drops, errors.Join(errs...)
}

// plan returns the endpoints the policy cfg wants of the interfaces in st
// given the foreign endpoints in the kernel, best first: Desired, less the
// addresses a foreign endpoint has, less the interfaces left to other
// managers (DeferInterfaces, DeferTo), cut to the room the foreign
// endpoints leave in the kernel. It says why it left each of the others
// out.
func (r *Reconciler) plan(cfg *config.Config, st netmon.State, foreign, manual []genl.Endpoint) (wants []Want, skipped []Skip) {
	wants, skipped = Desired(cfg, st)
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
	if d := r.deferTo; d.which != nil {
		taken := d.which(st)
		r.logDeferred(d.manager, taken, st)
		wants = slices.DeleteFunc(wants, func(w Want) bool {
			why, ok := taken[w.Interface]
			if !ok {
				return false
			}
			if why != "" {
				why = " (" + why + ")"
			}
			skipped = append(skipped, Skip{Addr: w.Addr, Interface: w.Interface,
				Reason: fmt.Sprintf("%s manages MPTCP endpoints on interface %s%s; left to it", d.manager, w.Interface, why)})
			return true
		})
	}
	if d := r.deferTo; d.foreign != "" {
		managed := foreignInterfaces(slices.DeleteFunc(slices.Clone(foreign), func(ep genl.Endpoint) bool { return slices.Contains(manual, ep) }), st)
		wants = slices.DeleteFunc(wants, func(w Want) bool {
			if managed[int(w.IfIndex)] {
				skipped = append(skipped, Skip{Addr: w.Addr, Interface: w.Interface,
					Reason: fmt.Sprintf("%s manages MPTCP endpoints on interface %s; left to it", d.foreign, w.Interface)})
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
	return wants, skipped
}

// logDeferred logs the interfaces of st that manager takes, as taken
// says, when they differ from those logged last; mu must be held.
func (r *Reconciler) logDeferred(manager string, taken map[string]string, st netmon.State) {
	var names []string
	for name := range taken {
		if st.IndexOf(name) != 0 {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	list := strings.Join(names, ",")
	if list == r.deferredLogged {
		return
	}
	r.deferredLogged = list
	if list == "" {
		r.info("no interfaces left to "+manager, "manager", manager)
		return
	}
	r.info("interfaces left to "+manager, "manager", manager, "interfaces", list)
}

// AddNew is the fast path from a new address to its endpoint: it adds an
// endpoint for each address of added that the policy of the last Reconcile
// selects and that is not one yet, at once. It decides each address with
// DesiredAddr, as Desired does, against what the last Reconcile wanted and
// left in the kernel, instead of reading the kernel again; it records each
// endpoint before it adds it, as Reconcile does, and raises the limits
// first if the policy wants them higher. It only ever adds, and it leaves
// to Reconcile whatever it cannot decide alone: an address wanted already
// (on another interface, say), an endpoint to replace, the last places in
// the kernel (the rules' preferences decide who gets them), an address on
// an interface another manager may take (DeferTo, DeferInterfaces), an
// address whose interface needs a route (require_route). A Reconcile must
// follow, as after any change: it checks what AddNew did against the
// kernel and corrects it.
//
// The Result has Added and, for the addresses of added that did not
// become endpoints, Skipped.
func (r *Reconciler) AddNew(added []netmon.NewAddr) (Result, error) {
	r.mu.Lock()
	defer r.unlock()

	var res Result
	last := r.last
	if last == nil || len(added) == 0 {
		return res, nil
	}
	skip := func(w Want, reason string) {
		res.Skipped = append(res.Skipped, Skip{Addr: w.Addr, Interface: w.Interface, Reason: reason})
	}
	var cands []Want
	for _, na := range added {
		// DesiredAddr, with the interface's half as the last reconcile
		// found it when the interface has not changed since.
		d, known := last.links[na.Link.Index]
		if !known || d.link != na.Link {
			d = decideLink(last.cfg, na.Link)
		}
		w, s, ok := d.want(last.cfg, na.Addr, false)
		switch {
		case last.cfg.Addresses.RequireRoute:
			res.Skipped = append(res.Skipped, Skip{Addr: na.Addr.Prefix.Addr(), Interface: na.Link.Name, Reason: "left to a full reconcile: require_route needs the routes"})
		case !ok:
			res.Skipped = append(res.Skipped, s)
		case r.deferTo.active():
			// The other manager is likely adding an endpoint for the
			// address right now: give it the time a full reconcile takes.
			skip(w, fmt.Sprintf("left to a full reconcile: %s may manage interface %s", r.deferTo.name(), w.Interface))
		default:
			cands = append(cands, w)
		}
	}
	if len(cands) > 1 {
		slices.SortStableFunc(cands, better)
	}

	var toAdd []Want
	room := MaxEndpoints - len(last.foreign)
	for _, w := range cands {
		k := w.key()
		if i := indexKey(last.foreign, k); i >= 0 {
			skip(w, fmt.Sprintf("endpoint id %d with this address was added by someone else; left alone", last.foreign[i].ID))
			continue
		}
		switch {
		case indexKey(last.ours, k) >= 0:
			// An endpoint already: whether it needs changing is
			// Reconcile's to say.
		case wanted(last.wants, k) || wanted(toAdd, k):
			skip(w, "left to a full reconcile: the address is wanted already")
		case len(last.wants)+len(toAdd) >= room || len(last.ours)+len(last.foreign)+len(toAdd) >= MaxEndpoints:
			skip(w, fmt.Sprintf("left to a full reconcile: the last of the kernel's %d places go by the rules' preferences", MaxEndpoints))
		default:
			toAdd = append(toAdd, w)
		}
	}
	if len(toAdd) == 0 {
		return res, nil
	}
	own, err := r.load()
	if err != nil {
		return res, err
	}
	// Raise the limits first, as Reconcile does (lowering them is left to
	// it), in the same breath as the first add.
	cur := last.limits
	want := desiredLimits(last.cfg, last.wants, toAdd)
	want = genl.Limits{Subflows: max(want.Subflows, cur.Subflows), AddAddrAccepted: max(want.AddAddrAccepted, cur.AddAddrAccepted)}
	raise := want != cur
	if raise && own.LimitsBefore == nil {
		own.LimitsBefore = &cur
		if err := r.save(own); err != nil {
			return res, err
		}
	}
	var limitsErr error
	// No read-back of the endpoint: the reconcile that follows reads them
	// all.
	create := func(ep genl.Endpoint) (genl.Endpoint, error) {
		if !raise {
			return ep, r.kernel.CreateEndpoint(ep)
		}
		raise = false
		lerr, err := r.kernel.SetLimitsAndCreateEndpoint(want, ep)
		if limitsErr = r.limitsSet(cur, want, lerr); limitsErr == nil {
			last.limits = want
		}
		return ep, err
	}
	res.Added, err = r.add(&own, toAdd, [2][]genl.Endpoint{last.ours, last.foreign}, create, "new address on an interface the policy selects")
	last.ours = append(last.ours, res.Added...)
	res.LimitsBefore, res.Limits = cur, last.limits
	if last.limits != cur {
		res.Made = append(res.Made, Change{Action: ActionLimits, Limits: last.limits, LimitsFrom: cur, Reason: "policy"})
	}
	for _, ep := range res.Added {
		if i := slices.IndexFunc(toAdd, func(w Want) bool { return w.key() == keyOf(ep) }); i >= 0 {
			last.wants = append(last.wants, toAdd[i])
			res.Made = append(res.Made, Change{Action: ActionAdd, Endpoint: ep, Interface: toAdd[i].Interface, Rule: toAdd[i].Rule, Reason: reasonAdd})
		}
	}
	if r.onChange != nil {
		for _, c := range res.Made {
			r.onChange(c)
		}
	}
	return res, errors.Join(err, limitsErr)
}

// indexKey returns the index of the endpoint with the key k in eps, or -1.
func indexKey(eps []genl.Endpoint, k addrKey) int {
	for i, ep := range eps {
		if keyOf(ep) == k {
			return i
		}
	}
	return -1
}

// wanted reports whether one of wants has the key k.
func wanted(wants []Want, k addrKey) bool {
	for _, w := range wants {
		if w.key() == k {
			return true
		}
	}
	return false
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

// add adds the wanted endpoints with IDs it picks itself, so that the
// records are complete before the requests: if the daemon dies right after
// the kernel added them, the records still claim them. The endpoints in
// the kernel, whose IDs are taken, are those of the lists in present;
// addEndpoint makes the request and returns the endpoint as the kernel has
// it; reason goes to the log.
func (r *Reconciler) add(own *Ownership, wants []Want, present [2][]genl.Endpoint, addEndpoint func(genl.Endpoint) (genl.Endpoint, error), reason string) ([]genl.Endpoint, error) {
	if len(wants) == 0 {
		return nil, nil
	}
	var used [256]bool
	highest := 0
	for _, eps := range present {
		for _, ep := range eps {
			used[ep.ID] = true
			highest = max(highest, int(ep.ID))
		}
	}
	eps := make([]genl.Endpoint, 0, len(wants))
	recs := make([]OwnedEndpoint, 0, len(wants))
	for _, w := range wants {
		id := nextID(&used, highest)
		if id == 0 {
			break // 255 IDs in use: the kernel could not hold more anyway
		}
		used[id], highest = true, int(id)
		ep := w.Endpoint()
		ep.ID = id
		eps = append(eps, ep)
		recs = append(recs, OwnedEndpoint{ID: id, Addr: ep.Addr, Port: ep.Port, Rule: w.Rule})
	}
	own.Endpoints = append(own.Endpoints, recs...)
	var err error
	if len(recs) == 1 {
		err = r.record(*own, change{OwnedEndpoint: recs[0]})
	} else {
		err = r.save(*own)
	}
	if err != nil {
		own.Endpoints = own.Endpoints[:len(own.Endpoints)-len(recs)]
		return nil, err
	}
	var (
		added []genl.Endpoint
		errs  []error
	)
	for i, ep := range eps {
		w := wants[i]
		got, err := addEndpoint(ep)
		if err != nil {
			errs = append(errs, fmt.Errorf("adding endpoint %s on %s: %w", w.Addr, w.Interface, err))
			own.Endpoints = slices.DeleteFunc(own.Endpoints, func(o OwnedEndpoint) bool { return o.ID == ep.ID && o.Addr == ep.Addr })
			continue
		}
		r.info("endpoint added", "id", got.ID, "addr", got.Addr, "port", got.Port, "flags", got.Flags.String(),
			"interface", w.Interface, "rule", w.Rule, "reason", reason)
		added = append(added, got)
	}
	if len(errs) > 0 {
		errs = append(errs, r.save(*own))
	}
	return added, errors.Join(errs...)
}

// record keeps own, the records as last kept with the one change c made
// to them, in the store: by journalling c when the store can, else by
// saving the whole.
func (r *Reconciler) record(own Ownership, c change) error {
	if j, ok := r.store.(Journal); ok && c.ID != 0 {
		var err error
		if c.Removed {
			err = j.Remove(c.OwnedEndpoint)
		} else {
			err = j.Add(c.OwnedEndpoint)
		}
		if err == nil {
			own.Endpoints = slices.Clone(own.Endpoints)
			r.own = &own
			return nil
		}
		// Nothing saved yet, the journal is full, or the write failed (a
		// full disk): a save replaces whatever was journalled.
	}
	return r.save(own)
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
	return r.forget(own, ep, reason)
}

// forget drops ep, which the kernel no longer has, from the records, and
// logs its removal with reason. mu is held.
func (r *Reconciler) forget(own *Ownership, ep genl.Endpoint, reason string) error {
	var gone []OwnedEndpoint
	own.Endpoints = slices.DeleteFunc(own.Endpoints, func(o OwnedEndpoint) bool {
		if o.Matches(ep) {
			gone = append(gone, o)
			return true
		}
		return false
	})
	r.info("endpoint removed", "id", ep.ID, "addr", ep.Addr, "port", ep.Port, "flags", ep.Flags.String(), "reason", reason)
	if len(gone) == 1 {
		return r.record(*own, change{OwnedEndpoint: gone[0], Removed: true})
	}
	return r.save(*own)
}

// applyLimits sets the limits to want when the kernel's, cur, differ,
// recording the limits it found the first time. It returns the limits the
// kernel has after it.
func (r *Reconciler) applyLimits(own *Ownership, cur, want genl.Limits) (genl.Limits, error) {
	if cur == want {
		return cur, nil
	}
	if own.LimitsBefore == nil {
		before := cur
		own.LimitsBefore = &before
		if err := r.save(*own); err != nil {
			return cur, err
		}
	}
	if err := r.limitsSet(cur, want, r.kernel.SetLimits(want)); err != nil {
		return cur, err
	}
	return want, nil
}

// limitsSet logs the change of the limits from cur to want, or returns the
// error err with context if the kernel refused it.
func (r *Reconciler) limitsSet(cur, want genl.Limits, err error) error {
	if err != nil {
		return fmt.Errorf("setting limits to subflows %d add_addr_accepted %d: %w", want.Subflows, want.AddAddrAccepted, err)
	}
	r.info("limits set", "subflows", want.Subflows, "add_addr_accepted", want.AddAddrAccepted,
		"from_subflows", cur.Subflows, "from_add_addr_accepted", cur.AddAddrAccepted, "reason", "policy")
	return nil
}

// SelectPathManager sets the namespace's path manager, remembering the one
// it found the first time so Release can put it back.
func (r *Reconciler) SelectPathManager(pm string) error {
	r.run.Lock()
	defer r.run.Unlock()
	r.mu.Lock()
	defer r.unlock()
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
	r.info("path manager selected", "path_manager", pm, "from", cur, "reason", "mode")
	return nil
}

// Release removes every endpoint the daemon owns and puts back the limits
// and path manager it found, unless keep is set; then the records are
// cleared. It is what a clean exit does.
func (r *Reconciler) Release(keepEndpoints, keepPathManager bool) error {
	r.run.Lock()
	defer r.run.Unlock()
	r.mu.Lock()
	defer r.unlock()
	r.last = nil
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
				r.info("limits restored", "subflows", own.LimitsBefore.Subflows, "add_addr_accepted", own.LimitsBefore.AddAddrAccepted, "reason", "daemon stopping")
				own.LimitsBefore = nil
			}
		}
	}
	if !keepPathManager && own.PathManagerBefore != "" {
		if err := r.kernel.SetPathManager(own.PathManagerBefore); err != nil {
			errs = append(errs, fmt.Errorf("restoring the path manager: %w", err))
		} else {
			r.info("path manager restored", "path_manager", own.PathManagerBefore, "reason", "daemon stopping")
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
