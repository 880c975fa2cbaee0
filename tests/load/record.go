package load

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

const (
	// HeaderSize is the size of a record's header: sequence number and
	// send time.
	HeaderSize = 16
	// MinSize and MaxSize bound the record size.
	MinSize = 32
	MaxSize = 1 << 20
	// DefaultSize is the record size when none is configured.
	DefaultSize = 1024
	// PadSpan is the number of filler offsets a pad offers.
	PadSpan = 1 << 16
)

// Errors that Receive and Pattern.Decode return, wrapped in a
// *RecordError that names the record.
var (
	// ErrSequence: a record carries another sequence number than the
	// next one expected (a gap, a duplicate, a reordering), or there
	// are more records than expected.
	ErrSequence = errors.New("unexpected sequence number")
	// ErrCorrupt: a record's filler differs from the pattern.
	ErrCorrupt = errors.New("corrupt record")
	// ErrShort: the stream ended inside a record, or before the
	// expected number of records.
	ErrShort = errors.New("stream ended early")
)

// RecordError names the first bad record of a stream.
type RecordError struct {
	// Index is the record's position in the stream (counting from 0),
	// Offset the stream offset of its first byte.
	Index  int64
	Offset int64
	// Detail says what is wrong; Err is one of ErrSequence, ErrCorrupt
	// and ErrShort.
	Detail string
	Err    error
}

func (e *RecordError) Error() string {
	return fmt.Sprintf("record %d (stream offset %d): %v: %s", e.Index, e.Offset, e.Err, e.Detail)
}

func (e *RecordError) Unwrap() error { return e.Err }

// Record is a decoded record header.
type Record struct {
	Seq  uint64
	Sent time.Time
}

// Pattern encodes and checks the records of one size and seed. It is
// read-only after NewPattern and safe for concurrent use.
type Pattern struct {
	size int
	seed uint64
	pad  []byte
}

// NewPattern returns the pattern of records of size bytes (0 means
// DefaultSize) derived from seed.
func NewPattern(size int, seed uint64) (*Pattern, error) {
	if size == 0 {
		size = DefaultSize
	}
	if size < MinSize || size > MaxSize {
		return nil, fmt.Errorf("record size %d out of range: want %d to %d bytes", size, MinSize, MaxSize)
	}
	n := PadSpan + size - HeaderSize
	pad := make([]byte, (n+7)&^7)
	state := seed
	for i := 0; i < len(pad); i += 8 {
		state += 0x9e3779b97f4a7c15
		binary.LittleEndian.PutUint64(pad[i:], mix(state))
	}
	return &Pattern{size: size, seed: seed, pad: pad[:n]}, nil
}

// Size returns the record size in bytes.
func (p *Pattern) Size() int { return p.size }

// mix is the SplitMix64 finaliser.
func mix(z uint64) uint64 {
	z ^= z >> 30
	z *= 0xbf58476d1ce4e5b9
	z ^= z >> 27
	z *= 0x94d049bb133111eb
	return z ^ z>>31
}

// filler returns the filler of record seq.
func (p *Pattern) filler(seq uint64) []byte {
	o := int(mix(p.seed^mix(seq)) % PadSpan)
	return p.pad[o : o+p.size-HeaderSize]
}

// Encode writes record seq, sent at the given time, into rec, which must
// be exactly Size bytes long.
func (p *Pattern) Encode(rec []byte, seq uint64, sent time.Time) {
	if len(rec) != p.size {
		panic(fmt.Sprintf("load: Encode into %d bytes, record size is %d", len(rec), p.size))
	}
	binary.BigEndian.PutUint64(rec, seq)
	binary.BigEndian.PutUint64(rec[8:], uint64(sent.UnixNano()))
	copy(rec[HeaderSize:], p.filler(seq))
}

// Decode checks that rec is one whole record of the pattern, whatever its
// sequence number, and returns its header. A wrong length is ErrShort, a
// filler that does not match the sequence number ErrCorrupt (the error
// names the first differing byte); the RecordError's Index and Offset are
// left for the caller, which knows the record's place in the stream.
func (p *Pattern) Decode(rec []byte) (Record, error) {
	if len(rec) != p.size {
		return Record{}, &RecordError{Err: ErrShort, Detail: fmt.Sprintf("%d bytes, record size is %d", len(rec), p.size)}
	}
	seq := binary.BigEndian.Uint64(rec)
	r := Record{Seq: seq, Sent: time.Unix(0, int64(binary.BigEndian.Uint64(rec[8:])))}
	want := p.filler(seq)
	if got := rec[HeaderSize:]; !bytes.Equal(got, want) {
		i := 0
		for i < len(got) && got[i] == want[i] {
			i++
		}
		return r, &RecordError{Err: ErrCorrupt, Detail: fmt.Sprintf("byte %d is %#02x, the pattern of sequence number %d has %#02x", HeaderSize+i, got[i], seq, want[i])}
	}
	return r, nil
}
