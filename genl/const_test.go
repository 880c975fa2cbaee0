package genl

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"golang.org/x/sys/unix"
)

// TestConstantsMatchUAPI compares the package's constants with the kernel's
// uapi headers installed on this machine (linux/mptcp.h, and mptcp_pm.h on
// Linux 6.7 and later). Set GENL_UAPI_INCLUDE to a directory holding other
// headers (e.g. a kernel tree's include/uapi/linux) to check against those.
//
// Names a header lacks (newer than it) are skipped with a log line; the core
// names must all be present, so a parse that finds nothing fails.
func TestConstantsMatchUAPI(t *testing.T) {
	dir := os.Getenv("GENL_UAPI_INCLUDE")
	if dir == "" {
		dir = "/usr/include/linux"
	}
	main := filepath.Join(dir, "mptcp.h")
	if _, err := os.Stat(main); errors.Is(err, fs.ErrNotExist) {
		t.Skipf("%s does not exist: install the kernel's uapi headers (linux-libc-dev) or set GENL_UAPI_INCLUDE", main)
	}
	defs := make(map[string]cValue)
	for _, path := range []string{filepath.Join(dir, "mptcp_pm.h"), main} {
		src, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) && path != main {
			t.Logf("%s does not exist (it appeared in Linux 6.7); using %s alone", path, main)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := parseUAPI(string(src), defs); err != nil {
			t.Fatalf("parsing %s: %v", path, err)
		}
	}

	checked := make(map[string]bool)
	for _, c := range uapiConstants() {
		checked[c.name] = true
		got, ok := defs[c.name]
		switch {
		case !ok && c.core:
			t.Errorf("%s: not found in the headers, though every kernel with the mptcp_pm family has it", c.name)
			continue
		case !ok:
			t.Logf("%s: not in these headers (newer kernel); not checked", c.name)
			continue
		case got.err != nil:
			t.Errorf("%s: cannot evaluate the header's value: %v", c.name, got.err)
			continue
		}
		switch want := c.ours.(type) {
		case string:
			if !got.isStr || got.str != want {
				t.Errorf("%s = %s in the header, ours is %q", c.name, got, want)
			}
		case int64:
			if got.isStr || got.num != want {
				t.Errorf("%s = %s in the header, ours is %d", c.name, got, want)
			}
		default:
			t.Fatalf("test bug: %s has a value of type %T", c.name, c.ours)
		}
	}

	// Report header names of the sets we mirror that the package does not
	// know: a newer kernel may have added a command, attribute or event.
	prefixes := []string{"MPTCP_PM_CMD_", "MPTCP_PM_ATTR_", "MPTCP_PM_ADDR_ATTR_", "MPTCP_ATTR_", "MPTCP_EVENT_",
		"MPTCP_PM_ADDR_FLAG_", "MPTCP_PM_EV_FLAG_", "MPTCP_RST_", "MPTCP_PM_ENDPOINT_"}
	var unknown []string
	for name := range defs {
		if checked[name] || strings.HasSuffix(name, "_UNSPEC") || strings.HasSuffix(name, "_MAX") ||
			strings.HasSuffix(name, "_AFTER_LAST") || strings.HasSuffix(name, "_MASK") {
			continue
		}
		if slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(name, p) }) {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		t.Logf("names in the headers the package does not mirror: %s", strings.Join(unknown, ", "))
	}

	if runtime.GOOS == "linux" {
		if afINET != unix.AF_INET || afINET6 != unix.AF_INET6 {
			t.Errorf("afINET, afINET6 = %d, %d; want %d, %d", afINET, afINET6, unix.AF_INET, unix.AF_INET6)
		}
	}
}

// uapiConstant pairs a uapi name with our value.
type uapiConstant struct {
	name string
	ours any  // string or int64
	core bool // present in every header that has the family (Linux 5.19+)
}

