package userspace_test

import (
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/mptcpd/mptcpd/genl"
	"github.com/mptcpd/mptcpd/pm/userspace"
)

// openConns hands the Manager n new established client connections,
// tokens first..first+n-1, and waits until they are handled. It builds
// the events in small batches, so that they are garbage by the time the
// heap is measured.
func openConns(h *harness, first uint32, n int) {
	var batch [512]genl.Event
	for i := 0; i < n; {
		k := 0
		for ; k+1 < len(batch) && i < n; i++ {
			tok := first + uint32(i)
			local := netip.AddrPortFrom(eth0.Addr, uint16(1024+i%60000))
			batch[k] = genl.Event{Type: genl.EventCreated, Token: tok, Local: local, Remote: addrPort("192.0.2.1:443")}
			batch[k+1] = batch[k]
			batch[k+1].Type = genl.EventEstablished
			k += 2
		}
		h.m.Handle(batch[:k])
	}
	h.settle()
}

// heapPerConn returns the live heap bytes per connection that n new
// connections add.
func heapPerConn(h *harness, n int) float64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	openConns(h, 1, n)
	runtime.GC()
	runtime.ReadMemStats(&after)
	if got := h.m.Connections(); got != n {
		h.tb.Fatalf("%d connections tracked, want %d", got, n)
	}
	return float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(n)
}

// memoryCases are the strategies whose memory is measured: none keeps the
// connection and its initial subflow; fullmesh over two local addresses
// also asks for a subflow, which waits for its answer.
var memoryCases = []struct {
	name   string
	toml   string
	locals []userspace.Local
}{
	{"none", rule(`strategy = "none"`), []userspace.Local{eth0}},
	{"fullmesh", rule(`strategy = "fullmesh"`), []userspace.Local{eth0, wlan0}},
}

// A tracked connection costs at most 2 KiB of heap.
func TestMemoryPerConnection(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 10,000 connections")
	}
	const n = 10000
	for _, tc := range memoryCases {
		t.Run(tc.name, func(t *testing.T) {
			h := start(t, setup{toml: tc.toml, locals: tc.locals, noRecord: true, noDecisions: true})
			per := heapPerConn(h, n)
			t.Logf("%s: %.0f heap bytes per connection (%d connections)", tc.name, per, n)
			if per > 2048 {
				t.Errorf("%s: %.0f heap bytes per connection, want at most 2048", tc.name, per)
			}
			runtime.KeepAlive(h)
		})
	}
}

// BenchmarkConnectionMemory reports the heap bytes per tracked connection
// (bytes/conn) and the time to set one up, b.N connections in all.
func BenchmarkConnectionMemory(b *testing.B) {
	for _, tc := range memoryCases {
		b.Run(tc.name, func(b *testing.B) {
			h := start(b, setup{toml: tc.toml, locals: tc.locals, noRecord: true, noDecisions: true})
			b.ResetTimer()
			per := heapPerConn(h, b.N)
			b.StopTimer()
			b.ReportMetric(per, "bytes/conn")
			runtime.KeepAlive(h)
		})
	}
}

// BenchmarkDecision measures a new connection from its CREATED and
// ESTABLISHED events to the CreateSubflow its strategy (per-interface,
// two local addresses on two interfaces) asks for, with a kernel that
// answers at once: ns and allocations per connection.
func BenchmarkDecision(b *testing.B) {
	for _, workers := range []int{1, 4} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			h := start(b, setup{toml: rule(`strategy = "per-interface"`), locals: []userspace.Local{eth0, wlan0},
				workers: workers, noRecord: true, noDecisions: true})
			var evs [2]genl.Event
			evs[0] = genl.Event{Type: genl.EventCreated, Local: addrPort("10.0.1.1:40000"), Remote: addrPort("192.0.2.1:443")}
			evs[1] = evs[0]
			evs[1].Type = genl.EventEstablished
			b.ReportAllocs()
			b.ResetTimer()
			begin := time.Now()
			for i := range b.N {
				evs[0].Token, evs[1].Token = uint32(i+1), uint32(i+1)
				h.m.Handle(evs[:])
			}
			waitCreates(h, int64(b.N))
			elapsed := time.Since(begin)
			b.StopTimer()
			b.ReportMetric(float64(elapsed.Nanoseconds())/float64(b.N), "ns/conn")
		})
	}
}

// waitCreates waits until the kernels have had n commands.
func waitCreates(h *harness, n int64) {
	h.waitFor(fmt.Sprintf("%d commands", n), func() bool {
		var got int64
		for _, k := range h.kernels {
			got += k.count.Load()
		}
		return got >= n
	})
}

// BenchmarkAnnouncementFlood measures a peer's flood of announcements:
// beyond the rate on one connection (its bucket drained first), and, for
// comparison, refused as loopback on connections of their own. It reports
// ns and heap allocations per announcement.
func BenchmarkAnnouncementFlood(b *testing.B) {
	b.Run("rate-limited", func(b *testing.B) {
		const tok = 1
		h := start(b, setup{toml: floodPolicy, locals: []userspace.Local{eth0}, noRecord: true, noDecisions: true})
		h.m.Handle(open(tok, false, "10.0.1.1:40000", "192.0.2.1:443", 0))
		h.m.Handle(floodEvents(tok, 100)) // drain the bucket
		evs := floodEvents(tok, b.N)
		h.settle()
		floodRun(b, h, evs)
	})
	b.Run("loopback", func(b *testing.B) {
		h := start(b, setup{toml: fastRetry + "[[userspace.rule]]\nstrategy = \"fullmesh\"\n", locals: []userspace.Local{eth0}, noRecord: true, noDecisions: true})
		openConns(h, 1, b.N)
		evs := make([]genl.Event, b.N)
		for i := range evs {
			evs[i] = announced(uint32(i+1), 1, "127.0.0.1")
		}
		floodRun(b, h, evs)
	})
}

func floodRun(b *testing.B, h *harness, evs []genl.Event) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	begin := time.Now()
	h.m.Handle(evs)
	h.settle()
	elapsed := time.Since(begin)
	b.StopTimer()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(elapsed.Nanoseconds())/float64(len(evs)), "ns/announcement")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(len(evs)), "allocs/announcement")
}
