package load

import (
	"bytes"
	"context"
	"io"
	"testing"
)

// BenchmarkSend and BenchmarkReceive measure the load tool's own cost per
// byte, without a network: what it adds to the CPU time of a transfer.
func BenchmarkSend(b *testing.B) {
	const records = 16 << 10 // 16 MiB
	b.SetBytes(records * DefaultSize)
	for b.Loop() {
		if _, err := Send(context.Background(), io.Discard, SendConfig{Records: records}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReceive(b *testing.B) {
	const records = 16 << 10
	var stream bytes.Buffer
	if _, err := Send(context.Background(), &stream, SendConfig{Records: records}); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(records * DefaultSize)
	for b.Loop() {
		if _, err := Receive(context.Background(), bytes.NewReader(stream.Bytes()), RecvConfig{Records: records}); err != nil {
			b.Fatal(err)
		}
	}
}