func uapiConstants() []uapiConstant {
	core := func(name string, v any) uapiConstant { return uapiConstant{name, v, true} }
	newer := func(name string, v any) uapiConstant { return uapiConstant{name, v, false} }
	return []uapiConstant{
		core("MPTCP_PM_NAME", FamilyName),
		core("MPTCP_PM_VER", int64(FamilyVersion)),
		core("MPTCP_PM_EV_GRP_NAME", EventsGroupName),
		core("MPTCP_PM_CMD_GRP_NAME", CommandsGroupName),

		core("MPTCP_PM_CMD_ADD_ADDR", int64(cmdAddAddr)),
		core("MPTCP_PM_CMD_DEL_ADDR", int64(cmdDelAddr)),
		core("MPTCP_PM_CMD_GET_ADDR", int64(cmdGetAddr)),
		core("MPTCP_PM_CMD_FLUSH_ADDRS", int64(cmdFlushAddrs)),
		core("MPTCP_PM_CMD_SET_LIMITS", int64(cmdSetLimits)),
		core("MPTCP_PM_CMD_GET_LIMITS", int64(cmdGetLimits)),
		core("MPTCP_PM_CMD_SET_FLAGS", int64(cmdSetFlags)),
		core("MPTCP_PM_CMD_ANNOUNCE", int64(cmdAnnounce)),
		core("MPTCP_PM_CMD_REMOVE", int64(cmdRemove)),
		core("MPTCP_PM_CMD_SUBFLOW_CREATE", int64(cmdSubflowCreate)),
		core("MPTCP_PM_CMD_SUBFLOW_DESTROY", int64(cmdSubflowDestroy)),

		core("MPTCP_PM_ATTR_ADDR", int64(pmAttrAddr)),
		core("MPTCP_PM_ATTR_RCV_ADD_ADDRS", int64(pmAttrRcvAddAddrs)),
		core("MPTCP_PM_ATTR_SUBFLOWS", int64(pmAttrSubflows)),
		core("MPTCP_PM_ATTR_TOKEN", int64(pmAttrToken)),
		core("MPTCP_PM_ATTR_LOC_ID", int64(pmAttrLocID)),
		core("MPTCP_PM_ATTR_ADDR_REMOTE", int64(pmAttrAddrRemote)),
		newer("MPTCP_PM_ENDPOINT_ADDR", int64(pmAttrAddr)),

		core("MPTCP_PM_ADDR_ATTR_FAMILY", int64(addrAttrFamily)),
		core("MPTCP_PM_ADDR_ATTR_ID", int64(addrAttrID)),
		core("MPTCP_PM_ADDR_ATTR_ADDR4", int64(addrAttrAddr4)),
		core("MPTCP_PM_ADDR_ATTR_ADDR6", int64(addrAttrAddr6)),
		core("MPTCP_PM_ADDR_ATTR_PORT", int64(addrAttrPort)),
		core("MPTCP_PM_ADDR_ATTR_FLAGS", int64(addrAttrFlags)),
		core("MPTCP_PM_ADDR_ATTR_IF_IDX", int64(addrAttrIfIdx)),

		core("MPTCP_ATTR_TOKEN", int64(eventAttrToken)),
		core("MPTCP_ATTR_FAMILY", int64(eventAttrFamily)),
		core("MPTCP_ATTR_LOC_ID", int64(eventAttrLocID)),
		core("MPTCP_ATTR_REM_ID", int64(eventAttrRemID)),
		core("MPTCP_ATTR_SADDR4", int64(eventAttrSAddr4)),
		core("MPTCP_ATTR_SADDR6", int64(eventAttrSAddr6)),
		core("MPTCP_ATTR_DADDR4", int64(eventAttrDAddr4)),
		core("MPTCP_ATTR_DADDR6", int64(eventAttrDAddr6)),
		core("MPTCP_ATTR_SPORT", int64(eventAttrSPort)),
		core("MPTCP_ATTR_DPORT", int64(eventAttrDPort)),
		core("MPTCP_ATTR_BACKUP", int64(eventAttrBackup)),
		core("MPTCP_ATTR_ERROR", int64(eventAttrError)),
		core("MPTCP_ATTR_FLAGS", int64(eventAttrFlags)),
		core("MPTCP_ATTR_TIMEOUT", int64(eventAttrTimeout)),
		core("MPTCP_ATTR_IF_IDX", int64(eventAttrIfIdx)),
		core("MPTCP_ATTR_RESET_REASON", int64(eventAttrResetReason)),
		core("MPTCP_ATTR_RESET_FLAGS", int64(eventAttrResetFlags)),
		core("MPTCP_ATTR_SERVER_SIDE", int64(eventAttrServerSide)),

		core("MPTCP_EVENT_CREATED", int64(EventCreated)),
		core("MPTCP_EVENT_ESTABLISHED", int64(EventEstablished)),
		core("MPTCP_EVENT_CLOSED", int64(EventClosed)),
		core("MPTCP_EVENT_ANNOUNCED", int64(EventAnnounced)),
		core("MPTCP_EVENT_REMOVED", int64(EventRemoved)),
		core("MPTCP_EVENT_SUB_ESTABLISHED", int64(EventSubEstablished)),
		core("MPTCP_EVENT_SUB_CLOSED", int64(EventSubClosed)),
		core("MPTCP_EVENT_SUB_PRIORITY", int64(EventSubPriority)),
		newer("MPTCP_EVENT_LISTENER_CREATED", int64(EventListenerCreated)),
		newer("MPTCP_EVENT_LISTENER_CLOSED", int64(EventListenerClosed)),

		core("MPTCP_PM_ADDR_FLAG_SIGNAL", int64(FlagSignal)),
		core("MPTCP_PM_ADDR_FLAG_SUBFLOW", int64(FlagSubflow)),
		core("MPTCP_PM_ADDR_FLAG_BACKUP", int64(FlagBackup)),
		core("MPTCP_PM_ADDR_FLAG_FULLMESH", int64(FlagFullmesh)),
		core("MPTCP_PM_ADDR_FLAG_IMPLICIT", int64(FlagImplicit)),
		newer("MPTCP_PM_ADDR_FLAG_LAMINAR", int64(FlagLaminar)),

		newer("MPTCP_PM_EV_FLAG_DENY_JOIN_ID0", int64(EventFlagDenyJoinID0)),
		newer("MPTCP_PM_EV_FLAG_SERVER_SIDE", int64(EventFlagServerSide)),

		core("MPTCP_RST_EUNSPEC", int64(ResetUnspecified)),
		core("MPTCP_RST_EMPTCP", int64(ResetMPTCPError)),
		core("MPTCP_RST_ERESOURCE", int64(ResetResource)),
		core("MPTCP_RST_EPROHIBIT", int64(ResetProhibited)),
		core("MPTCP_RST_EWQ2BIG", int64(ResetTooMuchQueued)),
		core("MPTCP_RST_EBADPERF", int64(ResetBadPerformance)),
		core("MPTCP_RST_EMIDDLEBOX", int64(ResetMiddleboxFailed)),
	}
}

