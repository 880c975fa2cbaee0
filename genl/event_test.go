package genl

import (
	"errors"
	"net/netip"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/genetlink"
)

func TestDecodeEvent(t *testing.T) {
	var (
		l4 = netip.MustParseAddrPort("192.0.2.1:40000")
		r4 = netip.MustParseAddrPort("198.51.100.2:443")
		l6 = netip.MustParseAddrPort("[2001:db8::1]:40001")
		r6 = netip.MustParseAddrPort("[2001:db8:1::2]:8443")
	)
	const token = 0xdeadbeef
	// connAttrs are the attributes of CREATED and ESTABLISHED.
	connAttrs := func(local, remote netip.AddrPort, extra ...attr) []attr {
		family, saddr, daddr := uint16(2), uint16(wireSAddr4), uint16(wireDAddr4)
		if local.Addr().Is6() {
			family, saddr, daddr = 10, wireSAddr6, wireDAddr6
		}
		return append([]attr{
			attrU32(wireToken, token),
			attrU16(wireFamily, family),
			attrAddr(saddr, local.Addr()),
			attrAddr(daddr, remote.Addr()),
			attrBE16(wireSPort, local.Port()),
			attrBE16(wireDPort, remote.Port()),
		}, extra...)
	}

	tests := []struct {
		name  string
		typ   EventType
		attrs []attr
		want  Event
	}{
		{
			name:  "created IPv4, client side",
			typ:   EventCreated,
			attrs: connAttrs(l4, r4, attrU8(wireServerSide, 0)),
			want:  Event{Type: EventCreated, Token: token, Family: 2, Local: l4, Remote: r4},
		},
		{
			name:  "created IPv4, server side from the old attribute",
			typ:   EventCreated,
			attrs: connAttrs(l4, r4, attrU8(wireServerSide, 1)),
			want:  Event{Type: EventCreated, Token: token, Family: 2, Local: l4, Remote: r4, ServerSide: true},
		},
		{
			name:  "established IPv6, server side from the flags",
			typ:   EventEstablished,
			attrs: connAttrs(l6, r6, attrU16(wireFlags, 2)),
			want: Event{Type: EventEstablished, Token: token, Family: 10, Local: l6, Remote: r6,
				Flags: EventFlagServerSide, ServerSide: true},
		},
		{
			name:  "established IPv4, peer denies joins to its initial address",
			typ:   EventEstablished,
			attrs: connAttrs(l4, r4, attrU16(wireFlags, 1)),
			want: Event{Type: EventEstablished, Token: token, Family: 2, Local: l4, Remote: r4,
				Flags: EventFlagDenyJoinID0},
		},
		{
			name:  "established, both flags and the old attribute",
			typ:   EventEstablished,
			attrs: connAttrs(l4, r4, attrU16(wireFlags, 3), attrU8(wireServerSide, 1)),
			want: Event{Type: EventEstablished, Token: token, Family: 2, Local: l4, Remote: r4,
				Flags: EventFlagDenyJoinID0 | EventFlagServerSide, ServerSide: true},
		},
		{
			name:  "closed",
			typ:   EventClosed,
			attrs: []attr{attrU32(wireToken, token)},
			want:  Event{Type: EventClosed, Token: token},
		},
		{
			name: "announced IPv4 with port",
			typ:  EventAnnounced,
			attrs: []attr{
				attrU32(wireToken, token), attrU8(wireRemID, 1), attrU16(wireFamily, 2),
				attrAddr(wireDAddr4, netip.MustParseAddr("198.51.100.9")), attrBE16(wireDPort, 5555),
			},
			want: Event{Type: EventAnnounced, Token: token, RemoteID: 1, Family: 2,
				Remote: netip.MustParseAddrPort("198.51.100.9:5555")},
		},
		{
			name: "announced IPv6 without port, with a timeout",
			typ:  EventAnnounced,
			attrs: []attr{
				attrU32(wireToken, token), attrU8(wireRemID, 200), attrU16(wireFamily, 10),
				attrAddr(wireDAddr6, netip.MustParseAddr("2001:db8::99")), attrU32(wireTimeout, 120),
			},
			want: Event{Type: EventAnnounced, Token: token, RemoteID: 200, Family: 10,
				Remote: netip.MustParseAddrPort("[2001:db8::99]:0"), Timeout: 120},
		},
		{
			name:  "removed",
			typ:   EventRemoved,
			attrs: []attr{attrU32(wireToken, token), attrU8(wireRemID, 3)},
			want:  Event{Type: EventRemoved, Token: token, RemoteID: 3},
		},
		{
			name:  "subflow established IPv4 on a device",
			typ:   EventSubEstablished,
			attrs: subEstablishedAttrs(token, 1, 2, l4, r4, false, 7),
			want: Event{Type: EventSubEstablished, Token: token, Family: 2, LocalID: 1, RemoteID: 2,
				Local: l4, Remote: r4, IfIndex: 7},
		},
		{
			name:  "subflow established IPv6 backup",
			typ:   EventSubEstablished,
			attrs: subEstablishedAttrs(token, 0, 0, l6, r6, true, 0),
			want: Event{Type: EventSubEstablished, Token: token, Family: 10,
				Local: l6, Remote: r6, Backup: true},
		},
		{
			name: "subflow closed IPv4 with an error and a reset",
			typ:  EventSubClosed,
			attrs: append(subEstablishedAttrs(token, 2, 1, l4, r4, false, 0),
				attrU8(wireError, 111), attrU32(wireResetReason, 3), attrU32(wireResetFlags, 1)),
			want: Event{Type: EventSubClosed, Token: token, Family: 2, LocalID: 2, RemoteID: 1,
				Local: l4, Remote: r4, SubflowErr: syscall.ECONNREFUSED,
				ResetReason: ResetProhibited, ResetFlags: 1},
		},
		{
			name: "subflow closed IPv6 with a reset",
			typ:  EventSubClosed,
			attrs: append(subEstablishedAttrs(token, 2, 1, l6, r6, true, 4),
				attrU32(wireResetReason, 6), attrU32(wireResetFlags, 0)),
			want: Event{Type: EventSubClosed, Token: token, Family: 10, LocalID: 2, RemoteID: 1,
				Local: l6, Remote: r6, Backup: true, IfIndex: 4, ResetReason: ResetMiddleboxFailed},
		},
		{
			name:  "subflow priority IPv4",
			typ:   EventSubPriority,
			attrs: subEstablishedAttrs(token, 1, 0, l4, r4, true, 0),
			want: Event{Type: EventSubPriority, Token: token, Family: 2, LocalID: 1,
				Local: l4, Remote: r4, Backup: true},
		},
		{
			name: "listener created IPv4",
			typ:  EventListenerCreated,
			attrs: []attr{
				attrU16(wireFamily, 2), attrBE16(wireSPort, 5555),
				attrAddr(wireSAddr4, netip.MustParseAddr("0.0.0.0")),
			},
			want: Event{Type: EventListenerCreated, Family: 2, Local: netip.MustParseAddrPort("0.0.0.0:5555")},
		},
		{
			name: "listener closed IPv6",
			typ:  EventListenerClosed,
			attrs: []attr{
				attrU16(wireFamily, 10), attrBE16(wireSPort, 5555),
				attrAddr(wireSAddr6, netip.MustParseAddr("2001:db8::1")),
			},
			want: Event{Type: EventListenerClosed, Family: 10, Local: netip.MustParseAddrPort("[2001:db8::1]:5555")},
		},
		{
			name: "port attribute before its address",
			typ:  EventListenerCreated,
			attrs: []attr{
				attrBE16(wireSPort, 0x1234), attrU16(wireFamily, 2),
				attrAddr(wireSAddr4, netip.MustParseAddr("192.0.2.7")),
			},
			want: Event{Type: EventListenerCreated, Family: 2, Local: netip.MustParseAddrPort("192.0.2.7:4660")},
		},
		{
			name:  "unknown attributes are ignored",
			typ:   EventClosed,
			attrs: []attr{attrU32(wireToken, token), {typ: 99, data: []byte{1, 2, 3}}, {typ: 0, data: nil}},
			want:  Event{Type: EventClosed, Token: token},
		},
		{
			name:  "port without address is dropped",
			typ:   EventAnnounced,
			attrs: []attr{attrU32(wireToken, token), attrU8(wireRemID, 1), attrBE16(wireDPort, 80)},
			want:  Event{Type: EventAnnounced, Token: token, RemoteID: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeEvent(eventMessage(t, tt.typ, tt.attrs...))
			if err != nil {
				t.Fatalf("DecodeEvent: %v", err)
			}
			if diff := cmp.Diff(tt.want, got, cmpOpts()...); diff != "" {
				t.Errorf("decoded event differs (-want +got):\n%s", diff)
			}
			if got.Raw != nil || got.DecodeErr != nil {
				t.Errorf("a known, well-formed event has Raw %x / DecodeErr %v", got.Raw, got.DecodeErr)
			}
			if want := tt.want.Flags&EventFlagDenyJoinID0 != 0; got.DenyJoinID0() != want {
				t.Errorf("DenyJoinID0() = %t, want %t", got.DenyJoinID0(), want)
			}
		})
	}
}

