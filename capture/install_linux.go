package capture

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/jsimonetti/rtnetlink/v2"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Rules is the capture configuration Install put in a network namespace.
// Its methods may be called from any goroutine, on any thread: it keeps the
// netlink sockets Install opened, which stay in that namespace, so removing
// needs neither the caller's namespace nor the privilege to enter one.
type Rules struct {
	cfg  Config // with defaults
	nft  string // the nft script equivalent to the table
	loop uint32 // index of lo in the namespace (TPROXY only)

	mu      sync.Mutex
	closed  bool
	nftConn *nftables.Conn  // a lasting connection
	nftSock *netlink.Conn   // nftConn's socket, for deadlines
	rt      *rtnetlink.Conn // nil without TPROXY
	routing []family        // families whose TPROXY rule and route are installed
}

// removeTimeout bounds Remove's netlink exchanges.
const removeTimeout = 10 * time.Second

// family is an address family (AF_INET or AF_INET6) of the policy routing
// TPROXY needs.
type family uint8

const (
	inet4 family = unix.AF_INET
	inet6 family = unix.AF_INET6
)

// cmd is the ip(8) command for the family.
func (f family) cmd() string {
	if f == inet6 {
		return "ip -6"
	}
	return "ip"
}

func (f family) String() string {
	if f == inet6 {
		return "IPv6"
	}
	return "IPv4"
}

// anyDst is the family's default prefix.
func (f family) anyDst() string {
	if f == inet6 {
		return "::/0"
	}
	return "0.0.0.0/0"
}

// Install creates the capture rules in the calling thread's network
// namespace (a caller managing another namespace runs it on a thread in
// that namespace; later calls on the Rules need not):
//
//   - one nftables table, family inet, named cfg.Table, with a nat output
//     chain doing REDIRECT if cfg.RedirectPort is set and a prerouting
//     chain doing TPROXY if cfg.TProxyPort is set (Rules.Script shows it
//     as nft(8) input);
//   - for TPROXY, an IPv4 and an IPv6 policy-routing rule
//     `fwmark TProxyMark lookup RouteTable` and a local default route
//     through lo in RouteTable (IPv6 is skipped when the namespace has no
//     IPv6).
//
// The table is written in one nftables transaction, so it appears whole or
// not at all. A table of the same name that already exists (say, left by a
// daemon killed before it could clean up) is replaced in that same
// transaction, and policy rules and routes identical to Install's own are
// replaced too; routing left by a configuration with another TProxyMark or
// RouteTable is not touched. If any step fails, Install undoes the others.
// Needs CAP_NET_ADMIN, and no other capability.
//
// To apply a new Config, call Install again: the new table replaces the
// old one in one transaction, so capture never stops. Then Release the old
// Rules; Remove would delete the table of that name, now the new one.
//
// The Rules keeps two netlink sockets open until Remove or Release.
//
// TCP connections already being forwarded through this host when TPROXY
// starts are reset: their next packet goes to the listener, which does not
// know them.
func Install(ctx context.Context, cfg Config) (*Rules, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("installing capture rules: %w", err)
	}
	rs := build(cfg)
	r := &Rules{cfg: cfg, nft: rs.script()}
	if err := r.install(ctx, rs); err != nil {
		err = errors.Join(err, r.removeRouting())
		r.close()
		return nil, fmt.Errorf("installing capture rules: %w", err)
	}
	return r, nil
}

// install opens the netlink sockets, in the calling thread's namespace,
// adds the routing and writes the table.
func (r *Rules) install(ctx context.Context, rs ruleset) error {
	var err error
	// Sockets are opened here, on the caller's thread, so they belong to
	// its namespace; netlink's own namespace switching would need
	// CAP_SYS_ADMIN.
	r.nftConn, err = nftables.New(nftables.AsLasting(), nftables.WithSockOptions(func(c *netlink.Conn) error {
		r.nftSock = c
		return nil
	}))
	if err != nil {
		return fmt.Errorf("nftables: %w", hint(err))
	}
	if r.cfg.TProxyPort != 0 {
		if r.rt, err = rtnetlink.Dial(nil); err != nil {
			return fmt.Errorf("rtnetlink: %w", hint(err))
		}
		if err := r.addRouting(ctx); err != nil {
			return err
		}
	}
	return r.writeTable(ctx, rs)
}

// close closes the netlink sockets.
func (r *Rules) close() {
	if r.nftConn != nil {
		_ = r.nftConn.CloseLasting()
	}
	if r.rt != nil {
		_ = r.rt.Close()
	}
	r.closed = true
}

