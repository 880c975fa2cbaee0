package load

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"
)

// FuzzDecode: any bytes either decode to a record that encodes back to
// exactly the same bytes, or fail with a RecordError.
func FuzzDecode(f *testing.F) {
	p, err := NewPattern(MinSize, 9)
	if err != nil {
		f.Fatal(err)
	}
	good := make([]byte, MinSize)
	p.Encode(good, 12345, time.Unix(1700000000, 42))
	f.Add(good)
	f.Add(good[:20])
	f.Add(append(bytes.Clone(good), 0))
	bad := bytes.Clone(good)
	bad[30] ^= 1
	f.Add(bad)
	f.Add(make([]byte, MinSize))
	f.Fuzz(func(t *testing.T, rec []byte) {
		r, err := p.Decode(rec)
		if err != nil {
			var re *RecordError
			if !errors.As(err, &re) || !(errors.Is(err, ErrShort) || errors.Is(err, ErrCorrupt)) {
				t.Fatalf("Decode error %v is not a RecordError matching ErrShort or ErrCorrupt", err)
			}
			return
		}
		again := make([]byte, MinSize)
		p.Encode(again, r.Seq, r.Sent)
		if !bytes.Equal(again, rec) {
			t.Fatalf("decoded %+v from % x, which encodes to % x", r, rec, again)
		}
	})
}

// FuzzReceive: Receive never panics, and accepts a stream only when it is
// whole records with consecutive sequence numbers from 0.
func FuzzReceive(f *testing.F) {
	var stream bytes.Buffer
	if _, err := Send(context.Background(), &stream, SendConfig{Size: MinSize, Seed: 3, Records: 4}); err != nil {
		f.Fatal(err)
	}
	f.Add(stream.Bytes())
	f.Add(stream.Bytes()[:50])
	f.Add(stream.Bytes()[MinSize:])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, in []byte) {
		st, err := Receive(context.Background(), bytes.NewReader(in), RecvConfig{Size: MinSize, Seed: 3, ReadBuffer: 64})
		if st.Bytes != int64(len(in)) && err == nil {
			t.Fatalf("read %d of %d bytes without an error", st.Bytes, len(in))
		}
		if err != nil {
			return
		}
		if st.Records*MinSize != int64(len(in)) {
			t.Fatalf("accepted %d bytes as %d records of %d", len(in), st.Records, MinSize)
		}
		p, _ := NewPattern(MinSize, 3)
		for i := range st.Records {
			r, err := p.Decode(in[i*MinSize : (i+1)*MinSize])
			if err != nil || r.Seq != uint64(i) {
				t.Fatalf("accepted record %d: %+v, %v", i, r, err)
			}
		}
	})
}

// FuzzSOCKS5Reply: a proxy's reply is parsed or refused with an error,
// never a panic, and a success names an address.
func FuzzSOCKS5Reply(f *testing.F) {
	f.Add([]byte{5, 0, 0, 1, 192, 0, 2, 1, 0x1f, 0x90})
	f.Add([]byte{5, 0, 0, 4, 0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 80})
	f.Add([]byte{5, 0, 0, 3, 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 0, 80})
	f.Add([]byte{5, 5, 0, 1, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{5, 0, 0, 3, 0})
	f.Add([]byte{4, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		addr, err := readSOCKS5Reply(bytes.NewReader(in))
		if err == nil && addr == "" {
			t.Fatalf("reply % x accepted with no address", in)
		}
	})
}
