package load

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"time"
)

const (
	// DefaultBin is the width of a timeline bin.
	DefaultBin = 50 * time.Millisecond
	// MaxBins bounds the timeline; bytes arriving later are counted in
	// the statistics but not in the timeline.
	MaxBins = 1 << 20
	// DefaultReadBuffer is the size of Receive's read buffer.
	DefaultReadBuffer = 256 << 10
)

// RecvConfig configures Receive.
type RecvConfig struct {
	// Size and Seed must be the sender's.
	Size int
	Seed uint64
	// Records, when positive, is how many records the stream must
	// hold: fewer is ErrShort, more ErrSequence.
	Records int64
	// Bin is the width of the timeline's bins (0: DefaultBin).
	Bin time.Duration
	// ReadBuffer is the size of the read buffer (0: DefaultReadBuffer).
	ReadBuffer int
}

// RecvStats is what Receive received.
type RecvStats struct {
	Records, Bytes int64
	// Start and End are when the first and the last byte arrived, and
	// Duration the time between them.
	Start, End time.Time
	Duration   time.Duration
	// Goodput is Bytes over Duration, in bits per second.
	Goodput float64
	// SHA256 is the hash of every byte received.
	SHA256 [sha256.Size]byte
	// Stall is the longest time between the arrivals of two consecutive
	// records (for the first record, from Start), and StallAt when it
	// began, counted from Start.
	Stall, StallAt time.Duration
	// LatencyP50, LatencyP99 and LatencyMax are percentiles of the
	// records' arrival time minus their send time (to within 1/16).
	LatencyP50, LatencyP99, LatencyMax time.Duration
	// Bin is the width of the timeline's bins, and Timeline the bytes
	// that arrived in each bin, from Start.
	Bin      time.Duration
	Timeline []int64
}

// Receive reads records from r until the end of the stream and checks
// each. The error names the first bad record (a *RecordError matching
// ErrSequence, ErrCorrupt or ErrShort) or the read that failed. When ctx
// ends, Receive interrupts a blocked Read if r has SetReadDeadline, and
// returns the context's error. The statistics cover what was read, also
// when there is an error.
func Receive(ctx context.Context, r io.Reader, cfg RecvConfig) (RecvStats, error) {
	st := RecvStats{Bin: cfg.Bin}
	p, err := NewPattern(cfg.Size, cfg.Seed)
	if err != nil {
		return st, err
	}
	switch {
	case cfg.Records < 0:
		return st, fmt.Errorf("records %d is negative", cfg.Records)
	case cfg.Bin < 0:
		return st, fmt.Errorf("timeline bin %s is negative", cfg.Bin)
	case cfg.ReadBuffer < 0:
		return st, fmt.Errorf("read buffer %d is negative", cfg.ReadBuffer)
	}
	if st.Bin == 0 {
		st.Bin = DefaultBin
	}
	size := p.Size()
	bufSize := cfg.ReadBuffer
	if bufSize == 0 {
		bufSize = DefaultReadBuffer
	}
	buf := make([]byte, max(bufSize, 2*size))

	if d, ok := r.(interface{ SetReadDeadline(time.Time) error }); ok {
		stop := context.AfterFunc(ctx, func() { _ = d.SetReadDeadline(time.Unix(1, 0)) })
		defer stop()
	}
	h := sha256.New()
	var (
		lat      latencies
		have     int       // bytes in buf not yet made into records
		lastRecv time.Time // arrival of the last whole record
	)
	finish := func(err error) (RecvStats, error) {
		st.Duration = st.End.Sub(st.Start)
		if st.Duration > 0 {
			st.Goodput = float64(st.Bytes) * 8 / st.Duration.Seconds()
		}
		copy(st.SHA256[:], h.Sum(nil))
		st.LatencyP50, st.LatencyP99, st.LatencyMax = lat.quantile(0.50), lat.quantile(0.99), lat.max
		return st, err
	}
	for {
		n, err := r.Read(buf[have:])
		now := time.Now()
		if n > 0 {
			if st.Bytes == 0 {
				st.Start, lastRecv = now, now
			}
			st.End = now
			h.Write(buf[have : have+n])
			st.Bytes += int64(n)
			if bin := int(now.Sub(st.Start) / st.Bin); bin < MaxBins {
				if bin >= len(st.Timeline) {
					st.Timeline = append(st.Timeline, make([]int64, bin+1-len(st.Timeline))...)
				}
				st.Timeline[bin] += int64(n)
			}
			have += n
			whole := have / size * size
			for off := 0; off < whole; off += size {
				index := st.Records
				rec, derr := p.Decode(buf[off : off+size])
				if derr == nil && rec.Seq != uint64(index) {
					derr = &RecordError{Err: ErrSequence, Detail: fmt.Sprintf("sequence number %d, want %d", rec.Seq, index)}
				}
				if derr == nil && cfg.Records > 0 && index >= cfg.Records {
					derr = &RecordError{Err: ErrSequence, Detail: fmt.Sprintf("more records than the %d expected", cfg.Records)}
				}
				if derr != nil {
					var re *RecordError
					if errors.As(derr, &re) {
						re.Index, re.Offset = index, index*int64(size)
					}
					return finish(derr)
				}
				if off == 0 {
					if gap := now.Sub(lastRecv); gap > st.Stall {
						st.Stall, st.StallAt = gap, lastRecv.Sub(st.Start)
					}
					lastRecv = now
				}
				lat.add(now.Sub(rec.Sent))
				st.Records++
			}
			have = copy(buf, buf[whole:have])
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if ctx.Err() != nil {
				err = context.Cause(ctx)
			}
			return finish(fmt.Errorf("receiving record %d: %w", st.Records, err))
		}
	}
	if have > 0 {
		return finish(&RecordError{Index: st.Records, Offset: st.Records * int64(size), Err: ErrShort,
			Detail: fmt.Sprintf("the stream ends %d bytes into the record", have)})
	}
	if cfg.Records > 0 && st.Records < cfg.Records {
		return finish(&RecordError{Index: st.Records, Offset: st.Records * int64(size), Err: ErrShort,
			Detail: fmt.Sprintf("the stream ends after %d records, want %d", st.Records, cfg.Records)})
	}
	return finish(nil)
}

