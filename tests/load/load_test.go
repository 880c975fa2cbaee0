package load

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"io"
	"math"
	"net"
	"testing"
	"time"
)

// loopback returns the two ends of a TCP connection over loopback, closed
// at the end of the test.
func loopback(t *testing.T) (client, server *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() {
		_ = c.Close()
		_ = s.Close()
	})
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// transfer sends cfg over a loopback connection, receiving through wrap
// (which may alter the stream), and returns both ends' results.
func transfer(t *testing.T, cfg SendConfig, rcfg RecvConfig, wrap func(io.Reader) io.Reader) (SendStats, RecvStats, error) {
	t.Helper()
	ctx := testCtx(t)
	c, s := loopback(t)
	type sent struct {
		st  SendStats
		err error
	}
	done := make(chan sent, 1)
	go func() {
		st, err := Send(ctx, c, cfg)
		done <- sent{st, err}
	}()
	var r io.Reader = s
	if wrap != nil {
		r = wrap(s)
	}
	rst, rerr := Receive(ctx, r, rcfg)
	// Unblock a sender that the receiver stopped reading.
	_ = s.Close()
	out := <-done
	if rerr == nil && out.err != nil {
		t.Fatalf("Send: %v", out.err)
	}
	return out.st, rst, rerr
}

func TestIntegrity(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		size     int
		records  int64
		readBuf  int
		batch    int
		duration time.Duration
	}{
		{name: "default", records: 5000},
		{name: "min-size", size: MinSize, records: 20000},
		{name: "odd-size-small-reads", size: 1000, records: 3000, readBuf: 1500, batch: 777},
		{name: "big-records", size: 64 << 10, records: 64},
		{name: "duration", duration: 50 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := SendConfig{Size: tc.size, Seed: 42, Records: tc.records, Duration: tc.duration, Batch: tc.batch}
			st, rst, err := transfer(t, cfg, RecvConfig{Size: tc.size, Seed: 42, Records: tc.records, ReadBuffer: tc.readBuf}, nil)
			if err != nil {
				t.Fatalf("Receive: %v", err)
			}
			size := int64(tc.size)
			if size == 0 {
				size = DefaultSize
			}
			if tc.records > 0 && (st.Records != tc.records || rst.Records != tc.records) {
				t.Errorf("sent %d records and received %d, want %d", st.Records, rst.Records, tc.records)
			}
			if st.Bytes != st.Records*size || rst.Bytes != st.Bytes || rst.Records != st.Records || st.Records == 0 {
				t.Errorf("sent %d bytes in %d records, received %d bytes in %d records (size %d)", st.Bytes, st.Records, rst.Bytes, rst.Records, size)
			}
			if st.SHA256 != rst.SHA256 {
				t.Errorf("SHA-256 sent %x, received %x", st.SHA256, rst.SHA256)
			}
			if rst.Goodput <= 0 || rst.Duration <= 0 && rst.Records > 1 {
				t.Errorf("goodput %v over %s", rst.Goodput, rst.Duration)
			}
			if rst.LatencyP50 < 0 || rst.LatencyP99 < rst.LatencyP50 || rst.LatencyMax < rst.LatencyP99 {
				t.Errorf("latency p50 %s p99 %s max %s out of order", rst.LatencyP50, rst.LatencyP99, rst.LatencyMax)
			}
			var binned int64
			for _, b := range rst.Timeline {
				binned += b
			}
			if binned != rst.Bytes {
				t.Errorf("the timeline holds %d bytes, %d were received", binned, rst.Bytes)
			}
		})
	}
}

// mangler changes the stream as it passes: at input offset at, it flips
// a byte, or drops the next drop bytes, or ends the stream.
type mangler struct {
	r    io.Reader
	in   int64
	at   int64
	flip bool
	drop int64
	end  bool
}