func TestParseUAPI(t *testing.T) {
	const src = `
/* SPDX comment */
#include <linux/const.h>
#define NAME		"mptcp_pm"	/* a string */
#define VER		0x1
#define BIT3		_BITUL(3)
#define SHIFTED		(1 << 4)
#define MASK		GENMASK(5, 0)
#define LONG		12UL
#define CONT		(VER + \
			 BIT3)
#define FUNC(x)		((x) + 1)
// a line comment
enum named_set {
	A_UNSPEC,
	A_ONE,			/* u32 */
	/**
	 * @A_TWO: a kernel-doc comment, with a comma, and = sign
	 */
	A_TWO,
	A_SIX = 6,
	A_SEVEN,
	A_REF = A_TWO + 8,
	A_NEXT
};
#define A_MAX (A_NEXT - 1)
enum { B_FIRST = 1, B_SECOND, };
typedef enum { C_ZERO } c_t;
`
	want := map[string]cValue{
		"NAME":     {str: "mptcp_pm", isStr: true},
		"VER":      {num: 1},
		"BIT3":     {num: 8},
		"SHIFTED":  {num: 16},
		"MASK":     {num: 63},
		"LONG":     {num: 12},
		"CONT":     {num: 9},
		"A_UNSPEC": {num: 0},
		"A_ONE":    {num: 1},
		"A_TWO":    {num: 2},
		"A_SIX":    {num: 6},
		"A_SEVEN":  {num: 7},
		"A_REF":    {num: 10},
		"A_NEXT":   {num: 11},
		"A_MAX":    {num: 10},
		"B_FIRST":  {num: 1},
		"B_SECOND": {num: 2},
		"C_ZERO":   {num: 0},
	}
	got := make(map[string]cValue)
	if err := parseUAPI(src, got); err != nil {
		t.Fatalf("parseUAPI: %v", err)
	}
	for name, w := range want {
		g, ok := got[name]
		switch {
		case !ok:
			t.Errorf("%s not found", name)
		case g.err != nil:
			t.Errorf("%s: %v", name, g.err)
		case g.isStr != w.isStr || g.str != w.str || g.num != w.num:
			t.Errorf("%s = %s, want %s", name, g, w)
		}
	}
	if _, ok := got["FUNC"]; ok {
		t.Error("function-like macro FUNC was taken for a constant")
	}
	if len(got) != len(want) {
		t.Errorf("parsed %d names, want %d: %v", len(got), len(want), got)
	}
}