// bound makes ctx's deadline and cancellation interrupt the operations on
// a socket until release is called. Every user of the socket sets its own
// deadline first, so a cancellation that fires late does no harm.
func bound(ctx context.Context, setDeadline func(time.Time) error) (release func()) {
	d, _ := ctx.Deadline() // the zero time when there is none
	_ = setDeadline(d)
	stop := context.AfterFunc(ctx, func() { _ = setDeadline(time.Now()) })
	return func() { stop() }
}

// writeTable replaces the table with rs in one transaction. Adding the
// table first makes the deletion valid when no table exists yet.
func (r *Rules) writeTable(ctx context.Context, rs ruleset) error {
	c := r.nftConn
	c.AddTable(rs.table)
	c.DelTable(rs.table)
	c.AddTable(rs.table)
	for _, s := range rs.sets {
		if err := c.AddSet(s.set, s.elems); err != nil {
			return fmt.Errorf("nftables set %s: %w", s.set.Name, err)
		}
	}
	for _, ch := range rs.chains {
		c.AddChain(ch.chain)
		for _, rule := range ch.rules {
			c.AddRule(&nftables.Rule{Table: rs.table, Chain: ch.chain, Exprs: rule.exprs})
		}
	}
	release := bound(ctx, r.nftSock.SetDeadline)
	defer release()
	if err := c.Flush(); err != nil {
		return fmt.Errorf("writing nftables table inet %s: %w", rs.table.Name, hint(err))
	}
	return nil
}

// maxLeftoverRules bounds how many leftover copies of the policy rule
// Install deletes.
const maxLeftoverRules = 64

// addRouting adds, per family, the route `local <any> dev lo table T` and
// the rule `fwmark M lookup T`, recording each family it completes.
func (r *Rules) addRouting(ctx context.Context) error {
	c := r.rt
	defer bound(ctx, c.SetReadDeadline)()

	links, err := c.Link.List()
	if err != nil {
		return fmt.Errorf("listing interfaces: %w", hint(err))
	}
	for _, l := range links {
		if l.Attributes != nil && l.Attributes.Name == "lo" {
			r.loop = l.Index
		}
	}
	if r.loop == 0 {
		return errors.New("the network namespace has no lo interface")
	}
	for _, f := range []family{inet4, inet6} {
		if err := c.Route.Replace(r.localRoute(f)); err != nil {
			if f == inet6 && errors.Is(err, unix.EAFNOSUPPORT) {
				break // no IPv6 here: nothing to capture over it
			}
			return fmt.Errorf("adding %s: %w", r.routeText(f), hint(err))
		}
		// Record the family before adding its rule, so a failure below
		// still removes the route.
		r.routing = append(r.routing, f)
		// The kernel gives each new rule its own priority, so a leftover
		// rule would not make adding fail as a duplicate; delete leftovers
		// first, so that exactly one rule remains.
		for range maxLeftoverRules {
			if err := c.Rule.Delete(r.markRule(f)); err != nil {
				if errors.Is(err, unix.ENOENT) {
					break
				}
				return fmt.Errorf("deleting a leftover %s: %w", r.ruleText(f), hint(err))
			}
		}
		if err := c.Rule.Add(r.markRule(f)); err != nil {
			return fmt.Errorf("adding %s: %w", r.ruleText(f), hint(err))
		}
	}
	return nil
}

// removeRouting deletes the rules and routes addRouting added; ones already
// gone are not an error.
func (r *Rules) removeRouting() error {
	if len(r.routing) == 0 {
		return nil
	}
	c := r.rt
	if err := c.SetReadDeadline(time.Now().Add(removeTimeout)); err != nil {
		return fmt.Errorf("rtnetlink: %w", err)
	}
	var errs []error
	var left []family
	for _, f := range r.routing {
		if err := c.Rule.Delete(r.markRule(f)); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("deleting %s: %w", r.ruleText(f), hint(err)))
			left = append(left, f)
			continue
		}
		if err := c.Route.Delete(r.localRoute(f)); err != nil && !errors.Is(err, unix.ESRCH) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("deleting %s: %w", r.routeText(f), hint(err)))
			left = append(left, f)
		}
	}
	r.routing = left
	return errors.Join(errs...)
}

// markRule is `ip rule add fwmark M lookup T`. The kernel matches the mark
// exactly (mask 0xffffffff) when no mask is given, and gives the rule the
// priority one below the second rule's (32765 with the default rules, just
// before the main table). Without a priority, deleting matches the rule
// whatever its priority.
func (r *Rules) markRule(f family) *rtnetlink.RuleMessage {
	mark, table := r.cfg.TProxyMark, r.cfg.RouteTable
	return &rtnetlink.RuleMessage{
		Family:     uint8(f),
		Table:      tableHeader(table),
		Action:     unix.FR_ACT_TO_TBL,
		Attributes: &rtnetlink.RuleAttributes{FwMark: &mark, Table: &table},
	}
}