func (m *mangler) Read(p []byte) (int, error) {
	if m.end && m.in >= m.at {
		return 0, io.EOF
	}
	if m.end {
		p = p[:min(int64(len(p)), m.at-m.in)]
	}
	n, err := m.r.Read(p)
	out := 0
	for i := range n {
		o := m.in + int64(i)
		if o >= m.at && o < m.at+m.drop {
			continue
		}
		p[out] = p[i]
		if m.flip && o == m.at {
			p[out] ^= 0x20
		}
		out++
	}
	m.in += int64(n)
	return out, err
}

func TestCorruptionDetected(t *testing.T) {
	t.Parallel()
	const size, records = 1024, 2000
	for _, tc := range []struct {
		name      string
		mangle    *mangler
		want      error
		wantIndex int64
	}{
		{"flipped-filler-byte", &mangler{at: 700*size + 500, flip: true}, ErrCorrupt, 700},
		// The filler no longer matches the sequence number.
		{"flipped-sequence-byte", &mangler{at: 900*size + 7, flip: true}, ErrCorrupt, 900},
		{"flipped-timestamp-byte", &mangler{at: 900*size + 9, flip: true}, nil, 0},
		{"dropped-record", &mangler{at: 1200 * size, drop: size}, ErrSequence, 1200},
		{"dropped-bytes", &mangler{at: 1200*size + 10, drop: 3}, ErrCorrupt, 1200},
		{"cut-inside-record", &mangler{at: 1500*size + 100, end: true}, ErrShort, 1500},
		{"cut-between-records", &mangler{at: 1500 * size, end: true}, ErrShort, 1500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st, rst, err := transfer(t, SendConfig{Seed: 7, Records: records}, RecvConfig{Seed: 7, Records: records},
				func(r io.Reader) io.Reader { tc.mangle.r = r; return tc.mangle })
			if tc.want == nil {
				// A changed send time is not detectable, but the
				// hash tells.
				if err != nil {
					t.Fatalf("Receive: %v", err)
				}
				if st.SHA256 == rst.SHA256 {
					t.Fatal("the hashes are equal although a byte changed")
				}
				return
			}
			var re *RecordError
			if !errors.Is(err, tc.want) || !errors.As(err, &re) {
				t.Fatalf("Receive: %v; want a RecordError matching %v", err, tc.want)
			}
			if re.Index != tc.wantIndex || re.Offset != tc.wantIndex*size {
				t.Errorf("error names record %d at offset %d, want %d at %d: %v", re.Index, re.Offset, tc.wantIndex, tc.wantIndex*size, err)
			}
			if rst.Records != tc.wantIndex {
				t.Errorf("stats count %d good records, want %d", rst.Records, tc.wantIndex)
			}
			t.Log(err)
		})
	}
}

func TestWrongSeedOrSize(t *testing.T) {
	t.Parallel()
	var stream bytes.Buffer
	if _, err := Send(context.Background(), &stream, SendConfig{Seed: 1, Records: 10}); err != nil {
		t.Fatal(err)
	}
	_, err := Receive(context.Background(), bytes.NewReader(stream.Bytes()), RecvConfig{Seed: 2})
	if !errors.Is(err, ErrCorrupt) {
		t.Errorf("another seed: %v, want ErrCorrupt", err)
	}
	_, err = Receive(context.Background(), bytes.NewReader(stream.Bytes()), RecvConfig{Seed: 1, Size: 512})
	if !errors.Is(err, ErrCorrupt) {
		t.Errorf("another size: %v, want ErrCorrupt", err)
	}
	_, err = Receive(context.Background(), bytes.NewReader(stream.Bytes()), RecvConfig{Seed: 1, Records: 9})
	if !errors.Is(err, ErrSequence) {
		t.Errorf("more records than expected: %v, want ErrSequence", err)
	}
}

// pauser passes reads through, and sleeps once before the read that
// passes stream offset at.
type pauser struct {
	r      io.Reader
	off    int64
	at     int64
	pause  time.Duration
	paused time.Time
}

func (p *pauser) Read(b []byte) (int, error) {
	if p.paused.IsZero() && p.off+int64(len(b)) > p.at {
		if p.off < p.at {
			b = b[:p.at-p.off]
		} else {
			p.paused = time.Now()
			time.Sleep(p.pause)
		}
	}
	n, err := p.r.Read(b)
	p.off += int64(n)
	return n, err
}