// cValue is the value of a C constant: a number or a string literal; err is
// set when the expression could not be evaluated.
type cValue struct {
	num   int64
	str   string
	isStr bool
	err   error
}

func (v cValue) String() string {
	switch {
	case v.err != nil:
		return "<" + v.err.Error() + ">"
	case v.isStr:
		return strconv.Quote(v.str)
	}
	return strconv.FormatInt(v.num, 10)
}

var (
	cCommentRe = regexp.MustCompile(`(?s)/\*.*?\*/|//[^\n]*`)
	cDefineRe  = regexp.MustCompile(`^\s*#\s*define\s+([A-Za-z_]\w*)(?:\s+(.*?))?\s*$`)
	cEnumRe    = regexp.MustCompile(`(?s)\benum\b\s*\w*\s*\{(.*?)\}`)
)

// parseUAPI adds the constants of a C header to defs: object-like #defines
// and enum members with C's implicit numbering, evaluated in source order so
// that later ones may refer to earlier ones.
func parseUAPI(src string, defs map[string]cValue) error {
	src = cCommentRe.ReplaceAllString(src, " ")
	src = strings.ReplaceAll(src, "\\\n", " ")

	// Collect #define lines and enum bodies with their offsets, then
	// evaluate in order.
	type item struct {
		at       int
		name     string // #define name; "" for an enum
		body     string // #define value or enum body
		isDefine bool
	}
	var items []item
	off := 0
	for _, line := range strings.SplitAfter(src, "\n") {
		if m := cDefineRe.FindStringSubmatch(strings.TrimRight(line, "\n")); m != nil {
			items = append(items, item{at: off, name: m[1], body: m[2], isDefine: true})
		}
		off += len(line)
	}
	for _, m := range cEnumRe.FindAllStringSubmatchIndex(src, -1) {
		items = append(items, item{at: m[0], body: src[m[2]:m[3]]})
	}
	slices.SortFunc(items, func(a, b item) int { return a.at - b.at })

	for _, it := range items {
		if it.isDefine {
			if it.body == "" {
				continue // a guard like #define _MPTCP_H
			}
			if s, err := strconv.Unquote(it.body); err == nil && strings.HasPrefix(it.body, `"`) {
				defs[it.name] = cValue{str: s, isStr: true}
				continue
			}
			n, err := evalC(it.body, defs)
			defs[it.name] = cValue{num: n, err: err}
			continue
		}
		next := int64(0)
		for _, member := range strings.Split(it.body, ",") {
			member = strings.TrimSpace(member)
			if member == "" {
				continue
			}
			name, expr, hasValue := strings.Cut(member, "=")
			name = strings.TrimSpace(name)
			if !isCIdent(name) {
				return fmt.Errorf("enum member %q is not an identifier", member)
			}
			if hasValue {
				n, err := evalC(expr, defs)
				if err != nil {
					return fmt.Errorf("enum member %s: %v", name, err)
				}
				next = n
			}
			defs[name] = cValue{num: next}
			next++
		}
	}
	return nil
}

func isCIdent(s string) bool {
	if s == "" || unicode.IsDigit(rune(s[0])) {
		return false
	}
	for _, r := range s {
		if r != '_' && !unicode.IsLetter(r) && !unicode.IsDigit(r) {
			return false
		}
	}
	return true
}

// evalC evaluates the integer constant expressions uapi headers use:
// literals with U/L suffixes, names defined before, parentheses, + - ~ << >>
// & | and the macros _BITUL, _BITULL, BIT, _UL, _ULL and GENMASK.
func evalC(expr string, defs map[string]cValue) (int64, error) {
	p := &cParser{toks: cTokens(expr), defs: defs}
	v, err := p.or()
	if err != nil {
		return 0, err
	}
	if p.pos != len(p.toks) {
		return 0, fmt.Errorf("unexpected %q in %q", p.toks[p.pos], expr)
	}
	return v, nil
}

var cTokenRe = regexp.MustCompile(`0[xX][0-9a-fA-F]+[uUlL]*|\d+[uUlL]*|[A-Za-z_]\w*|<<|>>|\S`)

