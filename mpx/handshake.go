package mpx

import (
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"
)

// Status is the outcome of a handshake, and a RESET's code (§4.2).
type Status uint8

// Status codes.
const (
	StatusOK Status = iota
	StatusFailure
	StatusNotAllowed
	StatusNetUnreachable
	StatusHostUnreachable
	StatusRefused
	StatusTimeout
	StatusBadAddress
	StatusAuthFailed
	StatusBadVersion
	StatusMalformed
	StatusReplayed
	StatusBusy
	StatusUnknownToken
	StatusBadHMAC
	StatusDuplicate
	statusCount
)

var statusNames = [...]string{
	"ok", "failure", "not allowed by the converter's rules", "network unreachable",
	"host unreachable", "connection refused", "timed out", "address type not supported",
	"authentication failed", "unsupported protocol version", "malformed message",
	"replayed or stale handshake", "busy (a limit was reached)", "unknown session token",
	"wrong join HMAC", "duplicate subflow",
}

func (s Status) String() string {
	if s < statusCount {
		return statusNames[s]
	}
	return fmt.Sprintf("status %d", uint8(s))
}

// socksReplies maps statuses to SOCKS5 reply codes.
var socksReplies = [...]byte{0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x08, 0x02, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01}

// StatusError is a refusal by the peer, or a local refusal to be sent to
// it.
type StatusError struct {
	Status Status
	// Text says more, when there is more to say.
	Text string
	// Unauthenticated is set on a refusal the client could not verify.
	Unauthenticated bool
}

func (e *StatusError) Error() string {
	s := "converter refused: " + e.Status.String()
	if e.Text != "" {
		s += ": " + e.Text
	}
	if e.Unauthenticated {
		s += " (unauthenticated answer)"
	}
	return s
}

// SOCKSReply gives the SOCKS5 reply code for the refusal.
func (e *StatusError) SOCKSReply() byte {
	if e.Status < statusCount {
		return socksReplies[e.Status]
	}
	return 0x01
}

// Is makes errors.Is(err, &StatusError{Status: s}) match on the status.
func (e *StatusError) Is(target error) bool {
	t, ok := target.(*StatusError)
	return ok && t.Status == e.Status
}

// Handshake message types.
const (
	msgOpen = 1
	msgJoin = 2
)

const (
	version    = 1
	magic      = "MPX"
	maxKeyID   = 64
	nonceLen   = 16
	macLen     = 32
	keyLen     = 32
	tokenLen   = 8
	joinMsgLen = 3 + 1 + 1 + 1 + tokenLen + nonceLen + 1 + 1 + 4
	// clockSkew is how far an OPEN's time may be from the converter's.
	clockSkew = 120 * time.Second
	// ReplayWindow is how long a converter remembers OPEN nonces.
	ReplayWindow = 2 * clockSkew
)

// sessionKeys are what both ends derive from an OPEN exchange (§4.1).
type sessionKeys struct {
	token      uint64
	join       [32]byte
	idsnClient uint64
	idsnServer uint64
}

func deriveKeys(psk, z, transcriptHash []byte) (sessionKeys, error) {
	var k sessionKeys
	prk, err := hkdf.Extract(sha256.New, z, psk)
	if err != nil {
		return k, fmt.Errorf("deriving session key: %w", err)
	}
	key, err := hkdf.Expand(sha256.New, prk, "mpx1 session"+string(transcriptHash), keyLen)
	if err != nil {
		return k, fmt.Errorf("deriving session key: %w", err)
	}
	expand := func(label string, n int) []byte {
		if err != nil {
			return make([]byte, n)
		}
		var out []byte
		out, err = hkdf.Expand(sha256.New, key, label, n)
		return out
	}
	k.token = binary.BigEndian.Uint64(expand("mpx1 token", 8))
	copy(k.join[:], expand("mpx1 join", 32))
	k.idsnClient = binary.BigEndian.Uint64(expand("mpx1 idsn c", 8))
	k.idsnServer = binary.BigEndian.Uint64(expand("mpx1 idsn s", 8))
	if err != nil {
		return k, fmt.Errorf("deriving session keys: %w", err)
	}
	return k, nil
}

