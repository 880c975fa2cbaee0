package api_test

import (
	"context"
	"testing"
	"time"

	"github.com/mptcpd/mptcpd/api"
	"github.com/mptcpd/mptcpd/events"
	pb "github.com/mptcpd/mptcpd/proto/mptcpd/v1"
)

// inFlight bounds the events published but not yet received, well below
// api.WatchBuffer, so the watcher is never dropped: the benchmark measures
// how fast events are delivered, not how fast they can be published.
const inFlight = api.WatchBuffer / 4

// produce publishes n events on b, cycling through evs, never more than
// inFlight ahead of the consumer, which takes a token from credit for
// every event it receives. It stops early when stop is closed.
func produce(b *events.Broker, evs []events.Event, n int, credit chan struct{}, stop <-chan struct{}) {
	for i := range n {
		select {
		case credit <- struct{}{}:
		case <-stop:
			return
		}
		b.Publish(evs[i%len(evs)])
	}
}

// BenchmarkWatchThroughput measures the events per second a Watch client
// receives over the unix socket, against a baseline of the same events
// read straight from a broker subscription. ns/op is the gRPC path's time
// per event.
func BenchmarkWatchThroughput(b *testing.B) {
	evs := make([]events.Event, 1024)
	for i := range evs {
		evs[i] = subflowEvent(uint32(0x10000000+i), i)
	}

	backend := newFakeBackend()
	_, client := startUnix(b, backend)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := client.Watch(ctx, &pb.WatchRequest{})
	if err != nil {
		b.Fatal(err)
	}
	recvUntilSnapshotEnd(b, stream)
	waitSubscribers(b, &backend.broker, 1)

	// Through gRPC.
	credit := make(chan struct{}, inFlight)
	stop := make(chan struct{})
	done := make(chan struct{})
	b.ResetTimer()
	start := time.Now()
	go func() {
		defer close(done)
		produce(&backend.broker, evs, b.N, credit, stop)
	}()
	for i := range b.N {
		r, err := stream.Recv()
		if err != nil {
			close(stop)
			<-done
			b.Fatalf("event %d: %v", i, err)
		}
		if r.GetSubflow() == nil {
			b.Fatalf("event %d has no subflow: %v", i, r)
		}
		<-credit
	}
	grpcTook := time.Since(start)
	b.StopTimer()
	<-done

	// Straight from the broker.
	var direct events.Broker
	sub := direct.Subscribe(api.WatchBuffer)
	defer sub.Close()
	done = make(chan struct{})
	start = time.Now()
	go func() {
		defer close(done)
		produce(&direct, evs, b.N, credit, stop)
	}()
	for i := range b.N {
		e, ok := <-sub.C()
		if !ok {
			close(stop)
			<-done
			b.Fatalf("event %d: subscription ended: %v", i, sub.Err())
		}
		if e.Kernel == nil {
			b.Fatalf("event %d has no kernel event", i)
		}
		<-credit
	}
	directTook := time.Since(start)
	<-done

	grpcRate := float64(b.N) / grpcTook.Seconds()
	directRate := float64(b.N) / directTook.Seconds()
	b.ReportMetric(grpcRate, "grpc-events/s")
	b.ReportMetric(directRate, "broker-events/s")
	b.ReportMetric(directRate/grpcRate, "broker/grpc")
}
