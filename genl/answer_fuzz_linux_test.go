package genl

import (
	"encoding/binary"
	"errors"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// answer is an NLMSG_ERROR datagram for seq carrying errno, with the
// extended acknowledgement's text when text is not empty.
func answer(seq uint32, errno int32, text string) []byte {
	var attrs []byte
	flags := uint16(0)
	if text != "" {
		flags = unix.NLM_F_ACK_TLVS
		attrs = appendAttr(nil, unix.NLMSGERR_ATTR_MSG, append([]byte(text), 0)...)
	}
	b := binary.NativeEndian.AppendUint32(nil, uint32(unix.NLMSG_HDRLEN+4+nlmsgHeaderLen+len(attrs)))
	b = binary.NativeEndian.AppendUint16(b, unix.NLMSG_ERROR)
	b = binary.NativeEndian.AppendUint16(b, flags)
	b = binary.NativeEndian.AppendUint32(b, seq)
	b = binary.NativeEndian.AppendUint32(b, 0)
	b = binary.NativeEndian.AppendUint32(b, uint32(-errno))
	b = append(b, make([]byte, nlmsgHeaderLen)...) // the request's header
	return append(b, attrs...)
}

func TestAnswerError(t *testing.T) {
	for _, tc := range []struct {
		name   string
		data   []byte
		is     error
		errno  syscall.Errno
		inText string
	}{
		{name: "acknowledgement", data: answer(1, 0, "")},
		{name: "refusal with text", data: answer(1, int32(unix.EBUSY), "address id already in use"), is: ErrIDInUse, errno: unix.EBUSY, inText: `kernel: "address id already in use"`},
		{name: "refusal without text", data: answer(1, int32(unix.EEXIST), ""), is: ErrExists, errno: unix.EEXIST},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msgs, err := syscall.ParseNetlinkMessage(tc.data)
			if err != nil || len(msgs) != 1 {
				t.Fatalf("ParseNetlinkMessage: %v, %d messages", err, len(msgs))
			}
			err = answerError("create endpoint", msgs[0])
			if tc.is == nil {
				if err != nil {
					t.Fatalf("answerError = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, tc.is) || !errors.Is(err, tc.errno) {
				t.Errorf("answerError = %v, want %v and %v", err, tc.is, tc.errno)
			}
			if tc.inText != "" && !strings.Contains(err.Error(), tc.inText) {
				t.Errorf("answerError = %q, want it to hold %s", err, tc.inText)
			}
		})
	}
	// Not an acknowledgement at all.
	if err := answerError("create endpoint", syscall.NetlinkMessage{Header: syscall.NlMsghdr{Type: 30}}); err == nil {
		t.Error("answerError of a message of type 30 = nil, want an error")
	}
}

// FuzzAnswerError: whatever the kernel's answer datagram holds, reading it
// neither panics nor takes a refusal for an acknowledgement.
func FuzzAnswerError(f *testing.F) {
	f.Add(answer(1, 0, ""))
	f.Add(answer(7, int32(unix.EINVAL), "limit greater than maximum (8)"))
	f.Add(answer(2, int32(unix.EEXIST), ""))
	f.Fuzz(func(t *testing.T, data []byte) {
		msgs, err := syscall.ParseNetlinkMessage(data)
		if err != nil {
			return
		}
		for _, m := range msgs {
			err := answerError("fuzz", m)
			if m.Header.Type == unix.NLMSG_ERROR && len(m.Data) >= 4 && binary.NativeEndian.Uint32(m.Data) != 0 && err == nil {
				t.Fatalf("a refusal (errno field %#x) read as an acknowledgement", binary.NativeEndian.Uint32(m.Data))
			}
		}
	})
}
