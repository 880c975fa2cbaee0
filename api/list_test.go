package api_test

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/mptcpd/mptcpd/diag"
	pb "github.com/mptcpd/mptcpd/proto/mptcpd/v1"
)

// connections returns n established connections with distinct random
// tokens, in no particular order.
func connections(n int, seed uint64) []diag.Connection {
	rnd := rand.New(rand.NewPCG(seed, 1))
	seen := make(map[uint32]bool, n)
	conns := make([]diag.Connection, 0, n)
	for len(conns) < n {
		tok := rnd.Uint32()
		if tok == 0 || seen[tok] {
			continue
		}
		seen[tok] = true
		i := len(conns)
		conns = append(conns, diag.Connection{
			Family: diag.IPv4,
			Token:  tok,
			State:  diag.StateEstablished,
			Local:  netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i % 250)}), uint16(32768+i)),
			Remote: netip.MustParseAddrPort("198.51.100.1:443"),
			Cookie: uint64(i + 1),
		})
	}
	return conns
}

// listAll pages through ListConnections and returns the pages' sizes and
// the connections in the order received.
func listAll(t *testing.T, client pb.MptcpdServiceClient, req *pb.ListConnectionsRequest, maxPages int) (sizes []int, got []*pb.Connection) {
	t.Helper()
	for range maxPages {
		resp, err := client.ListConnections(callCtx(t), req)
		if err != nil {
			t.Fatalf("ListConnections(%v): %v", req, err)
		}
		sizes = append(sizes, len(resp.GetConnections()))
		got = append(got, resp.GetConnections()...)
		if resp.GetNextPageToken() == "" {
			return sizes, got
		}
		req.PageToken = resp.GetNextPageToken()
	}
	t.Fatalf("more than %d pages", maxPages)
	return nil, nil
}

// TestListConnectionsPaging: 2,500 connections come in pages of 1000, 1000
// and 500, ordered by token, each exactly once, and the last page has no
// next token.
func TestListConnectionsPaging(t *testing.T) {
	backend := newFakeBackend()
	backend.conns = connections(2500, 1)
	_, client := startUnix(t, backend)

	sizes, got := listAll(t, client, &pb.ListConnectionsRequest{}, 10)
	if !slices.Equal(sizes, []int{1000, 1000, 500}) {
		t.Errorf("page sizes %v, want [1000 1000 500]", sizes)
	}
	// The pages come from one listing: the kernel is read once.
	if len(slices.DeleteFunc(backend.Calls(), func(c string) bool { return c != "Connections" })) != 1 {
		t.Errorf("paging read the backend %v; want one Connections call", backend.Calls())
	}
	// A kept listing's token that outlives it (or a made-up listing)
	// falls back to a fresh listing after the last connection named.
	backend.reset()
	resp, err := client.ListConnections(callCtx(t), &pb.ListConnectionsRequest{PageToken: fmt.Sprintf("987654@%d", got[999].GetToken())})
	if err != nil || len(resp.GetConnections()) != 1000 || resp.GetConnections()[0].GetToken() != got[1000].GetToken() {
		t.Errorf("page from an unknown listing: %d connections, %v; want the second page", len(resp.GetConnections()), err)
	}
	var want []uint32
	for _, c := range backend.conns {
		want = append(want, c.Token)
	}
	slices.Sort(want)
	var tokens []uint32
	for _, c := range got {
		tokens = append(tokens, c.GetToken())
	}
	if !slices.Equal(tokens, want) {
		t.Errorf("tokens received are not every token once in order: got %d, want %d", len(tokens), len(want))
	}
	// The connection is the backend's, converted.
	c := got[0]
	if c.GetState() != "established" || c.GetRemoteAddress() != "198.51.100.1" || c.GetRemotePort() != 443 {
		t.Errorf("first connection %v, want established to 198.51.100.1:443", c)
	}

	// Another page size, and a token past the end.
	sizes, _ = listAll(t, client, &pb.ListConnectionsRequest{PageSize: 999}, 10)
	if !slices.Equal(sizes, []int{999, 999, 502}) {
		t.Errorf("page sizes %v with page_size 999, want [999 999 502]", sizes)
	}
	resp, err = client.ListConnections(callCtx(t), &pb.ListConnectionsRequest{PageToken: fmt.Sprint(want[len(want)-1])})
	if err != nil || len(resp.GetConnections()) != 0 || resp.GetNextPageToken() != "" {
		t.Errorf("page after the last token: %v, %v; want an empty last page", resp, err)
	}

	// listeners selects every state, listeners included; the default
	// leaves them out.
	backend.reset()
	if _, err := client.ListConnections(callCtx(t), &pb.ListConnectionsRequest{Listeners: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.ListConnections(callCtx(t), &pb.ListConnectionsRequest{}); err != nil {
		t.Fatal(err)
	}
	if f := backend.Filters(); len(f) != 2 || f[0].States != diag.AllStates || f[1].States != 0 {
		t.Errorf("filters %+v, want AllStates with listeners, then the default", f)
	}
}

// TestListConnectionsPagingListeners: listeners all have token 0; paging
// by token must still return each of them once, however small the pages.
func TestListConnectionsPagingListeners(t *testing.T) {
	backend := newFakeBackend()
	conns := connections(5, 2)
	for i := range 4 {
		conns = append(conns, diag.Connection{
			Family: diag.IPv4, State: diag.StateListen,
			Local:  netip.AddrPortFrom(netip.MustParseAddr("0.0.0.0"), uint16(8000+i)),
			Cookie: uint64(100 + i),
		})
	}
	rand.New(rand.NewPCG(3, 3)).Shuffle(len(conns), func(i, j int) { conns[i], conns[j] = conns[j], conns[i] })
	backend.conns = conns
	_, client := startUnix(t, backend)

	for _, size := range []uint32{1, 2, 3, 4, 5, 9, 10} {
		t.Run(fmt.Sprint("page_size=", size), func(t *testing.T) {
			_, got := listAll(t, client, &pb.ListConnectionsRequest{PageSize: size, Listeners: true}, 20)
			seen := map[string]int{}
			for _, c := range got {
				seen[fmt.Sprintf("%d %s:%d", c.GetToken(), c.GetLocalAddress(), c.GetLocalPort())]++
			}
			if len(got) != len(conns) || len(seen) != len(conns) {
				t.Errorf("got %d connections, %d distinct, want all %d once: %v", len(got), len(seen), len(conns), seen)
			}
			if !slices.IsSortedFunc(got, func(a, b *pb.Connection) int { return int(int64(a.GetToken()) - int64(b.GetToken())) }) {
				t.Errorf("not ordered by token")
			}
		})
	}
}
