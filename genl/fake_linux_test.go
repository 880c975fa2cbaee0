package genl

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/genetlink/genltest"
	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nltest"
	"golang.org/x/sys/unix"
)

// Fakes at the package's two seams: request/response connections (genltest,
// or fakeKernel when the kernel's extended-ACK text matters) and the event
// stream (eventSocket, which genltest cannot model: it has no multicast
// groups and no deadlines).

// newGenltestClient returns a Client over a genltest connection that serves
// family and passes every other request to fn. Subscriptions cannot be
// opened from it.
func newGenltestClient(t *testing.T, family genetlink.Family, fn genltest.Func) *Client {
	t.Helper()
	conn := genltest.Dial(genltest.ServeFamily(family, fn))
	c, err := initClient(conn, noDial(t), buildOptions(nil))
	if err != nil {
		t.Fatalf("initClient: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// noDial is a dial function that fails the test: the code under test must
// not open another connection.
func noDial(t *testing.T) func() (*genetlink.Conn, error) {
	return func() (*genetlink.Conn, error) {
		t.Errorf("unexpected dial of a second netlink connection")
		return nil, errors.New("no dial in this test")
	}
}

// kernelError is returned by a fakeKernel handler to refuse a request the
// way the kernel does.
type kernelError struct {
	errno unix.Errno
	msg   string // extended-ACK text, may be empty
}

func (e kernelError) Error() string { return fmt.Sprintf("kernel refuses: %v %q", e.errno, e.msg) }

// fakeKernel answers requests on a netlink socket as the kernel's generic
// netlink does on a Strict socket: GETFAMILY of the controller from family,
// everything else through handler. Replies to dumps are multi-part and end
// with NLMSG_DONE; an acknowledged request without replies gets an ACK; a
// kernelError becomes an NLMSG_ERROR carrying the negative errno, the
// request, and the text as NLMSGERR_ATTR_MSG with NLM_F_ACK_TLVS set. So the
// netlink library parses the error exactly as it parses the kernel's.
//
// genltest cannot produce such a reply: an error its Func returns reaches the
// caller wrapped in further errors that hide the extended-ACK text.
type fakeKernel struct {
	t       *testing.T
	family  genetlink.Family
	handler genltest.Func
}

// dialFakeKernel returns a connection to a fakeKernel.
func dialFakeKernel(t *testing.T, family genetlink.Family, handler genltest.Func) *genetlink.Conn {
	t.Helper()
	k := &fakeKernel{t: t, family: family, handler: handler}
	return genetlink.NewConn(netlink.NewConn(&kernelSocket{serve: k.serve}, nltest.PID))
}

// kernelSocket is the socket of a connection to a fakeKernel. As the
// kernel's, it answers each request when it is sent and keeps the answer
// until it is read, so that requests sent one after the other, before the
// answers are read, each get their own. As nltest's, it gives a multi-part
// answer in two reads.
type kernelSocket struct {
	serve nltest.Func

	mu      sync.Mutex
	answers [][]netlink.Message
}

func (s *kernelSocket) Close() error { return nil }

func (s *kernelSocket) Send(m netlink.Message) error {
	return s.SendMessages([]netlink.Message{m})
}

func (s *kernelSocket) SendMessages(msgs []netlink.Message) error {
	for _, m := range msgs {
		answer, err := s.serve([]netlink.Message{m})
		if err != nil {
			return err
		}
		s.mu.Lock()
		s.answers = append(s.answers, answer)
		s.mu.Unlock()
	}
	return nil
}

func (s *kernelSocket) Receive() ([]netlink.Message, error) {
	var msgs []netlink.Message
	for m, err := range s.ReceiveIter() {
		if err != nil {
			return nil, err
		}
		msgs = append(msgs, m)
	}
	return msgs, nil
}

func (s *kernelSocket) ReceiveIter() iter.Seq2[netlink.Message, error] {
	return func(yield func(netlink.Message, error) bool) {
		s.mu.Lock()
		if len(s.answers) == 0 {
			s.mu.Unlock()
			yield(netlink.Message{}, errors.New("fake kernel: nothing to read"))
			return
		}
		answer := s.answers[0]
		if len(answer) > 1 && answer[0].Header.Flags&netlink.Multi != 0 {
			half := (len(answer) + 1) / 2
			answer, s.answers[0] = answer[:half], answer[half:]
		} else {
			s.answers = s.answers[1:]
		}
		s.mu.Unlock()
		for _, m := range answer {
			if !yield(m, nil) {
				return
			}
		}
	}
}

// newFakeKernelClient returns a Client of a fakeKernel.
func newFakeKernelClient(t *testing.T, handler genltest.Func) *Client {
	t.Helper()
	c, err := initClient(dialFakeKernel(t, testFamily(), handler), noDial(t), buildOptions(nil))
	if err != nil {
		t.Fatalf("initClient: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func (k *fakeKernel) serve(reqs []netlink.Message) ([]netlink.Message, error) {
	if len(reqs) == 0 {
		// A Receive without a request: nothing more to read.
		return nil, io.EOF
	}
	if len(reqs) != 1 {
		return nil, fmt.Errorf("fake kernel: want one request, got %d", len(reqs))
	}
	req := reqs[0]
	var greq genetlink.Message
	if err := greq.UnmarshalBinary(req.Data); err != nil {
		return nil, fmt.Errorf("fake kernel: %v", err)
	}

	var (
		replies []genetlink.Message
		err     error
	)
	if req.Header.Type == unix.GENL_ID_CTRL && greq.Header.Command == unix.CTRL_CMD_GETFAMILY {
		replies, err = k.getFamily(greq)
	} else {
		replies, err = k.handler(greq, req)
	}
	var kerr kernelError
	switch {
	case errors.As(err, &kerr):
		return []netlink.Message{errorMessage(req, kerr)}, nil
	case err != nil:
		return nil, err
	}

	out := make([]netlink.Message, 0, len(replies)+1)
	dump := req.Header.Flags&netlink.Dump == netlink.Dump
	for _, r := range replies {
		b, err := r.MarshalBinary()
		if err != nil {
			return nil, err
		}
		m := netlink.Message{Header: netlink.Header{Type: req.Header.Type, Sequence: req.Header.Sequence, PID: req.Header.PID}, Data: b}
		if dump {
			m.Header.Flags |= netlink.Multi
		}
		out = append(out, m)
	}
	switch {
	case dump:
		out = append(out, netlink.Message{
			Header: netlink.Header{Type: netlink.Done, Flags: netlink.Multi, Sequence: req.Header.Sequence, PID: req.Header.PID},
			Data:   make([]byte, 4), // errno 0
		})
	case len(out) == 0 && req.Header.Flags&netlink.Acknowledge != 0:
		out = append(out, ackMessage(req))
	}
	return out, nil
}

// getFamily answers CTRL_CMD_GETFAMILY: the family if the name matches,
// ENOENT otherwise, as the controller does.
func (k *fakeKernel) getFamily(greq genetlink.Message) ([]genetlink.Message, error) {
	ad, err := netlink.NewAttributeDecoder(greq.Data)
	if err != nil {
		return nil, err
	}
	var name string
	for ad.Next() {
		if ad.Type() == unix.CTRL_ATTR_FAMILY_NAME {
			name = ad.String()
		}
	}
	if err := ad.Err(); err != nil {
		return nil, err
	}
	if name != k.family.Name {
		return nil, kernelError{errno: unix.ENOENT}
	}
	ae := netlink.NewAttributeEncoder()
	ae.Uint16(unix.CTRL_ATTR_FAMILY_ID, k.family.ID)
	ae.String(unix.CTRL_ATTR_FAMILY_NAME, k.family.Name)
	ae.Uint32(unix.CTRL_ATTR_VERSION, uint32(k.family.Version))
	ae.Nested(unix.CTRL_ATTR_MCAST_GROUPS, func(nae *netlink.AttributeEncoder) error {
		for i, g := range k.family.Groups {
			nae.Nested(uint16(i+1), func(gae *netlink.AttributeEncoder) error {
				gae.Uint32(unix.CTRL_ATTR_MCAST_GRP_ID, g.ID)
				gae.String(unix.CTRL_ATTR_MCAST_GRP_NAME, g.Name)
				return nil
			})
		}
		return nil
	})
	return []genetlink.Message{{
		Header: genetlink.Header{Command: unix.CTRL_CMD_NEWFAMILY, Version: 2},
		Data:   mustEncode(k.t, ae),
	}}, nil
}

// errorMessage returns the NLMSG_ERROR the kernel sends to refuse req on a
// socket with NETLINK_EXT_ACK set: the negative errno, the whole request
// (NETLINK_CAP_ACK is off), then the extended-ACK attributes.
func errorMessage(req netlink.Message, kerr kernelError) netlink.Message {
	reqBytes, err := req.MarshalBinary()
	if err != nil {
		panic(fmt.Sprintf("marshalling a request that was just sent: %v", err))
	}
	data := binary.NativeEndian.AppendUint32(nil, uint32(-int32(kerr.errno)))
	data = append(data, reqBytes...)
	var flags netlink.HeaderFlags
	if kerr.msg != "" {
		flags |= netlink.AcknowledgeTLVs
		tlvs, err := netlink.MarshalAttributes([]netlink.Attribute{{
			Type: unix.NLMSGERR_ATTR_MSG,
			Data: append([]byte(kerr.msg), 0),
		}})
		if err != nil {
			panic(fmt.Sprintf("marshalling the extended ACK: %v", err))
		}
		data = append(data, tlvs...)
	}
	return netlink.Message{
		Header: netlink.Header{Type: netlink.Error, Flags: flags, Sequence: req.Header.Sequence, PID: req.Header.PID},
		Data:   data,
	}
}

// ackMessage returns the ACK (NLMSG_ERROR with errno 0 and the request's
// header) of a successful acknowledged request.
func ackMessage(req netlink.Message) netlink.Message {
	hdr, err := netlink.Message{Header: req.Header}.MarshalBinary()
	if err != nil {
		panic(fmt.Sprintf("marshalling a request header: %v", err))
	}
	return netlink.Message{
		Header: netlink.Header{Type: netlink.Error, Flags: netlink.Capped, Sequence: req.Header.Sequence, PID: req.Header.PID},
		Data:   append(make([]byte, 4), hdr...),
	}
}

// eventSocket is a netlink.Socket that carries multicast events: it records
// the groups joined and the buffer size set, delivers the batches a test
// pushes, and honours read deadlines and Close the way a real socket does
// (a Receive blocked in it returns).
type eventSocket struct {
	t       *testing.T
	batches chan eventBatch

	mu       sync.Mutex
	groups   []uint32
	readBuf  int
	deadline chan struct{} // closed when the read deadline has passed
	closed   chan struct{}
	isClosed bool
}

// eventBatch is what one Receive returns: messages, or an error.
type eventBatch struct {
	msgs []netlink.Message
	err  error
}

func newEventSocket(t *testing.T) *eventSocket {
	return &eventSocket{
		t:        t,
		batches:  make(chan eventBatch, 16),
		deadline: make(chan struct{}),
		closed:   make(chan struct{}),
	}
}

// push queues events for the next Receive, marshalled as the kernel
// multicasts them on family ID familyID.
func (s *eventSocket) push(familyID uint16, events ...genetlink.Message) {
	s.t.Helper()
	msgs := make([]netlink.Message, 0, len(events))
	for _, ev := range events {
		b, err := ev.MarshalBinary()
		if err != nil {
			s.t.Fatalf("marshalling an event: %v", err)
		}
		msgs = append(msgs, netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(familyID)}, Data: b})
	}
	s.batches <- eventBatch{msgs: msgs}
}

// pushErr makes the next Receive of the socket fail with err.
func (s *eventSocket) pushErr(err error) { s.batches <- eventBatch{err: err} }

func (s *eventSocket) Receive() ([]netlink.Message, error) {
	s.mu.Lock()
	deadline, closed := s.deadline, s.closed
	s.mu.Unlock()
	select {
	case b := <-s.batches:
		return b.msgs, b.err
	case <-deadline:
		return nil, os.ErrDeadlineExceeded
	case <-closed:
		return nil, os.ErrClosed
	}
}

func (s *eventSocket) ReceiveIter() iter.Seq2[netlink.Message, error] {
	return func(yield func(netlink.Message, error) bool) {
		msgs, err := s.Receive()
		if err != nil {
			yield(netlink.Message{}, err)
			return
		}
		for _, m := range msgs {
			if !yield(m, nil) {
				return
			}
		}
	}
}

func (s *eventSocket) Send(netlink.Message) error {
	s.t.Errorf("unexpected send on an event socket")
	return errors.New("send on an event socket")
}

func (s *eventSocket) SendMessages([]netlink.Message) error {
	s.t.Errorf("unexpected send on an event socket")
	return errors.New("send on an event socket")
}

func (s *eventSocket) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.isClosed {
		return os.ErrClosed
	}
	s.isClosed = true
	close(s.closed)
	return nil
}

func (s *eventSocket) JoinGroup(group uint32) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.groups = append(s.groups, group)
	return nil
}

func (s *eventSocket) LeaveGroup(uint32) error { return nil }

func (s *eventSocket) SetDeadline(t time.Time) error { return s.SetReadDeadline(t) }

func (s *eventSocket) SetWriteDeadline(time.Time) error { return nil }

// SetReadDeadline supports what the package needs: a deadline in the past
// unblocks Receive; the zero time clears it.
func (s *eventSocket) SetReadDeadline(t time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case t.IsZero():
		s.deadline = make(chan struct{})
	case !t.After(time.Now()):
		select {
		case <-s.deadline:
		default:
			close(s.deadline)
		}
	default:
		s.t.Errorf("eventSocket: future read deadlines are not modelled (got %v)", t)
	}
	return nil
}

func (s *eventSocket) SetReadBuffer(bytes int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.readBuf = bytes
	return nil
}

func (s *eventSocket) SetWriteBuffer(int) error { return nil }

func (s *eventSocket) ReadBuffer() (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.readBuf, nil
}

func (s *eventSocket) WriteBuffer() (int, error) { return 0, nil }

// state returns the groups joined, the read buffer set and whether the
// socket is closed.
func (s *eventSocket) state() (groups []uint32, readBuf int, closed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]uint32(nil), s.groups...), s.readBuf, s.isClosed
}