func TestStall(t *testing.T) {
	t.Parallel()
	const pause = 200 * time.Millisecond
	p := &pauser{at: 3 << 20, pause: pause}
	_, rst, err := transfer(t, SendConfig{Records: 6 << 10}, RecvConfig{}, func(r io.Reader) io.Reader { p.r = r; return p })
	if err != nil {
		t.Fatal(err)
	}
	// The pause is the longest stall (other gaps on loopback are far
	// shorter, but a loaded machine may add tens of milliseconds).
	if rst.Stall < pause || rst.Stall > pause+time.Second {
		t.Errorf("longest stall %s, want about %s", rst.Stall, pause)
	}
	if at := rst.Start.Add(rst.StallAt); at.After(p.paused) || p.paused.Sub(at) > time.Second {
		t.Errorf("the stall began at %s, the pause at %s", rst.StallAt, p.paused.Sub(rst.Start))
	}
}

func TestRateLimit(t *testing.T) {
	t.Parallel()
	const rate = 20e6 // bits per second
	const records = 500
	st, err := Send(testCtx(t), io.Discard, SendConfig{Records: records, Rate: rate})
	if err != nil {
		t.Fatal(err)
	}
	// The bucket starts full (10 ms worth), so the least time is that of
	// the rest; the upper bound only catches a limiter gone wrong.
	least := time.Duration(float64(records*DefaultSize*8-rate*0.010) / rate * float64(time.Second))
	if st.Duration < least || st.Duration > 20*least {
		t.Errorf("%d bytes at %s took %s, want at least %s", st.Bytes, FormatRate(rate), st.Duration, least)
	}
	if st.Goodput > rate*1.2 {
		t.Errorf("sent at %s, limited to %s", FormatRate(st.Goodput), FormatRate(rate))
	}

	// For a duration: stops in time, at about the rate.
	st, err = Send(testCtx(t), io.Discard, SendConfig{Duration: 100 * time.Millisecond, Rate: rate})
	if err != nil {
		t.Fatal(err)
	}
	// At most the full bucket, 100 ms worth and the batch begun at the
	// last moment.
	if most := int64(rate / 8 * 0.11 * 1.2); st.Bytes == 0 || st.Bytes > most {
		t.Errorf("sent %d bytes in 100 ms at %s, want at most %d", st.Bytes, FormatRate(rate), most)
	}
}

func TestCancel(t *testing.T) {
	t.Parallel()
	_, s := loopback(t)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 2)
	go func() {
		_, err := Receive(ctx, s, RecvConfig{})
		errc <- err
	}()
	go func() {
		// Nobody reads the other way: Send blocks once the buffers fill.
		_, err := Send(ctx, s, SendConfig{Duration: time.Hour})
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond)
	cancel()
	for range 2 {
		select {
		case err := <-errc:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("after cancel: %v, want context.Canceled", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Send or Receive did not return after the context was cancelled")
		}
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	for _, cfg := range []SendConfig{
		{Records: 1, Size: MinSize - 1},
		{Records: 1, Size: MaxSize + 1},
		{},
		{Records: -1},
		{Duration: -time.Second},
		{Records: 1, Rate: -1},
		{Records: 1, Rate: math.NaN()},
	} {
		if _, err := Send(context.Background(), io.Discard, cfg); err == nil {
			t.Errorf("Send with %+v succeeded", cfg)
		}
	}
	for _, cfg := range []RecvConfig{{Size: 31}, {Records: -1}, {Bin: -1}, {ReadBuffer: -1}} {
		if _, err := Receive(context.Background(), bytes.NewReader(nil), cfg); err == nil {
			t.Errorf("Receive with %+v succeeded", cfg)
		}
	}
}

func TestLatencyHistogram(t *testing.T) {
	t.Parallel()
	var l latencies
	for i := 1; i <= 1000; i++ {
		l.add(time.Duration(i) * time.Microsecond)
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Microsecond}, {0.99, 990 * time.Microsecond}} {
		got := l.quantile(tc.q)
		if got > tc.want || float64(got) < float64(tc.want)*(1-1.0/16) {
			t.Errorf("quantile %v = %s, want %s to within 1/16 below", tc.q, got, tc.want)
		}
	}
	for i := range 960 { // the buckets a positive int64 can reach
		lo := latLower(i)
		if latBucket(lo) != i {
			t.Fatalf("bucket %d's lower bound %d falls in bucket %d", i, lo, latBucket(lo))
		}
		if lo > 0 && latBucket(lo-1) != i-1 {
			t.Fatalf("just below bucket %d's lower bound %d is bucket %d", i, lo, latBucket(lo-1))
		}
	}
}

