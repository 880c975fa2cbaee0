package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	mptcpdv1 "github.com/mptcpd/mptcpd/proto/mptcpd/v1"
)

// runMonitor runs monitor until it has printed a line per event, then
// interrupts it as Ctrl-C would.
func runMonitor(t *testing.T, args ...string) result {
	t.Helper()
	sock := serveFake(t, &fakeServer{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out := &lineWriter{n: len(fakeEvents()), done: cancel}
	res := runCLIContext(ctx, t, sock, "", out, append([]string{"monitor"}, args...)...)
	if res.code != 0 || res.stderr != "" {
		t.Fatalf("monitor %s, interrupted: exit %d, stderr:\n%s", strings.Join(args, " "), res.code, res.stderr)
	}
	return res
}

// TestMonitorTable checks the order: the snapshot's lines, the marker,
// then the live events.
func TestMonitorTable(t *testing.T) {
	lines := strings.Split(strings.TrimSuffix(runMonitor(t).stdout, "\n"), "\n")
	events := fakeEvents()
	if len(lines) != len(events) {
		t.Fatalf("%d lines for %d events:\n%s", len(lines), len(events), strings.Join(lines, "\n"))
	}
	for i, ev := range events {
		line := lines[i]
		switch {
		case ev.Kind == mptcpdv1.EventKind_EVENT_KIND_SNAPSHOT_END:
			if line != snapshotEndLine {
				t.Errorf("line %d = %q, want the end of the snapshot", i, line)
			}
		case ev.Snapshot != strings.HasPrefix(line, "snapshot "):
			t.Errorf("line %d = %q: snapshot mark wrong (event snapshot=%v)", i, line, ev.Snapshot)
		case !strings.Contains(line, " "+kindName(ev.Kind)+" "):
			t.Errorf("line %d = %q, want kind %s", i, line, kindName(ev.Kind))
		}
	}
}

// TestMonitorJSON checks that -o json gives one object per line, each the
// event sent.
func TestMonitorJSON(t *testing.T) {
	lines := strings.Split(strings.TrimSuffix(runMonitor(t, "-o", "json").stdout, "\n"), "\n")
	events := fakeEvents()
	if len(lines) != len(events) {
		t.Fatalf("%d lines for %d events", len(lines), len(events))
	}
	for i, line := range lines {
		got := &mptcpdv1.WatchResponse{}
		if err := protojson.Unmarshal([]byte(line), got); err != nil {
			t.Fatalf("line %d does not parse: %v\n%s", i, err, line)
		}
		if !proto.Equal(got, events[i]) {
			t.Errorf("line %d = %v, want %v", i, got, events[i])
		}
	}
}

// TestMonitorStreamEnds checks that a stream mptcpd ends is reported.
func TestMonitorStreamEnds(t *testing.T) {
	res := runCLI(t, serveFake(t, &fakeServer{watchEnds: true}), "", "monitor")
	checkOneError(t, res, exitUnreachable, "mptcpd ended the event stream")
	if !strings.Contains(res.stdout, snapshotEndLine) {
		t.Errorf("events before the end are missing:\n%s", res.stdout)
	}
}

func TestParseKind(t *testing.T) {
	for _, s := range []string{"subflow-closed", "SUBFLOW_CLOSED", "subflow_closed", "EVENT_KIND_SUBFLOW_CLOSED"} {
		if k, err := parseKind(s); err != nil || k != mptcpdv1.EventKind_EVENT_KIND_SUBFLOW_CLOSED {
			t.Errorf("parseKind(%q) = %v, %v", s, k, err)
		}
	}
	for _, s := range []string{"", "unspecified", "closed"} {
		if _, err := parseKind(s); err == nil {
			t.Errorf("parseKind(%q) succeeded", s)
		}
	}
	for _, name := range kindNames() {
		k, err := parseKind(name)
		if err != nil || kindName(k) != name {
			t.Errorf("kind %q does not read back: %v, %v", name, k, err)
		}
	}
}