func mac(key []byte, parts ...[]byte) [macLen]byte {
	h := hmac.New(sha256.New, key)
	for _, p := range parts {
		h.Write(p)
	}
	var out [macLen]byte
	h.Sum(out[:0])
	return out
}

func hmacEqual(a, b []byte) bool { return hmac.Equal(a, b) }

func addrMAC(kj *[32]byte, body []byte) [macLen]byte {
	return mac(kj[:], []byte("A"), body)
}

// openRequest is a client's OPEN.
type openRequest struct {
	backup bool
	// local is the client's local address ID of this subflow (§5's L).
	local  uint8
	time   int64
	keyID  string
	pub    [32]byte
	nonce  [nonceLen]byte
	dst    Addr
	window uint32
	// raw is the message up to its mac, the start of the transcript.
	raw []byte
	mac [macLen]byte
}

// helloType reads the common start of OPEN and JOIN and returns the type.
func helloType(r io.Reader) (byte, []byte, error) {
	raw, err := readN(r, make([]byte, 0, 128), 5)
	if err != nil {
		return 0, raw, err
	}
	if string(raw[:3]) != magic {
		return 0, raw, &StatusError{Status: StatusBadVersion, Text: "not an MPX handshake"}
	}
	if raw[3] != version {
		return 0, raw, &StatusError{Status: StatusBadVersion, Text: fmt.Sprintf("version %d; this converter speaks version %d", raw[3], version)}
	}
	if raw[4] != msgOpen && raw[4] != msgJoin {
		return 0, raw, &StatusError{Status: StatusMalformed, Text: fmt.Sprintf("handshake type %d", raw[4])}
	}
	return raw[4], raw, nil
}

func encodeOpen(o *openRequest, psk []byte) []byte {
	b := make([]byte, 0, 160)
	b = append(b, magic...)
	b = append(b, version, msgOpen)
	var flags byte
	if o.backup {
		flags = flagBackup
	}
	b = append(b, flags, o.local)
	b = binary.BigEndian.AppendUint64(b, uint64(o.time))
	b = append(b, byte(len(o.keyID)))
	b = append(b, o.keyID...)
	b = append(b, o.pub[:]...)
	b = append(b, o.nonce[:]...)
	b = appendAddr(b, o.dst)
	b = binary.BigEndian.AppendUint32(b, o.window)
	o.raw = b
	o.mac = mac(psk, []byte("mpx1 open"), b)
	return append(b[:len(b):len(b)], o.mac[:]...)
}

// readOpen reads the rest of an OPEN whose first five bytes are in raw.
func readOpen(r io.Reader, raw []byte) (*openRequest, error) {
	o := &openRequest{}
	var err error
	start := len(raw)
	if raw, err = readN(r, raw, 1+1+8+1); err != nil {
		return nil, err
	}
	flags := raw[start]
	if flags&^flagBackup != 0 {
		return nil, &StatusError{Status: StatusMalformed, Text: fmt.Sprintf("OPEN flags 0x%02x", flags)}
	}
	o.backup = flags&flagBackup != 0
	o.local = raw[start+1]
	o.time = int64(binary.BigEndian.Uint64(raw[start+2:]))
	n := int(raw[start+10])
	if n > maxKeyID {
		return nil, &StatusError{Status: StatusMalformed, Text: fmt.Sprintf("key id of %d bytes (at most %d)", n, maxKeyID)}
	}
	at := len(raw)
	if raw, err = readN(r, raw, n+32+nonceLen); err != nil {
		return nil, err
	}
	o.keyID = string(raw[at : at+n])
	copy(o.pub[:], raw[at+n:])
	copy(o.nonce[:], raw[at+n+32:])
	if o.dst, raw, err = readAddr(r, raw); err != nil {
		return nil, err
	}
	at = len(raw)
	if raw, err = readN(r, raw, 4+macLen); err != nil {
		return nil, err
	}
	o.window = binary.BigEndian.Uint32(raw[at:])
	copy(o.mac[:], raw[at+4:])
	o.raw = raw[:at+4]
	return o, nil
}

