package mpx

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/netip"
	"testing"
	"time"
)

// FuzzFrames feeds arbitrary bytes to the frame reader: it must return
// an error or frames whose bodies fit their headers, never panic.
func FuzzFrames(f *testing.F) {
	kj := [32]byte{1}
	var seed []byte
	seed = appendDataHeader(seed, 42, 3, true)
	seed = append(seed, "abc"...)
	seed = appendAck(seed, 45, 1<<20)
	seed = appendPing(seed, framePing, 7)
	seed = appendPrio(seed, true)
	seed = appendAddAddr(seed, addrAdvert{ID: 3, Addr: netip.MustParseAddrPort("[2001:db8::1]:7445")}, &kj)
	seed = appendByteFrame(seed, frameRemoveAddr, 3)
	seed = appendReset(seed, StatusBusy, "later")
	f.Add(seed)
	f.Add([]byte{1, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{9, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		fr := &frameReader{r: bufio.NewReader(bytes.NewReader(b))}
		for range 1000 {
			h, err := fr.readHeader()
			if err != nil {
				return
			}
			if h.typ == frameData {
				if _, err := fr.readDSN(); err != nil {
					return
				}
				if _, err := io.CopyN(io.Discard, fr.r, int64(h.length-8)); err != nil {
					return
				}
				continue
			}
			body, err := fr.readBody(h)
			if err != nil {
				return
			}
			if len(body) != h.length {
				t.Fatalf("body of %d bytes for a header of %d", len(body), h.length)
			}
			if h.typ == frameAddAddr {
				a, err := parseAddAddr(h.flags, body, &kj)
				if err == nil && (a.ID == 0 || !a.Addr.IsValid()) {
					t.Fatalf("accepted ADD_ADDR %+v", a)
				}
			}
		}
	})
}

// FuzzOpen feeds arbitrary bytes to the converter's reading of OPEN and
// JOIN.
func FuzzOpen(f *testing.F) {
	o := &openRequest{time: 1, keyID: "k", dst: Addr{Host: "example.test", Port: 80}, window: 1}
	f.Add(encodeOpen(o, testKey))
	o.dst = Addr{IP: netip.MustParseAddr("2001:db8::2"), Port: 443}
	f.Add(encodeOpen(o, testKey))
	j := &joinRequest{token: 9, local: 1, generation: 2}
	f.Add(j.encode())
	f.Add([]byte("MPX\x02\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		typ, raw, err := helloType(r)
		if err != nil {
			return
		}
		switch typ {
		case msgOpen:
			o, err := readOpen(r, raw)
			if err != nil {
				return
			}
			if err := o.dst.Validate(); err != nil {
				t.Fatalf("accepted OPEN with destination %+v: %v", o.dst, err)
			}
			_ = verifyOpen(o, testKey, time.Unix(o.time, 0))
		case msgJoin:
			_, _ = readJoin(r, raw)
		}
	})
}

// FuzzAccept feeds arbitrary bytes to the client's reading of ACCEPT: only
// a correctly authenticated answer may be taken.
func FuzzAccept(f *testing.F) {
	open := []byte("open")
	msg, _ := encodeAccept(&accept{status: StatusOK, bound: netip.MustParseAddrPort("192.0.2.1:5")}, open, testKey)
	f.Add(msg)
	msg, _ = encodeAccept(&accept{status: StatusRefused}, open, testKey)
	f.Add(msg)
	f.Fuzz(func(t *testing.T, b []byte) {
		a, _, err := readAccept(bytes.NewReader(b), open, testKey)
		if err != nil {
			var se *StatusError
			if errors.As(err, &se) && se.Status == StatusOK {
				t.Fatalf("refusal with status OK: %v", err)
			}
			return
		}
		if a.status != StatusOK {
			t.Fatalf("accepted answer with status %v", a.status)
		}
	})
}

func TestAddrEncoding(t *testing.T) {
	for _, a := range []Addr{
		{IP: netip.MustParseAddr("192.0.2.1"), Port: 1},
		{IP: netip.MustParseAddr("2001:db8::1"), Port: 65535},
		{Host: "example.test", Port: 443},
	} {
		b := appendAddr(nil, a)
		got, n, err := parseAddr(b)
		if err != nil || n != len(b) || got != a {
			t.Errorf("%v: decoded %v (%d of %d bytes), %v", a, got, n, len(b), err)
		}
	}
	for _, bad := range []Addr{
		{Port: 1},
		{Host: "a..b", Port: 1},
		{Host: "x y", Port: 1},
		{IP: netip.MustParseAddr("192.0.2.1")},
	} {
		if bad.Validate() == nil {
			t.Errorf("%+v: valid, want an error", bad)
		}
	}
}
