package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	mptcpdv1 "github.com/mptcpd/mptcpd/proto/mptcpd/v1"
)

func flags(f ...mptcpdv1.EndpointFlag) []mptcpdv1.EndpointFlag { return f }

const (
	flagSignal   = mptcpdv1.EndpointFlag_ENDPOINT_FLAG_SIGNAL
	flagSubflow  = mptcpdv1.EndpointFlag_ENDPOINT_FLAG_SUBFLOW
	flagBackup   = mptcpdv1.EndpointFlag_ENDPOINT_FLAG_BACKUP
	flagFullmesh = mptcpdv1.EndpointFlag_ENDPOINT_FLAG_FULLMESH
	flagLaminar  = mptcpdv1.EndpointFlag_ENDPOINT_FLAG_LAMINAR
)

// TestRequests checks that each command sends what its words say.
func TestRequests(t *testing.T) {
	policyFile := filepath.Join(t.TempDir(), "policy.toml")
	if err := os.WriteFile(policyFile, []byte("mode = \"userspace\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	key := &mptcpdv1.SubflowKey{Token: 0x1f2e3d4c, LocalAddress: "198.51.100.4", LocalPort: 51000, RemoteAddress: "203.0.113.5", RemotePort: 443}
	for _, tc := range []struct {
		args  []string
		stdin string
		want  []proto.Message
	}{
		{
			args: []string{"status"},
			want: []proto.Message{&mptcpdv1.GetStatusRequest{}},
		},
		{
			args: []string{"endpoint", "add", "192.0.2.20", "port", "8080", "dev", "eth1", "id", "9", "signal", "backup"},
			want: []proto.Message{&mptcpdv1.CreateEndpointRequest{Address: "192.0.2.20", Port: 8080, InterfaceName: "eth1", Id: 9, Flags: flags(flagSignal, flagBackup)}},
		},
		{
			args: []string{"endpoint", "add", "2001:db8::20", "laminar", "subflow,fullmesh"},
			want: []proto.Message{&mptcpdv1.CreateEndpointRequest{Address: "2001:db8::20", Flags: flags(flagSubflow, flagFullmesh, flagLaminar)}},
		},
		{
			args: []string{"endpoint", "add", "::ffff:192.0.2.21", "subflow"},
			want: []proto.Message{&mptcpdv1.CreateEndpointRequest{Address: "192.0.2.21", Flags: flags(flagSubflow)}},
		},
		{
			args: []string{"endpoint", "delete", "id", "7"},
			want: []proto.Message{&mptcpdv1.DeleteEndpointRequest{Id: 7}},
		},
		{
			args: []string{"endpoint", "del", "7"},
			want: []proto.Message{&mptcpdv1.DeleteEndpointRequest{Id: 7}},
		},
		{
			args: []string{"endpoint", "change", "id", "3", "nobackup"},
			want: []proto.Message{&mptcpdv1.UpdateEndpointRequest{Id: 3, Backup: proto.Bool(false)}},
		},
		{
			args: []string{"endpoint", "change", "3", "fullmesh", "backup"},
			want: []proto.Message{&mptcpdv1.UpdateEndpointRequest{Id: 3, Backup: proto.Bool(true), Fullmesh: proto.Bool(true)}},
		},
		{
			args: []string{"endpoint", "show", "2"},
			want: []proto.Message{&mptcpdv1.GetEndpointRequest{Id: 2}},
		},
		{
			args: []string{"endpoint", "flush"},
			want: []proto.Message{&mptcpdv1.FlushEndpointsRequest{}},
		},
		{
			// The limit not given keeps its current value (3).
			args: []string{"limits", "set", "subflows", "4"},
			want: []proto.Message{&mptcpdv1.GetLimitsRequest{}, &mptcpdv1.SetLimitsRequest{Limits: &mptcpdv1.Limits{Subflows: 4, AddAddrAccepted: 3}}},
		},
		{
			args: []string{"limits", "set", "add_addr_accepted", "0", "subflows", "8"},
			want: []proto.Message{&mptcpdv1.SetLimitsRequest{Limits: &mptcpdv1.Limits{Subflows: 8, AddAddrAccepted: 0}}},
		},
		{
			args: []string{"connection", "list", "--listeners"},
			want: []proto.Message{
				&mptcpdv1.ListConnectionsRequest{Listeners: true},
				&mptcpdv1.ListConnectionsRequest{Listeners: true, PageToken: "2"},
			},
		},
		{
			args: []string{"connection", "show", "42"},
			want: []proto.Message{&mptcpdv1.GetConnectionRequest{Token: 42}},
		},
		{
			args: []string{"subflow", "add", "0x2A", "2001:db8::10", "[2001:db8:ff::1]:443"},
			want: []proto.Message{&mptcpdv1.CreateSubflowRequest{Token: 42, LocalAddress: "2001:db8::10", RemoteAddress: "2001:db8:ff::1", RemotePort: 443}},
		},
		{
			args: []string{"subflow", "add", "42", "192.0.2.10:5000", "203.0.113.5:443", "dev", "eth0", "backup", "id", "0"},
			want: []proto.Message{&mptcpdv1.CreateSubflowRequest{Token: 42, LocalAddress: "192.0.2.10", LocalPort: 5000, RemoteAddress: "203.0.113.5", RemotePort: 443, Backup: true, InterfaceName: "eth0"}},
		},
		{
			args: []string{"subflow", "delete", "0x1f2e3d4c", "198.51.100.4:51000", "203.0.113.5:443"},
			want: []proto.Message{&mptcpdv1.DestroySubflowRequest{Subflow: key}},
		},
		{
			args: []string{"subflow", "backup", "0x1f2e3d4c", "198.51.100.4:51000", "203.0.113.5:443", "on"},
			want: []proto.Message{&mptcpdv1.SetSubflowBackupRequest{Subflow: key, Backup: true}},
		},
		{
			args: []string{"announce", "42", "192.0.2.10", "port", "8443", "id", "5"},
			want: []proto.Message{&mptcpdv1.AnnounceRequest{Token: 42, Address: "192.0.2.10", Id: 5, Port: 8443}},
		},
		{
			args: []string{"withdraw", "42", "id", "5"},
			want: []proto.Message{&mptcpdv1.WithdrawRequest{Token: 42, Id: 5}},
		},
		{
			args: []string{"remove", "42", "5"},
			want: []proto.Message{&mptcpdv1.WithdrawRequest{Token: 42, Id: 5}},
		},
		{
			args: []string{"policy", "show"},
			want: []proto.Message{&mptcpdv1.GetPolicyRequest{}},
		},
		{
			args:  []string{"policy", "check", "-"},
			stdin: "mode = \"kernel\"\n",
			want:  []proto.Message{&mptcpdv1.ValidatePolicyRequest{Document: "mode = \"kernel\"\n"}},
		},
		{
			args: []string{"policy", "apply", policyFile, "--dry-run"},
			want: []proto.Message{&mptcpdv1.ApplyPolicyRequest{Document: "mode = \"userspace\"\n", DryRun: true}},
		},
		{
			args: []string{"policy", "apply", policyFile},
			want: []proto.Message{&mptcpdv1.ApplyPolicyRequest{Document: "mode = \"userspace\"\n"}},
		},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			f := &fakeServer{}
			res := runCLI(t, serveFake(t, f), tc.stdin, tc.args...)
			if res.code != 0 {
				t.Fatalf("exit %d, stderr:\n%s", res.code, res.stderr)
			}
			if diff := cmp.Diff(tc.want, f.requests(), protocmp.Transform()); diff != "" {
				t.Errorf("requests (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMonitorRequest(t *testing.T) {
	f := &fakeServer{}
	sock := serveFake(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out := &lineWriter{n: len(fakeEvents()), done: cancel}
	res := runCLIContext(ctx, t, sock, "", out, "monitor",
		"--kind", "subflow-established,SUBFLOW_CLOSED", "--kind", "EVENT_KIND_ANNOUNCED", "--token", "0x99", "--token", "7")
	if res.code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", res.code, res.stderr)
	}
	want := []proto.Message{&mptcpdv1.WatchRequest{
		Kinds: []mptcpdv1.EventKind{
			mptcpdv1.EventKind_EVENT_KIND_SUBFLOW_ESTABLISHED,
			mptcpdv1.EventKind_EVENT_KIND_SUBFLOW_CLOSED,
			mptcpdv1.EventKind_EVENT_KIND_ANNOUNCED,
		},
		Tokens: []uint32{0x99, 7},
	}}
	if diff := cmp.Diff(want, f.requests(), protocmp.Transform()); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}

// TestNetns checks that --netns NAME talks to that namespace's daemon.
func TestNetns(t *testing.T) {
	dir := shortTempDir(t)
	f := &fakeServer{}
	serveFakeAt(t, f, filepath.Join(dir, "mptcpd-blue.sock"))
	var stdout, stderr bytes.Buffer
	a := newApp(strings.NewReader(""), &stdout, &stderr)
	a.socketDir = dir
	if code := a.run(context.Background(), []string{"--netns", "blue", "limits", "show"}); code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr.String())
	}
	if got := len(f.requests()); got != 1 {
		t.Errorf("the daemon of netns blue got %d requests, want 1", got)
	}

	a = newApp(strings.NewReader(""), &stdout, &stderr)
	a.socketDir = dir
	stderr.Reset()
	if code := a.run(context.Background(), []string{"--netns", "red", "status"}); code != exitUnreachable {
		t.Errorf("netns without a daemon: exit %d, want %d", code, exitUnreachable)
	}
	if want := filepath.Join(dir, "mptcpd-red.sock"); !strings.Contains(stderr.String(), "no socket at "+want) {
		t.Errorf("stderr %q does not name %s", stderr.String(), want)
	}
}