// accept is the converter's answer to an OPEN.
type accept struct {
	status Status
	pub    [32]byte
	nonce  [nonceLen]byte
	window uint32
	bound  netip.AddrPort
}

// encodeAccept encodes the answer; psk nil sends a zero mac.
func encodeAccept(a *accept, open []byte, psk []byte) (msg, signed []byte) {
	b := make([]byte, 3, 128)
	b[0] = byte(a.status)
	if a.status == StatusOK {
		b = append(b, a.pub[:]...)
		b = append(b, a.nonce[:]...)
		b = binary.BigEndian.AppendUint32(b, a.window)
		bound := a.bound
		if !bound.IsValid() {
			bound = netip.AddrPortFrom(netip.IPv4Unspecified(), 0)
		}
		b = appendAddr(b, Addr{IP: bound.Addr().Unmap(), Port: bound.Port()})
	}
	binary.BigEndian.PutUint16(b[1:], uint16(len(b)-3))
	var m [macLen]byte
	if psk != nil {
		m = mac(psk, []byte("mpx1 accept"), open, b)
	}
	return append(b[:len(b):len(b)], m[:]...), b
}

// readAccept reads and authenticates the converter's answer.
func readAccept(r io.Reader, open, psk []byte) (*accept, []byte, error) {
	raw, err := readN(r, make([]byte, 0, 128), 3)
	if err != nil {
		return nil, nil, fmt.Errorf("reading the converter's answer: %w", err)
	}
	n := int(binary.BigEndian.Uint16(raw[1:]))
	if n > 32+nonceLen+4+1+16+2 {
		return nil, nil, malformed("answer body of %d bytes", n)
	}
	if raw, err = readN(r, raw, n+macLen); err != nil {
		return nil, nil, fmt.Errorf("reading the converter's answer: %w", err)
	}
	signed, got := raw[:3+n], raw[3+n:]
	want := mac(psk, []byte("mpx1 accept"), open, signed)
	a := &accept{status: Status(raw[0])}
	if !hmac.Equal(want[:], got) {
		if a.status != StatusOK {
			return nil, nil, &StatusError{Status: a.status, Unauthenticated: true}
		}
		return nil, nil, fmt.Errorf("the converter's answer has a wrong mac: the converter does not hold this key, or someone in between altered it")
	}
	if a.status != StatusOK {
		return nil, nil, &StatusError{Status: a.status}
	}
	body := signed[3:]
	if len(body) < 32+nonceLen+4+1 {
		return nil, nil, malformed("answer body of %d bytes", len(body))
	}
	copy(a.pub[:], body)
	copy(a.nonce[:], body[32:])
	a.window = binary.BigEndian.Uint32(body[32+nonceLen:])
	addr, used, err := parseAddr(body[32+nonceLen+4:])
	if err != nil {
		return nil, nil, err
	}
	if 32+nonceLen+4+used != len(body) || addr.Host != "" {
		return nil, nil, malformed("answer's bound address")
	}
	a.bound = addr.AddrPort()
	return a, signed, nil
}

// transcriptHash is SHA-256 over OPEN and ACCEPT, each without its mac.
func transcriptHash(open, accept []byte) []byte {
	h := sha256.New()
	h.Write(open)
	h.Write(accept)
	return h.Sum(nil)
}

// sharedSecret computes X25519 and refuses the all-zero result.
func sharedSecret(priv *ecdh.PrivateKey, peer []byte) ([]byte, error) {
	pub, err := ecdh.X25519().NewPublicKey(peer)
	if err != nil {
		return nil, &StatusError{Status: StatusMalformed, Text: "bad X25519 public key"}
	}
	z, err := priv.ECDH(pub)
	if err != nil {
		return nil, &StatusError{Status: StatusMalformed, Text: "X25519: " + err.Error()}
	}
	return z, nil
}