func cTokens(s string) []string { return cTokenRe.FindAllString(s, -1) }

type cParser struct {
	toks []string
	pos  int
	defs map[string]cValue
}

func (p *cParser) peek() string {
	if p.pos < len(p.toks) {
		return p.toks[p.pos]
	}
	return ""
}

func (p *cParser) next() string {
	t := p.peek()
	p.pos++
	return t
}

func (p *cParser) expect(tok string) error {
	if got := p.next(); got != tok {
		return fmt.Errorf("want %q, got %q", tok, got)
	}
	return nil
}

// binary parses a left-associative chain of the operators ops over operands
// parsed by operand.
func (p *cParser) binary(operand func() (int64, error), ops map[string]func(a, b int64) int64) (int64, error) {
	v, err := operand()
	if err != nil {
		return 0, err
	}
	for {
		op, ok := ops[p.peek()]
		if !ok {
			return v, nil
		}
		p.pos++
		w, err := operand()
		if err != nil {
			return 0, err
		}
		v = op(v, w)
	}
}

func (p *cParser) or() (int64, error) {
	return p.binary(p.and, map[string]func(a, b int64) int64{"|": func(a, b int64) int64 { return a | b }})
}

func (p *cParser) and() (int64, error) {
	return p.binary(p.shift, map[string]func(a, b int64) int64{"&": func(a, b int64) int64 { return a & b }})
}

func (p *cParser) shift() (int64, error) {
	return p.binary(p.additive, map[string]func(a, b int64) int64{
		"<<": func(a, b int64) int64 { return a << b },
		">>": func(a, b int64) int64 { return a >> b },
	})
}

func (p *cParser) additive() (int64, error) {
	return p.binary(p.unary, map[string]func(a, b int64) int64{
		"+": func(a, b int64) int64 { return a + b },
		"-": func(a, b int64) int64 { return a - b },
	})
}

func (p *cParser) unary() (int64, error) {
	switch p.peek() {
	case "-":
		p.pos++
		v, err := p.unary()
		return -v, err
	case "~":
		p.pos++
		v, err := p.unary()
		return ^v, err
	}
	return p.primary()
}

func (p *cParser) primary() (int64, error) {
	tok := p.next()
	switch {
	case tok == "(":
		v, err := p.or()
		if err != nil {
			return 0, err
		}
		return v, p.expect(")")
	case tok == "":
		return 0, errors.New("unexpected end of expression")
	case unicode.IsDigit(rune(tok[0])):
		return strconv.ParseInt(strings.TrimRight(tok, "uUlL"), 0, 64)
	case !isCIdent(tok):
		return 0, fmt.Errorf("unexpected %q", tok)
	}
	switch tok {
	case "_BITUL", "_BITULL", "BIT", "_UL", "_ULL", "GENMASK":
		args, err := p.args()
		if err != nil {
			return 0, fmt.Errorf("%s: %v", tok, err)
		}
		switch {
		case tok == "GENMASK" && len(args) == 2 && args[0] >= args[1] && args[0] < 63:
			return (int64(1)<<(args[0]+1) - 1) &^ (int64(1)<<args[1] - 1), nil
		case tok == "_UL" || tok == "_ULL":
			if len(args) == 1 {
				return args[0], nil
			}
		case tok != "GENMASK" && len(args) == 1 && args[0] >= 0 && args[0] < 63:
			return int64(1) << args[0], nil
		}
		return 0, fmt.Errorf("%s%v: unsupported arguments", tok, args)
	}
	v, ok := p.defs[tok]
	switch {
	case !ok:
		return 0, fmt.Errorf("%s is not defined before use", tok)
	case v.err != nil:
		return 0, fmt.Errorf("%s: %v", tok, v.err)
	case v.isStr:
		return 0, fmt.Errorf("%s is a string", tok)
	}
	return v.num, nil
}

// args parses a parenthesised, comma-separated argument list.
func (p *cParser) args() ([]int64, error) {
	if err := p.expect("("); err != nil {
		return nil, err
	}
	var args []int64
	for {
		v, err := p.or()
		if err != nil {
			return nil, err
		}
		args = append(args, v)
		switch p.next() {
		case ",":
		case ")":
			return args, nil
		default:
			return nil, errors.New("malformed argument list")
		}
	}
}
