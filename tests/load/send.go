package load

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math"
	"time"
)

// DefaultBatch is how many bytes Send hands to the connection in one Write
// when sending as fast as possible.
const DefaultBatch = 64 << 10

// SendConfig configures Send. At least one of Records and Duration must be
// set; with both, Send stops at whichever comes first.
type SendConfig struct {
	// Size is the record size (0: DefaultSize) and Seed the pattern's
	// seed; the receiver must use the same.
	Size int
	Seed uint64
	// Records is how many records to send (0: no limit).
	Records int64
	// Duration is how long to send (0: no limit).
	Duration time.Duration
	// Rate limits the sending rate in bits per second (0: as fast as
	// possible), with a token bucket of 10 ms worth of bytes (at least
	// one record).
	Rate float64
	// Batch is at most how many bytes go to one Write (0: DefaultBatch,
	// or 5 ms worth of bytes when rate-limited); always at least one
	// record.
	Batch int
	// KeepOpen leaves the connection's write side open at the end
	// instead of half-closing it.
	KeepOpen bool
}

// SendStats is what Send sent.
type SendStats struct {
	Records, Bytes int64
	// Start is when the first Write began; Duration the time from there
	// to the return of the last Write.
	Start    time.Time
	Duration time.Duration
	// Goodput is Bytes over Duration, in bits per second, as the sender
	// saw it (at most as fast as the path, plus socket buffers).
	Goodput float64
	// SHA256 is the hash of every byte written.
	SHA256 [sha256.Size]byte
}

// closeWriter is a connection whose write side can be closed alone.
type closeWriter interface{ CloseWrite() error }

// Send writes records to w, then half-closes w (CloseWrite, when w has
// it) unless cfg.KeepOpen. When ctx ends, Send interrupts a blocked Write
// if w has SetWriteDeadline, and returns the context's error; it returns
// the statistics of what was written in every case.
func Send(ctx context.Context, w io.Writer, cfg SendConfig) (SendStats, error) {
	var st SendStats
	p, err := NewPattern(cfg.Size, cfg.Seed)
	if err != nil {
		return st, err
	}
	switch {
	case cfg.Records < 0:
		return st, fmt.Errorf("records %d is negative", cfg.Records)
	case cfg.Duration < 0:
		return st, fmt.Errorf("duration %s is negative", cfg.Duration)
	case cfg.Records == 0 && cfg.Duration == 0:
		return st, errors.New("neither a number of records nor a duration to send for")
	case cfg.Rate < 0 || math.IsNaN(cfg.Rate) || math.IsInf(cfg.Rate, 0):
		return st, fmt.Errorf("rate %v is not a positive number of bits per second", cfg.Rate)
	case cfg.Batch < 0:
		return st, fmt.Errorf("batch %d is negative", cfg.Batch)
	}
	size := p.Size()
	bytesPerSec := cfg.Rate / 8
	batch := cfg.Batch
	if batch == 0 {
		batch = DefaultBatch
		if cfg.Rate > 0 {
			batch = min(batch, int(bytesPerSec*0.005))
		}
	}
	perBatch := max(batch/size, 1)
	bucket := newBucket(bytesPerSec, max(float64(size*perBatch), bytesPerSec*0.010))

	if d, ok := w.(interface{ SetWriteDeadline(time.Time) error }); ok {
		stop := context.AfterFunc(ctx, func() { _ = d.SetWriteDeadline(time.Unix(1, 0)) })
		defer stop()
	}
	h := sha256.New()
	buf := make([]byte, perBatch*size)
	st.Start = time.Now()
	deadline := st.Start.Add(cfg.Duration)
	finish := func(err error) (SendStats, error) {
		st.Duration = time.Since(st.Start)
		if st.Duration > 0 {
			st.Goodput = float64(st.Bytes) * 8 / st.Duration.Seconds()
		}
		copy(st.SHA256[:], h.Sum(nil))
		return st, err
	}
	for {
		n := perBatch
		if cfg.Records > 0 {
			n = int(min(int64(n), cfg.Records-st.Records))
		}
		if n == 0 || (cfg.Duration > 0 && !time.Now().Before(deadline)) {
			break
		}
		if err := bucket.take(ctx, float64(n*size)); err != nil {
			return finish(fmt.Errorf("sending record %d: %w", st.Records, context.Cause(ctx)))
		}
		now := time.Now()
		for i := range n {
			p.Encode(buf[i*size:(i+1)*size], uint64(st.Records)+uint64(i), now)
		}
		k, err := w.Write(buf[:n*size])
		h.Write(buf[:k])
		st.Bytes += int64(k)
		st.Records += int64(k / size)
		if err != nil {
			if ctx.Err() != nil {
				err = context.Cause(ctx)
			}
			return finish(fmt.Errorf("sending record %d: %w", st.Records, err))
		}
	}
	if !cfg.KeepOpen {
		if cw, ok := w.(closeWriter); ok {
			if err := cw.CloseWrite(); err != nil {
				return finish(fmt.Errorf("half-closing after %d records: %w", st.Records, err))
			}
		}
	}
	return finish(nil)
}

// bucket is a token bucket of bytes; a zero rate never waits.
type bucket struct {
	rate, depth, tokens float64
	last                time.Time
}

func newBucket(rate, depth float64) *bucket {
	return &bucket{rate: rate, depth: depth, tokens: depth, last: time.Now()}
}

// take waits until n bytes' worth of tokens are there and takes them.
func (b *bucket) take(ctx context.Context, n float64) error {
	if b.rate == 0 {
		return ctx.Err()
	}
	for {
		now := time.Now()
		b.tokens = min(b.depth, b.tokens+now.Sub(b.last).Seconds()*b.rate)
		b.last = now
		if b.tokens >= n {
			b.tokens -= n
			return nil
		}
		wait := time.Duration((n - b.tokens) / b.rate * float64(time.Second))
		t := time.NewTimer(max(wait, 100*time.Microsecond))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}
