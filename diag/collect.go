package diag

import (
	"fmt"
	"slices"
)

// collector builds a listing from the replies of the dumps: first every
// MPTCP socket (addConnection), then every TCP socket (addSubflow), whose
// subflows join their connection by local token through a hash index.
//
// The subflows of all connections share one backing array: after the MPTCP
// dumps each connection gets a window of it as large as the subflow count
// its mptcp_info gives, and subflows are decoded straight into place. A
// connection that gained subflows between the dumps outgrows its window and
// gets its own array; that is rare, and correct either way.
type collector struct {
	tokens   []uint32   // the filter's tokens; empty: all
	tokenSet tokenIndex // the same, indexed, when there are many

	conns    []Connection
	index    tokenIndex // token → index in conns; built by the first addSubflow
	prepared bool
}

// newCollector returns a collector for the tokens (all if empty), with room
// for sizeHint connections.
func newCollector(tokens []uint32, sizeHint int) *collector {
	c := &collector{tokens: tokens, conns: make([]Connection, 0, sizeHint)}
	if len(tokens) > 16 {
		c.tokenSet = newTokenIndex(len(tokens))
		for i, tok := range tokens {
			c.tokenSet.add(tok, int32(i))
		}
	}
	return c
}

// wanted reports whether the filter selects token.
func (c *collector) wanted(token uint32) bool {
	switch {
	case len(c.tokens) == 0:
		return true
	case c.tokenSet != nil:
		_, ok := c.tokenSet.get(token)
		return ok
	}
	return slices.Contains(c.tokens, token)
}

// addConnection adds the connection of one MPTCP socket's reply, unless
// the token filter rejects it.
func (c *collector) addConnection(msg []byte) error {
	conn, err := decodeConnection(msg)
	if err != nil {
		return fmt.Errorf("decoding MPTCP socket: %w", err)
	}
	if !c.wanted(conn.Token) {
		return nil
	}
	c.conns = append(c.conns, conn)
	return nil
}

// expectedSubflows returns how many subflows conn is likely to have.
func expectedSubflows(conn *Connection) int {
	if conn.State == StateListen {
		return 0
	}
	return max(int(conn.Info.ExtraSubflows)+1, int(conn.Info.SubflowsTotal))
}

// prepare builds the token index and the subflow windows.
func (c *collector) prepare() {
	c.prepared = true
	c.index = newTokenIndex(len(c.conns))
	n := 0
	for i := range c.conns {
		if c.conns[i].State != StateListen {
			c.index.add(c.conns[i].Token, int32(i))
			n += expectedSubflows(&c.conns[i])
		}
	}
	all := make([]Subflow, n)
	n = 0
	for i := range c.conns {
		k := expectedSubflows(&c.conns[i])
		c.conns[i].Subflows = all[n : n : n+k]
		n += k
	}
}

// addSubflow adds the subflow of one TCP socket's reply to its connection;
// sockets that are not subflows of a listed connection are skipped after
// their header and ULP attribute, and a subflow is decoded straight into
// its place.
func (c *collector) addSubflow(msg []byte) error {
	if !c.prepared {
		c.prepare()
	}
	m, err := parseSockMsg(msg)
	if err != nil {
		return fmt.Errorf("decoding TCP socket: %w", err)
	}
	nest, err := subflowNest(&m)
	if err != nil || nest == nil {
		return wrapTCP(err)
	}
	token, ok, err := nestToken(nest)
	if err != nil || !ok {
		return wrapTCP(err)
	}
	i, ok := c.index.get(token)
	if !ok {
		return nil
	}
	conn := &c.conns[i]
	conn.Subflows = append(conn.Subflows, Subflow{})
	s := &conn.Subflows[len(conn.Subflows)-1]
	if err := decodeSubflowNest(nest, s); err != nil {
		conn.Subflows = conn.Subflows[:len(conn.Subflows)-1]
		return wrapTCP(err)
	}
	completeSubflow(s, &m)
	return nil
}

func wrapTCP(err error) error {
	if err != nil {
		return fmt.Errorf("decoding TCP socket: %w", err)
	}
	return nil
}

// connections returns the listing.
func (c *collector) connections() []Connection {
	for i := range c.conns {
		conn := &c.conns[i]
		subs := conn.Subflows
		if len(subs) == 0 {
			conn.Subflows = nil
			continue
		}
		conn.Subflows = subs[:len(subs):len(subs)]
		sortSubflows(subs)
		for j := range subs {
			if subs[j].RemoteToken != 0 {
				conn.RemoteToken = subs[j].RemoteToken
				break
			}
		}
	}
	return c.conns
}

// sortSubflows puts the initial subflow (the one that carried MP_CAPABLE)
// first, then orders by local and remote address ID and addresses. An
// insertion sort through pointers: connections have few subflows, and a
// Subflow is too large to copy for every comparison.
func sortSubflows(subs []Subflow) {
	for i := 1; i < len(subs); i++ {
		for j := i; j > 0 && lessSubflow(&subs[j], &subs[j-1]); j-- {
			subs[j], subs[j-1] = subs[j-1], subs[j]
		}
	}
}

func lessSubflow(a, b *Subflow) bool {
	const join = SubflowJoinLocal | SubflowJoinRemote
	if aj, bj := a.Flags&join != 0, b.Flags&join != 0; aj != bj {
		return !aj
	}
	if a.LocalID != b.LocalID {
		return a.LocalID < b.LocalID
	}
	if a.RemoteID != b.RemoteID {
		return a.RemoteID < b.RemoteID
	}
	if c := a.Local.Compare(b.Local); c != 0 {
		return c < 0
	}
	return a.Remote.Compare(b.Remote) < 0
}

// tokenIndex maps tokens to connection indexes: an open-addressing hash
// table in one slice, so that building it is one allocation whatever the
// number of connections (Go's map allocates a table per thousand entries or
// so). Each slot holds token<<32 | index+1; 0 is empty.
type tokenIndex []uint64

func newTokenIndex(n int) tokenIndex {
	size := 8
	for size < 2*n {
		size <<= 1
	}
	return make(tokenIndex, size)
}

// slot returns where token's probe sequence starts. Tokens are hash output,
// but the multiplication (Fibonacci hashing) keeps crafted ones spread too.
func (x tokenIndex) slot(token uint32) int {
	return int((uint64(token) * 0x9e3779b97f4a7c15 >> 32) & uint64(len(x)-1))
}

// add records token at index i unless token is already there.
func (x tokenIndex) add(token uint32, i int32) {
	for j := x.slot(token); ; j = (j + 1) & (len(x) - 1) {
		switch {
		case x[j] == 0:
			x[j] = uint64(token)<<32 | uint64(uint32(i)+1)
			return
		case uint32(x[j]>>32) == token:
			return
		}
	}
}

// get returns the index recorded for token.
func (x tokenIndex) get(token uint32) (int32, bool) {
	if len(x) == 0 {
		return 0, false
	}
	for j := x.slot(token); x[j] != 0; j = (j + 1) & (len(x) - 1) {
		if uint32(x[j]>>32) == token {
			return int32(uint32(x[j]) - 1), true
		}
	}
	return 0, false
}