// TestDecodeEventEveryAttribute guards the table above: together its
// messages must use every event attribute and every known event type.
func TestDecodeEventEveryAttribute(t *testing.T) {
	seen := make(map[uint16]bool)
	attrs := append(subEstablishedAttrs(1, 1, 1, netip.MustParseAddrPort("192.0.2.1:1"), netip.MustParseAddrPort("192.0.2.2:2"), true, 1),
		subEstablishedAttrs(1, 1, 1, netip.MustParseAddrPort("[2001:db8::1]:1"), netip.MustParseAddrPort("[2001:db8::2]:2"), true, 1)...)
	attrs = append(attrs, attrU8(wireError, 1), attrU16(wireFlags, 3), attrU32(wireTimeout, 1),
		attrU32(wireResetReason, 1), attrU32(wireResetFlags, 1), attrU8(wireServerSide, 1))
	for _, a := range attrs {
		seen[a.typ] = true
	}
	for typ := uint16(wireToken); typ <= wireServerSide; typ++ {
		if !seen[typ] {
			t.Errorf("event attribute %d is not exercised", typ)
		}
	}
	// The same message decodes with every field set (later address wins).
	ev, err := DecodeEvent(eventMessage(t, EventSubClosed, attrs...))
	if err != nil {
		t.Fatalf("DecodeEvent: %v", err)
	}
	want := Event{
		Type: EventSubClosed, Token: 1, Family: 10, LocalID: 1, RemoteID: 1,
		Local: netip.MustParseAddrPort("[2001:db8::1]:1"), Remote: netip.MustParseAddrPort("[2001:db8::2]:2"),
		Backup: true, SubflowErr: 1, Flags: 3, ServerSide: true, Timeout: 1, IfIndex: 1,
		ResetReason: 1, ResetFlags: 1,
	}
	if diff := cmp.Diff(want, ev, cmpOpts()...); diff != "" {
		t.Errorf("decoded event differs (-want +got):\n%s", diff)
	}
}