// clientOpen runs the client's side of the OPEN exchange on rw (§4).
func clientOpen(rw io.ReadWriter, psk []byte, keyID string, dst Addr, local uint8, backup bool, window uint32, now time.Time) (sessionKeys, *accept, error) {
	priv, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return sessionKeys{}, nil, fmt.Errorf("generating a key: %w", err)
	}
	o := &openRequest{backup: backup, local: local, time: now.Unix(), keyID: keyID, dst: dst, window: window}
	copy(o.pub[:], priv.PublicKey().Bytes())
	if _, err := rand.Read(o.nonce[:]); err != nil {
		return sessionKeys{}, nil, fmt.Errorf("generating a nonce: %w", err)
	}
	if _, err := rw.Write(encodeOpen(o, psk)); err != nil {
		return sessionKeys{}, nil, fmt.Errorf("sending OPEN: %w", err)
	}
	a, signed, err := readAccept(rw, append(o.raw, o.mac[:]...), psk)
	if err != nil {
		return sessionKeys{}, nil, err
	}
	z, err := sharedSecret(priv, a.pub[:])
	if err != nil {
		return sessionKeys{}, nil, err
	}
	keys, err := deriveKeys(psk, z, transcriptHash(o.raw, signed))
	return keys, a, err
}

// verifyOpen checks an OPEN's mac and time (§4, steps 2–3, without the
// replay cache).
func verifyOpen(o *openRequest, psk []byte, now time.Time) error {
	want := mac(psk, []byte("mpx1 open"), o.raw)
	if !hmac.Equal(want[:], o.mac[:]) {
		return &StatusError{Status: StatusAuthFailed, Text: "wrong mac for key id " + o.keyID}
	}
	skew := now.Sub(time.Unix(o.time, 0))
	if skew > clockSkew || skew < -clockSkew {
		return &StatusError{Status: StatusReplayed, Text: fmt.Sprintf("client clock %v off", skew.Round(time.Second))}
	}
	return nil
}

// serverAccept prepares ACCEPT for a verified OPEN and derives the keys;
// the caller sends msg once the session can be joined.
func serverAccept(o *openRequest, psk []byte, window uint32, bound netip.AddrPort) (sessionKeys, []byte, error) {
	priv, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return sessionKeys{}, nil, fmt.Errorf("generating a key: %w", err)
	}
	z, err := sharedSecret(priv, o.pub[:])
	if err != nil {
		return sessionKeys{}, nil, err
	}
	a := &accept{status: StatusOK, window: window, bound: bound}
	copy(a.pub[:], priv.PublicKey().Bytes())
	if _, err := rand.Read(a.nonce[:]); err != nil {
		return sessionKeys{}, nil, fmt.Errorf("generating a nonce: %w", err)
	}
	open := append(o.raw[:len(o.raw):len(o.raw)], o.mac[:]...)
	msg, signed := encodeAccept(a, open, psk)
	keys, err := deriveKeys(psk, z, transcriptHash(o.raw, signed))
	return keys, msg, err
}

// serverRefuse sends a refusal; psk is nil when the client did not
// authenticate.
func serverRefuse(w io.Writer, o *openRequest, psk []byte, s Status) error {
	var open []byte
	if o != nil {
		open = append(o.raw[:len(o.raw):len(o.raw)], o.mac[:]...)
	}
	msg, _ := encodeAccept(&accept{status: s}, open, psk)
	_, err := w.Write(msg)
	return err
}

// joinRequest is a JOIN (§5).
type joinRequest struct {
	backup      bool
	token       uint64
	nonce       [nonceLen]byte
	local       uint8
	remote      uint8
	generation  uint32
	raw         [joinMsgLen]byte
	serverNonce [nonceLen]byte
}

func (j *joinRequest) encode() []byte {
	b := j.raw[:0]
	b = append(b, magic...)
	b = append(b, version, msgJoin)
	var flags byte
	if j.backup {
		flags = flagBackup
	}
	b = append(b, flags)
	b = binary.BigEndian.AppendUint64(b, j.token)
	b = append(b, j.nonce[:]...)
	b = append(b, j.local, j.remote)
	binary.BigEndian.AppendUint32(b, j.generation)
	return j.raw[:]
}