func TestRecovery(t *testing.T) {
	t.Parallel()
	start := time.Unix(1000, 0)
	mk := func(bin time.Duration, tl ...int64) *RecvStats {
		return &RecvStats{Start: start, End: start.Add(time.Duration(len(tl)) * bin), Bin: bin, Timeline: tl}
	}
	// With bins as wide as the window, each bin is compared on its own.
	w := RecoveryWindow
	at := func(bin time.Duration, i int, frac float64) time.Time {
		return start.Add(time.Duration((float64(i) + frac) * float64(bin)))
	}
	for _, tc := range []struct {
		name  string
		s     *RecvStats
		event time.Time
		want  time.Duration
		fail  bool
	}{
		// 100 per bin before, event in bin 3, two empty bins, then 60 (a
		// slower path): recovered at the end of bin 6, 3.5 bins after.
		{"dip", mk(w, 100, 100, 100, 100, 0, 0, 60, 60, 60, 60, 60, 60, 60, 5), at(w, 3, 0.5), 7 * w / 2, false},
		{"no-dip", mk(w, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 3), at(w, 2, 0), 0, false},
		// Rate after the event 80 (bins 7 to 11): 64 reached at the end
		// of bin 6, 5 bins after the event at the start of bin 2.
		{"slow-ramp", mk(w, 100, 100, 0, 10, 30, 50, 80, 80, 80, 80, 80, 80, 1), at(w, 2, 0), 5 * w, false},
		{"dip-at-the-end", mk(w, 100, 100, 100, 80, 80, 80, 80, 80, 80, 80, 0, 1), at(w, 2, 0), 0, true},
		{"nothing-after", mk(w, 100, 100, 100, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1), at(w, 2, 0), 0, true},
		{"too-late", mk(w, 100, 100, 100, 100, 100, 100), at(w, 3, 0), 0, true},
		{"before-start", mk(w, 100, 100, 100, 100, 100, 100), start.Add(-time.Second), 0, true},
		// Bins of a quarter window: bursts (200, 0, 200, 0) average out.
		// The event is at the start of bin 8; four empty bins follow,
		// then 50 per bin (threshold 40). The window mean first falls
		// under 40 at bin 10 and is back at 40 when it holds four bins
		// of 50, at the end of bin 15: 8 bins after the event.
		{"smoothed", mk(w/4, 200, 0, 200, 0, 200, 0, 200, 0, 0, 0, 0, 0, 50, 50, 50, 50, 50, 50, 50, 50, 50, 50, 50, 50, 1),
			at(w/4, 8, 0), 8 * w / 4, false},
	} {
		got, err := tc.s.Recovery(tc.event)
		if (err != nil) != tc.fail || got != tc.want {
			t.Errorf("%s: Recovery = %s, %v; want %s, failure %v", tc.name, got, err, tc.want, tc.fail)
		}
	}
}

func TestRate(t *testing.T) {
	t.Parallel()
	start := time.Unix(1000, 0)
	s := &RecvStats{Start: start, Bin: 100 * time.Millisecond, Timeline: []int64{1000, 2000, 3000, 4000, 1}}
	at := func(ms int) time.Time { return start.Add(time.Duration(ms) * time.Millisecond) }
	for _, tc := range []struct {
		from, to int
		want     float64
	}{
		{0, 200, 1500 * 8 * 10},
		{50, 400, 3000 * 8 * 10}, // bins 1 to 3
		{0, 1000, 2500 * 8 * 10}, // not the partial last bin
		{150, 190, 0},
		{-500, 100, 1000 * 8 * 10},
	} {
		if got := s.Rate(at(tc.from), at(tc.to)); math.Abs(got-tc.want) > 1e-6 {
			t.Errorf("Rate(%d ms, %d ms) = %v, want %v", tc.from, tc.to, got, tc.want)
		}
	}
}