func TestDecodeEventUnknownType(t *testing.T) {
	for _, typ := range []uint8{0, 4, 5, 8, 9, 12, 14, 17, 200, 255} {
		t.Run(EventType(typ).String(), func(t *testing.T) {
			data := encodeAttrs(t, attrU32(wireToken, 7), attr{typ: 77, data: []byte("future")})
			ev, err := DecodeEvent(genetlink.Message{Header: genetlink.Header{Command: typ, Version: 1}, Data: data})
			if err != nil {
				t.Fatalf("DecodeEvent of unknown type %d: %v, want no error", typ, err)
			}
			if ev.Type != EventType(typ) || ev.Type.Known() {
				t.Errorf("Type = %v (known %t), want unknown type %d", ev.Type, ev.Type.Known(), typ)
			}
			if diff := cmp.Diff(data, ev.Raw); diff != "" {
				t.Errorf("Raw differs from the message's attributes (-want +got):\n%s", diff)
			}
			if ev.DecodeErr != nil || ev.Token != 0 {
				t.Errorf("unknown event was decoded: %+v", ev)
			}
			// Raw is a copy: the socket's buffer may be reused.
			data[0] ^= 0xff
			if ev.Raw[0] == data[0] {
				t.Error("Raw aliases the message's buffer")
			}
		})
	}
	// An unknown type without attributes still says it was not decoded.
	ev, err := DecodeEvent(genetlink.Message{Header: genetlink.Header{Command: 4}})
	if err != nil || ev.Raw == nil {
		t.Errorf("DecodeEvent(empty type 4) = Raw %v, err %v; want an empty, non-nil Raw and no error", ev.Raw, err)
	}
}