// latencies is a histogram of durations with 16 buckets per power of two.
type latencies struct {
	counts [64 * 16]int64
	n      int64
	max    time.Duration
}

func latBucket(d time.Duration) int {
	v := uint64(max(d, 0))
	if v < 16 {
		return int(v)
	}
	e := bits.Len64(v) - 5
	return (e+1)*16 + int(v>>e&15)
}

// latLower is the smallest duration in bucket i.
func latLower(i int) time.Duration {
	if i < 32 {
		return time.Duration(i)
	}
	e := i/16 - 1
	return time.Duration((16 + uint64(i%16)) << e)
}

func (l *latencies) add(d time.Duration) {
	l.counts[latBucket(d)]++
	l.n++
	l.max = max(l.max, d)
}

// quantile returns the lower bound of the bucket that holds quantile q.
func (l *latencies) quantile(q float64) time.Duration {
	if l.n == 0 {
		return 0
	}
	rank := int64(q*float64(l.n)+0.5) - 1
	rank = min(max(rank, 0), l.n-1)
	var sum int64
	for i, c := range l.counts {
		sum += c
		if sum > rank {
			return min(latLower(i), l.max)
		}
	}
	return l.max
}

// RecoveryWindow is the span over which Recovery averages the goodput:
// delivery comes in bursts (a multipath receiver releases reordered data
// at once), so single bins are too noisy to compare with a rate.
const RecoveryWindow = 200 * time.Millisecond

// Recovery returns how long after event the goodput recovered to 80 % of
// the rate after the event, from the timeline. The rate after the event is
// the mean of the second half of the whole bins after the event. The
// goodput at the end of a bin is the mean over the RecoveryWindow that
// ends there (at least one bin). Recovery is reached at the end of the
// first bin, after the first at which the goodput was below 80 % of the
// rate (the dip), at which it is at or above 80 % again. With no dip it is
// 0. It fails when the event is outside the transfer or too little of the
// transfer follows it (fewer than 4 whole bins), when nothing arrived in
// the second half after it, or when the goodput never recovered.
func (s *RecvStats) Recovery(event time.Time) (time.Duration, error) {
	if s.Bin <= 0 || len(s.Timeline) == 0 {
		return 0, errors.New("no timeline")
	}
	if event.Before(s.Start) || !event.Before(s.End) {
		return 0, fmt.Errorf("event at %s is outside the transfer (%s long)", event.Sub(s.Start), s.Duration)
	}
	first := int(event.Sub(s.Start) / s.Bin)
	last := len(s.Timeline) - 1 // the last bin is partial
	if last-(first+1) < 4 {
		return 0, fmt.Errorf("only %d whole bins of %s after the event: too little to tell the rate", max(last-(first+1), 0), s.Bin)
	}
	from := first + 1 + (last-first-1)/2
	var sum int64
	for _, b := range s.Timeline[from:last] {
		sum += b
	}
	if sum == 0 {
		return 0, errors.New("nothing arrived in the second half of the time after the event")
	}
	threshold := 0.8 * float64(sum) / float64(last-from)
	w := max(int((RecoveryWindow+s.Bin/2)/s.Bin), 1)
	// mean is the goodput, in bytes per bin, over the window ending
	// with bin i (the bins that exist, at the start).
	mean := func(i int) float64 {
		var sum int64
		n := 0
		for k := max(i-w+1, 0); k <= i; k++ {
			sum += s.Timeline[k]
			n++
		}
		return float64(sum) / float64(n)
	}
	dip := -1
	for i := first; i < last; i++ {
		if mean(i) < threshold {
			dip = i
			break
		}
	}
	if dip < 0 {
		return 0, nil
	}
	for i := dip + 1; i < last; i++ {
		if mean(i) >= threshold {
			return max(s.Start.Add(time.Duration(i+1)*s.Bin).Sub(event), 0), nil
		}
	}
	return 0, fmt.Errorf("the goodput never recovered to 80 %% of the rate after the event")
}

// Rate returns the goodput in bits per second between from and to,
// counted over the timeline's whole bins inside that interval (not the
// last bin, which is partial); 0 when there is no such bin.
func (s *RecvStats) Rate(from, to time.Time) float64 {
	if s.Bin <= 0 {
		return 0
	}
	i := max(int((from.Sub(s.Start)+s.Bin-1)/s.Bin), 0)
	j := min(int(to.Sub(s.Start)/s.Bin), len(s.Timeline)-1)
	if j <= i {
		return 0
	}
	var sum int64
	for _, b := range s.Timeline[i:j] {
		sum += b
	}
	return float64(sum) * 8 / (float64(j-i) * s.Bin.Seconds())
}