func TestParseUnits(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]float64{"0": 0, "1000": 1000, "50mbit": 50e6, "50M": 50e6, "1.5g": 1.5e9, "800k": 800e3, "2kibit": 2048, "10Mbit": 10e6} {
		if got, err := ParseRate(in); err != nil || got != want {
			t.Errorf("ParseRate(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "mbit", "50mbps", "-1", "5x", "1.2.3m"} {
		if got, err := ParseRate(in); err == nil {
			t.Errorf("ParseRate(%q) = %v, want an error", in, got)
		}
	}
	for in, want := range map[string]int64{"0": 0, "4096": 4096, "64MiB": 64 << 20, "64m": 64 << 20, "1g": 1 << 30, "500kb": 500e3, "2K": 2048} {
		if got, err := ParseBytes(in); err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "k", "-5", "10q", "1e30"} {
		if got, err := ParseBytes(in); err == nil {
			t.Errorf("ParseBytes(%q) = %v, want an error", in, got)
		}
	}
}

// TestPatternFormat pins the documented format: a change to the pattern
// would make streams of different versions of the tool disagree.
func TestPatternFormat(t *testing.T) {
	t.Parallel()
	p, err := NewPattern(MinSize, 1)
	if err != nil {
		t.Fatal(err)
	}
	rec := make([]byte, MinSize)
	p.Encode(rec, 3, time.Unix(0, 0x0102030405060708))
	want := []byte{0, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6, 7, 8}
	if !bytes.Equal(rec[:HeaderSize], want) {
		t.Errorf("header % x, want % x", rec[:HeaderSize], want)
	}
	// The first pad bytes of seed 1 are SplitMix64's first output for
	// state 1, little-endian; the filler is a window of the pad.
	first := mix(1 + 0x9e3779b97f4a7c15)
	if got := uint64(p.pad[0]) | uint64(p.pad[7])<<56; got != first&0xff|first&(0xff<<56) {
		t.Errorf("pad starts % x, want SplitMix64 output %#x", p.pad[:8], first)
	}
	o := mix(1^mix(3)) % PadSpan
	if !bytes.Equal(rec[HeaderSize:], p.pad[o:o+MinSize-HeaderSize]) {
		t.Errorf("filler is not the pad at offset %d", o)
	}
	if got := hex.EncodeToString(rec); got != goldenRecord {
		t.Errorf("record 3 of seed 1, size 32 = %s, want %s", got, goldenRecord)
	}
}

// goldenRecord is record 3 of seed 1, size 32, sent at 0x0102030405060708
// Unix nanoseconds.
const goldenRecord = "000000000000000301020304050607086d031bcf556c6c998e30b10d7d74d955"

// TestSubflows: an MPTCP connection over loopback has one established
// subflow (skipped where the kernel has no MPTCP).
func TestSubflows(t *testing.T) {
	t.Parallel()
	var lc net.ListenConfig
	lc.SetMultipathTCP(true)
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			_, _ = io.Copy(io.Discard, c)
			_ = c.Close()
		}
	}()
	var d net.Dialer
	d.SetMultipathTCP(true)
	c, err := d.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tc := c.(*net.TCPConn)
	if ok, _ := tc.MultipathTCP(); !ok {
		t.Skip("no MPTCP on this kernel (the connection fell back to TCP)")
	}
	n, err := Subflows(tc)
	if err != nil || n != 1 {
		t.Fatalf("Subflows = %d, %v; want 1", n, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := WaitSubflows(ctx, tc, 1); err != nil {
		t.Errorf("WaitSubflows(1): %v", err)
	}
	if err := WaitSubflows(ctx, tc, 2); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitSubflows(2) on a one-subflow connection: %v, want the deadline", err)
	}
}