func TestDecodeEventMalformed(t *testing.T) {
	// The last attribute, SADDR4, has no padding: cutting two bytes leaves
	// it shorter than its header says.
	valid := encodeAttrs(t, attrU32(wireToken, 1), attrU16(wireFamily, 2), attrAddr(wireSAddr4, netip.MustParseAddr("192.0.2.1")))
	tests := []struct {
		name string
		typ  EventType
		data []byte
	}{
		{"truncated attribute", EventCreated, valid[:len(valid)-2]},
		{"attribute header cut short", EventClosed, []byte{8, 0, 1}},
		{"length beyond the message", EventClosed, []byte{12, 0, 1, 0, 1, 2, 3, 4}},
		{"3-byte saddr4", EventCreated, encodeAttrs(t, attrU32(wireToken, 1), attr{wireSAddr4, []byte{192, 0, 2}})},
		{"5-byte daddr4", EventCreated, encodeAttrs(t, attr{wireDAddr4, []byte{192, 0, 2, 1, 0}})},
		{"15-byte saddr6", EventListenerCreated, encodeAttrs(t, attr{wireSAddr6, make([]byte, 15)})},
		{"4-byte daddr6", EventAnnounced, encodeAttrs(t, attr{wireDAddr6, []byte{192, 0, 2, 1}})},
		{"1-byte sport", EventSubEstablished, encodeAttrs(t, attr{wireSPort, []byte{80}})},
		{"3-byte dport", EventAnnounced, encodeAttrs(t, attr{wireDPort, []byte{0, 80, 0}})},
		{"2-byte token", EventClosed, encodeAttrs(t, attr{wireToken, []byte{1, 2}})},
		{"4-byte family", EventCreated, encodeAttrs(t, attrU32(wireFamily, 2))},
		{"2-byte loc_id", EventSubPriority, encodeAttrs(t, attrU16(wireLocID, 1))},
		{"empty backup", EventSubPriority, encodeAttrs(t, attr{wireBackup, nil})},
		{"1-byte flags", EventEstablished, encodeAttrs(t, attrU8(wireFlags, 2))},
		{"2-byte if_idx", EventSubEstablished, encodeAttrs(t, attrU16(wireIfIdx, 2))},
		{"8-byte reset reason", EventSubClosed, encodeAttrs(t, attr{wireResetReason, make([]byte, 8)})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := DecodeEvent(genetlink.Message{Header: genetlink.Header{Command: uint8(tt.typ), Version: 1}, Data: tt.data})
			if err == nil {
				t.Fatalf("DecodeEvent = %+v, want an error", ev)
			}
			if !strings.Contains(err.Error(), tt.typ.String()) {
				t.Errorf("error %q does not name the event type %s", err, tt.typ)
			}
			if diff := cmp.Diff(Event{}, ev, cmpOpts()...); diff != "" {
				t.Errorf("a failed decode returned a partial event (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEventString(t *testing.T) {
	tests := []struct {
		name string
		ev   Event
		want string
	}{
		{
			name: "subflow established",
			ev: Event{Type: EventSubEstablished, Token: 0x416b9b58, LocalID: 1, RemoteID: 2,
				Local:  netip.MustParseAddrPort("192.0.2.1:40000"),
				Remote: netip.MustParseAddrPort("198.51.100.2:443"), Backup: true, IfIndex: 3},
			want: "[sf_established] token=416b9b58 remid=2 locid=1 saddr=192.0.2.1 sport=40000 daddr=198.51.100.2 dport=443 backup=1 ifindex=3",
		},
		{
			name: "subflow closed with a reset",
			ev: Event{Type: EventSubClosed, Token: 1, Local: netip.MustParseAddrPort("[2001:db8::1]:1"),
				Remote: netip.MustParseAddrPort("[2001:db8::2]:2"), SubflowErr: syscall.ECONNREFUSED,
				ResetReason: ResetResource, ResetFlags: 1},
			want: "[sf_closed] token=00000001 remid=0 locid=0 saddr=2001:db8::1 sport=1 daddr=2001:db8::2 dport=2 backup=0 error=111 reset_reason=resource reset_flags=0x1",
		},
		{
			name: "established on the server",
			ev: Event{Type: EventEstablished, Token: 0xabc, Local: netip.MustParseAddrPort("192.0.2.1:5555"),
				Remote: netip.MustParseAddrPort("192.0.2.2:40000"), Flags: EventFlagServerSide | EventFlagDenyJoinID0, ServerSide: true},
			want: "[established] token=00000abc saddr=192.0.2.1 sport=5555 daddr=192.0.2.2 dport=40000 server_side deny_join_id0",
		},
		{
			name: "announced",
			ev:   Event{Type: EventAnnounced, Token: 2, RemoteID: 1, Remote: netip.MustParseAddrPort("10.99.2.1:5555")},
			want: "[announced] token=00000002 remid=1 daddr=10.99.2.1 dport=5555",
		},
		{
			name: "listener created",
			ev:   Event{Type: EventListenerCreated, Local: netip.MustParseAddrPort("0.0.0.0:5555")},
			want: "[listener_created] saddr=0.0.0.0 sport=5555",
		},
		{
			name: "unknown",
			ev:   Event{Type: 12, Raw: []byte{1, 2}},
			want: "[unknown_12] raw=0102",
		},
		{
			name: "undecodable",
			ev:   Event{Type: EventClosed, Raw: []byte{}, DecodeErr: errors.New("bad")},
			want: `[closed] raw= error="bad"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.ev.String(); got != tt.want {
				t.Errorf("String() =\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestEventTypeString(t *testing.T) {
	tests := []struct {
		typ  EventType
		want string
	}{
		{EventCreated, "created"},
		{EventSubPriority, "sf_priority"},
		{EventListenerClosed, "listener_closed"},
		{4, "unknown_4"},
		{0, "unknown_0"},
	}
	for _, tt := range tests {
		if got := tt.typ.String(); got != tt.want {
			t.Errorf("EventType(%d).String() = %q, want %q", uint8(tt.typ), got, tt.want)
		}
	}
}

func TestResetReasonString(t *testing.T) {
	tests := []struct {
		r    ResetReason
		want string
	}{
		{ResetUnspecified, "unspecified"},
		{ResetTooMuchQueued, "too-much-queued"},
		{ResetMiddleboxFailed, "middlebox"},
		{7, "reason-7"},
	}
	for _, tt := range tests {
		if got := tt.r.String(); got != tt.want {
			t.Errorf("ResetReason(%d).String() = %q, want %q", uint32(tt.r), got, tt.want)
		}
	}
}

func TestEndpointFlagsString(t *testing.T) {
	tests := []struct {
		f    EndpointFlags
		want string
	}{
		{0, ""},
		{FlagSignal, "signal"},
		{FlagSubflow | FlagBackup | FlagFullmesh, "subflow,backup,fullmesh"},
		{FlagImplicit | FlagLaminar, "implicit,laminar"},
		{FlagSignal | 0x40, "signal,0x40"},
		{0x300, "0x300"},
	}
	for _, tt := range tests {
		if got := tt.f.String(); got != tt.want {
			t.Errorf("EndpointFlags(%#x).String() = %q, want %q", uint32(tt.f), got, tt.want)
		}
	}
}

func TestEndpointFlagsRoundTrip(t *testing.T) {
	const named = FlagSignal | FlagSubflow | FlagBackup | FlagFullmesh | FlagImplicit | FlagLaminar
	for f := EndpointFlags(0); f <= named; f++ {
		s := f.String()
		got, err := ParseEndpointFlags(s)
		if err != nil {
			t.Errorf("ParseEndpointFlags(%q) of %#x: %v", s, uint32(f), err)
			continue
		}
		if got != f {
			t.Errorf("ParseEndpointFlags(%q) = %#x, want %#x", s, uint32(got), uint32(f))
		}
		if got.Count() != strings.Count(s, ",")+btoi(s != "") {
			t.Errorf("Count() of %q = %d", s, got.Count())
		}
	}
}

func TestParseEndpointFlags(t *testing.T) {
	tests := []struct {
		in      string
		want    EndpointFlags
		wantErr bool
	}{
		{in: "", want: 0},
		{in: "signal", want: FlagSignal},
		{in: "subflow backup", want: FlagSubflow | FlagBackup},
		{in: " Fullmesh,,BACKUP ", want: FlagFullmesh | FlagBackup},
		{in: "signal,signal", want: FlagSignal},
		{in: "laminar", want: FlagLaminar},
		{in: "nobackup", wantErr: true},
		{in: "signal,bogus", wantErr: true},
		{in: "0x40", wantErr: true},
		{in: "signal;backup", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseEndpointFlags(tt.in)
		switch {
		case tt.wantErr && err == nil:
			t.Errorf("ParseEndpointFlags(%q) = %#x, want an error", tt.in, uint32(got))
		case tt.wantErr && !errors.Is(err, ErrInvalid):
			t.Errorf("ParseEndpointFlags(%q) error %v does not match ErrInvalid", tt.in, err)
		case !tt.wantErr && err != nil:
			t.Errorf("ParseEndpointFlags(%q): %v", tt.in, err)
		case !tt.wantErr && got != tt.want:
			t.Errorf("ParseEndpointFlags(%q) = %#x, want %#x", tt.in, uint32(got), uint32(tt.want))
		}
	}
}

// benchmarkDecodeEvent measures DecodeEvent on one realistic event.
func benchmarkDecodeEvent(b *testing.B, m genetlink.Message) {
	if _, err := DecodeEvent(m); err != nil {
		b.Fatalf("DecodeEvent: %v", err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeEvent(m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeEvent(b *testing.B) {
	b.Run("sub_established_ipv4", func(b *testing.B) {
		benchmarkDecodeEvent(b, eventMessage(b, EventSubEstablished, subEstablishedAttrs(0x416b9b58, 1, 1,
			netip.MustParseAddrPort("10.99.1.2:40000"), netip.MustParseAddrPort("10.99.2.1:5555"), false, 0)...))
	})
	b.Run("sub_established_ipv6", func(b *testing.B) {
		benchmarkDecodeEvent(b, eventMessage(b, EventSubEstablished, subEstablishedAttrs(0x416b9b58, 1, 1,
			netip.MustParseAddrPort("[2001:db8:1::2]:40000"), netip.MustParseAddrPort("[2001:db8:2::1]:5555"), false, 0)...))
	})
}