// localRoute is `ip route add local <any> dev lo table T`: every
// destination is local for packets looked up in T.
func (r *Rules) localRoute(f family) *rtnetlink.RouteMessage {
	return &rtnetlink.RouteMessage{
		Family:     uint8(f),
		Table:      tableHeader(r.cfg.RouteTable),
		Protocol:   unix.RTPROT_BOOT,
		Scope:      unix.RT_SCOPE_HOST,
		Type:       unix.RTN_LOCAL,
		Attributes: rtnetlink.RouteAttributes{Table: r.cfg.RouteTable, OutIface: r.loop},
	}
}

// tableHeader is the 8-bit table field of rtmsg and fib_rule_hdr: the table
// itself when it fits, else RT_TABLE_UNSPEC with the real number in the
// 32-bit table attribute, as iproute2 sends it.
func tableHeader(table uint32) uint8 {
	if table < 256 {
		return uint8(table)
	}
	return unix.RT_TABLE_UNSPEC
}

func (r *Rules) ruleText(f family) string {
	return fmt.Sprintf("%s rule add fwmark %#x lookup %d", f.cmd(), r.cfg.TProxyMark, r.cfg.RouteTable)
}

func (r *Rules) routeText(f family) string {
	return fmt.Sprintf("%s route add local %s dev lo table %d", f.cmd(), f.anyDst(), r.cfg.RouteTable)
}

// Remove deletes the table named Config.Table and the policy routing
// Install added, then closes the Rules' sockets. Parts already gone are not
// an error, and calling Remove again after it succeeded (or after Release)
// does nothing; after a failure, calling it again retries what is left.
func (r *Rules) Remove() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	var errs []error
	if err := r.nftSock.SetDeadline(time.Now().Add(removeTimeout)); err != nil {
		errs = append(errs, fmt.Errorf("nftables: %w", err))
	} else {
		r.nftConn.DelTable(&nftables.Table{Name: r.cfg.Table, Family: nftables.TableFamilyINet})
		if err := r.nftConn.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("deleting nftables table inet %s: %w", r.cfg.Table, hint(err)))
		}
	}
	if err := r.removeRouting(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("removing capture rules: %w", errors.Join(errs...))
	}
	r.close()
	return nil
}

// Release closes the Rules' sockets and leaves the rules in place, for
// when a later Install has replaced them. Remove then does nothing.
func (r *Rules) Release() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.closed {
		r.close()
	}
}

// Describe summarises what Install added, in one line, for logs.
func (r *Rules) Describe() string {
	cfg := r.cfg
	var parts []string
	if cfg.RedirectPort != 0 {
		parts = append(parts, fmt.Sprintf("redirect local tcp to :%d (mark %#x exempt)", cfg.RedirectPort, cfg.Mark))
	}
	if cfg.TProxyPort != 0 {
		on := "all interfaces but lo"
		if len(cfg.TProxyInterfaces) > 0 {
			on = strings.Join(cfg.TProxyInterfaces, ",")
		}
		r.mu.Lock()
		fams := make([]string, len(r.routing))
		for i, f := range r.routing {
			fams[i] = f.String()
		}
		r.mu.Unlock()
		parts = append(parts, fmt.Sprintf("tproxy tcp arriving on %s to :%d, mark %#x, fwmark rule and local route in table %d (%s)",
			on, cfg.TProxyPort, cfg.TProxyMark, cfg.RouteTable, strings.Join(fams, ", ")))
	}
	if len(cfg.Ports) > 0 {
		ports := make([]string, len(cfg.Ports))
		for i, p := range cfg.Ports {
			ports[i] = fmt.Sprint(p)
		}
		parts = append(parts, "ports "+strings.Join(ports, ","))
	}
	parts = append(parts, fmt.Sprintf("%d excluded prefixes besides loopback, link-local and local addresses", len(cfg.Exclude)))
	return fmt.Sprintf("nftables table inet %s: %s", cfg.Table, strings.Join(parts, "; "))
}

// Script returns shell commands that create what Install created: the
// nft(8) input for the table, then the ip(8) commands for the policy
// routing. Useful to inspect or reproduce the rules by hand.
func (r *Rules) Script() string {
	var b strings.Builder
	b.WriteString("nft -f - <<'EOF'\n")
	b.WriteString(r.nft)
	b.WriteString("EOF\n")
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, f := range r.routing {
		b.WriteString(r.ruleText(f) + "\n")
		b.WriteString(r.routeText(f) + "\n")
	}
	return b.String()
}

// hint adds the fix to a permission error.
func hint(err error) error {
	if errors.Is(err, unix.EPERM) {
		return fmt.Errorf("%w (needs CAP_NET_ADMIN: run as root)", err)
	}
	return err
}