// readJoin reads the rest of a JOIN whose first five bytes are in raw.
func readJoin(r io.Reader, raw []byte) (*joinRequest, error) {
	raw, err := readN(r, raw, joinMsgLen-len(raw))
	if err != nil {
		return nil, err
	}
	j := &joinRequest{}
	copy(j.raw[:], raw)
	if raw[5]&^flagBackup != 0 {
		return nil, &StatusError{Status: StatusMalformed, Text: fmt.Sprintf("JOIN flags 0x%02x", raw[5])}
	}
	j.backup = raw[5]&flagBackup != 0
	j.token = binary.BigEndian.Uint64(raw[6:])
	copy(j.nonce[:], raw[14:])
	j.local, j.remote = raw[30], raw[31]
	j.generation = binary.BigEndian.Uint32(raw[32:])
	return j, nil
}

func joinMAC(kj *[32]byte, who string, first, second []byte, msg []byte) [macLen]byte {
	return mac(kj[:], []byte(who), first, second, msg)
}

// clientJoin runs the client's side of a JOIN on rw.
func clientJoin(rw io.ReadWriter, keys *sessionKeys, j *joinRequest) error {
	j.token = keys.token
	if _, err := rand.Read(j.nonce[:]); err != nil {
		return fmt.Errorf("generating a nonce: %w", err)
	}
	msg := j.encode()
	if _, err := rw.Write(msg); err != nil {
		return fmt.Errorf("sending JOIN: %w", err)
	}
	var b [1 + nonceLen + 16]byte
	if _, err := io.ReadFull(rw, b[:1]); err != nil {
		return fmt.Errorf("reading the JOIN challenge: %w", unexpected(err))
	}
	if s := Status(b[0]); s != StatusOK {
		return &StatusError{Status: s, Unauthenticated: true}
	}
	if _, err := io.ReadFull(rw, b[1:]); err != nil {
		return fmt.Errorf("reading the JOIN challenge: %w", unexpected(err))
	}
	copy(j.serverNonce[:], b[1:])
	want := joinMAC(&keys.join, "S", j.serverNonce[:], j.nonce[:], msg)
	if !hmac.Equal(want[:16], b[1+nonceLen:]) {
		return errors.New("the converter's JOIN challenge has a wrong HMAC: it does not know this session")
	}
	proof := joinMAC(&keys.join, "C", j.nonce[:], j.serverNonce[:], msg)
	if _, err := rw.Write(proof[:]); err != nil {
		return fmt.Errorf("sending the JOIN proof: %w", err)
	}
	if _, err := io.ReadFull(rw, b[:1]); err != nil {
		return fmt.Errorf("reading the JOIN result: %w", unexpected(err))
	}
	if s := Status(b[0]); s != StatusOK {
		return &StatusError{Status: s}
	}
	return nil
}

// serverChallenge sends the CHALLENGE for a JOIN of a known session and
// checks the PROOF; the caller sends the RESULT.
func serverChallenge(rw io.ReadWriter, kj *[32]byte, j *joinRequest) error {
	if _, err := rand.Read(j.serverNonce[:]); err != nil {
		return fmt.Errorf("generating a nonce: %w", err)
	}
	m := joinMAC(kj, "S", j.serverNonce[:], j.nonce[:], j.raw[:])
	var b [1 + nonceLen + 16]byte
	copy(b[1:], j.serverNonce[:])
	copy(b[1+nonceLen:], m[:16])
	if _, err := rw.Write(b[:]); err != nil {
		return fmt.Errorf("sending the JOIN challenge: %w", err)
	}
	var proof [macLen]byte
	if _, err := io.ReadFull(rw, proof[:]); err != nil {
		return fmt.Errorf("reading the JOIN proof: %w", unexpected(err))
	}
	want := joinMAC(kj, "C", j.nonce[:], j.serverNonce[:], j.raw[:])
	if !hmac.Equal(want[:], proof[:]) {
		return &StatusError{Status: StatusBadHMAC}
	}
	return nil
}
