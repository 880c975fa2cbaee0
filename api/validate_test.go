package api_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/mptcpd/mptcpd/api"
	"github.com/mptcpd/mptcpd/genl"
	pb "github.com/mptcpd/mptcpd/proto/mptcpd/v1"
)

// rpcCall makes one call on a client and returns its error.
type rpcCall func(ctx context.Context, c pb.MptcpdServiceClient) error

// unary makes an rpcCall of a unary method (a method expression of the
// client interface) with req.
func unary[Req, Resp any](rpc func(pb.MptcpdServiceClient, context.Context, Req, ...grpc.CallOption) (Resp, error), req Req) rpcCall {
	return func(ctx context.Context, c pb.MptcpdServiceClient) error {
		_, err := rpc(c, ctx, req)
		return err
	}
}

// watch makes an rpcCall of Watch that returns the stream's first error;
// it reads at most a few messages, enough to get past the snapshot's end.
func watch(req *pb.WatchRequest) rpcCall {
	return func(ctx context.Context, c pb.MptcpdServiceClient) error {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		s, err := c.Watch(ctx, req)
		if err != nil {
			return err
		}
		for range 16 {
			r, err := s.Recv()
			if err != nil {
				return err
			}
			if r.GetKind() == pb.EventKind_EVENT_KIND_SNAPSHOT_END {
				return nil
			}
		}
		return errors.New("no SNAPSHOT_END in the first 16 messages")
	}
}

// Valid requests of each kind, changed by mod.

func createEndpoint(mod func(*pb.CreateEndpointRequest)) *pb.CreateEndpointRequest {
	r := &pb.CreateEndpointRequest{Address: "192.0.2.1", Flags: []pb.EndpointFlag{pb.EndpointFlag_ENDPOINT_FLAG_SUBFLOW}}
	mod(r)
	return r
}

func announce(mod func(*pb.AnnounceRequest)) *pb.AnnounceRequest {
	r := &pb.AnnounceRequest{Token: 7, Address: "192.0.2.1", Id: 2}
	mod(r)
	return r
}

func createSubflow(mod func(*pb.CreateSubflowRequest)) *pb.CreateSubflowRequest {
	r := &pb.CreateSubflowRequest{Token: 7, LocalAddress: "192.0.2.1", LocalId: 1, RemoteAddress: "198.51.100.1", RemotePort: 443}
	mod(r)
	return r
}

func subflowKey(mod func(*pb.SubflowKey)) *pb.SubflowKey {
	k := &pb.SubflowKey{Token: 7, LocalAddress: "192.0.2.1", LocalPort: 40000, RemoteAddress: "198.51.100.1", RemotePort: 443}
	mod(k)
	return k
}

// same leaves a request as it is.
func same[T any](T) {}

func ptr[T any](v T) *T { return &v }

// validCalls are a good request for every RPC, and the backend call each
// makes. The bad-input cases below change one field of these, so a
// refusal is the field's doing.
var validCalls = []struct {
	name    string
	call    rpcCall
	backend string
}{
	{"GetStatus", unary(pb.MptcpdServiceClient.GetStatus, &pb.GetStatusRequest{}), "Status"},
	{"ListEndpoints", unary(pb.MptcpdServiceClient.ListEndpoints, &pb.ListEndpointsRequest{}), "Endpoints"},
	{"GetEndpoint", unary(pb.MptcpdServiceClient.GetEndpoint, &pb.GetEndpointRequest{Id: 255}), "Endpoint"},
	{"CreateEndpoint", unary(pb.MptcpdServiceClient.CreateEndpoint, createEndpoint(same)), "AddEndpoint"},
	{"CreateEndpoint/signal port interface", unary(pb.MptcpdServiceClient.CreateEndpoint, createEndpoint(func(r *pb.CreateEndpointRequest) {
		r.Address, r.Port, r.Id, r.InterfaceName = "2001:db8::1", 65535, 255, "wlan0"
		r.Flags = []pb.EndpointFlag{pb.EndpointFlag_ENDPOINT_FLAG_SIGNAL, pb.EndpointFlag_ENDPOINT_FLAG_BACKUP}
	})), "AddEndpoint"},
	{"CreateEndpoint/mapped IPv4", unary(pb.MptcpdServiceClient.CreateEndpoint, createEndpoint(func(r *pb.CreateEndpointRequest) { r.Address = "::ffff:192.0.2.1" })), "AddEndpoint"},
	{"UpdateEndpoint", unary(pb.MptcpdServiceClient.UpdateEndpoint, &pb.UpdateEndpointRequest{Id: 1, Fullmesh: ptr(false)}), "SetEndpointFlags"},
	{"DeleteEndpoint", unary(pb.MptcpdServiceClient.DeleteEndpoint, &pb.DeleteEndpointRequest{Id: 1}), "DeleteEndpoint"},
	{"FlushEndpoints", unary(pb.MptcpdServiceClient.FlushEndpoints, &pb.FlushEndpointsRequest{}), "FlushEndpoints"},
	{"GetLimits", unary(pb.MptcpdServiceClient.GetLimits, &pb.GetLimitsRequest{}), "Limits"},
	{"SetLimits", unary(pb.MptcpdServiceClient.SetLimits, &pb.SetLimitsRequest{Limits: &pb.Limits{Subflows: 8, AddAddrAccepted: 8}}), "SetLimits"},
	{"GetPolicy", unary(pb.MptcpdServiceClient.GetPolicy, &pb.GetPolicyRequest{}), "Policy"},
	{"ValidatePolicy", unary(pb.MptcpdServiceClient.ValidatePolicy, &pb.ValidatePolicyRequest{Document: "mode = \"kernel\"\n"}), "PlanPolicy"},
	{"ApplyPolicy", unary(pb.MptcpdServiceClient.ApplyPolicy, &pb.ApplyPolicyRequest{Document: strings.Repeat("#", 1<<20)}), "ApplyPolicy"},
	{"ApplyPolicy/dry run", unary(pb.MptcpdServiceClient.ApplyPolicy, &pb.ApplyPolicyRequest{Document: "mode = \"kernel\"\n", DryRun: true}), "PlanPolicy"},
	{"ListConnections", unary(pb.MptcpdServiceClient.ListConnections, &pb.ListConnectionsRequest{PageSize: 10000, PageToken: "4294967295"}), "Connections"},
	{"ListConnections/listener page token", unary(pb.MptcpdServiceClient.ListConnections, &pb.ListConnectionsRequest{Listeners: true, PageToken: "0/[::]:8080/12"}), "Connections"},
	{"GetConnection", unary(pb.MptcpdServiceClient.GetConnection, &pb.GetConnectionRequest{Token: 7}), "Connection"},
	{"Announce", unary(pb.MptcpdServiceClient.Announce, announce(func(r *pb.AnnounceRequest) { r.Port = 8080 })), "Announce"},
	{"Withdraw", unary(pb.MptcpdServiceClient.Withdraw, &pb.WithdrawRequest{Token: 7, Id: 2}), "Withdraw"},
	{"CreateSubflow", unary(pb.MptcpdServiceClient.CreateSubflow, createSubflow(same)), "CreateSubflow"},
	{"CreateSubflow/id 0 interface", unary(pb.MptcpdServiceClient.CreateSubflow, createSubflow(func(r *pb.CreateSubflowRequest) {
		r.LocalId, r.InterfaceName, r.LocalPort, r.Backup = 0, "wlan0", 40000, true
	})), "CreateSubflow"},
	{"DestroySubflow", unary(pb.MptcpdServiceClient.DestroySubflow, &pb.DestroySubflowRequest{Subflow: subflowKey(same)}), "DestroySubflow"},
	{"SetSubflowBackup", unary(pb.MptcpdServiceClient.SetSubflowBackup, &pb.SetSubflowBackupRequest{Subflow: subflowKey(same), Backup: true}), "SetSubflowBackup"},
	{"Watch", watch(&pb.WatchRequest{Kinds: []pb.EventKind{pb.EventKind_EVENT_KIND_SNAPSHOT_END, pb.EventKind_EVENT_KIND_EVENTS_LOST}, Tokens: []uint32{1, 1 << 31}}), "Watch"},
}

// badCalls are requests with one bad field, and the field the refusal must
// name.
var badCalls = []struct {
	name  string
	call  rpcCall
	field string
}{
	{"GetEndpoint/id 0", unary(pb.MptcpdServiceClient.GetEndpoint, &pb.GetEndpointRequest{}), "id"},
	{"GetEndpoint/id 256", unary(pb.MptcpdServiceClient.GetEndpoint, &pb.GetEndpointRequest{Id: 256}), "id"},

	{"CreateEndpoint/bad address", unary(pb.MptcpdServiceClient.CreateEndpoint, createEndpoint(func(r *pb.CreateEndpointRequest) { r.Address = "300.1.1.1" })), "address"},
	{"CreateEndpoint/host name", unary(pb.MptcpdServiceClient.CreateEndpoint, createEndpoint(func(r *pb.CreateEndpointRequest) { r.Address = "example.com" })), "address"},
	{"CreateEndpoint/prefix", unary(pb.MptcpdServiceClient.CreateEndpoint, createEndpoint(func(r *pb.CreateEndpointRequest) { r.Address = "192.0.2.1/24" })), "address"},
	{"CreateEndpoint/zone", unary(pb.MptcpdServiceClient.CreateEndpoint, createEndpoint(func(r *pb.CreateEndpointRequest) { r.Address = "fe80::1%eth0" })), "address"},
	{"CreateEndpoint/multicast v4", unary(pb.MptcpdServiceClient.CreateEndpoint, createEndpoint(func(r *pb.CreateEndpointRequest) { r.Address = "224.0.0.1" })), "address"},
	{"CreateEndpoint/multicast v6", unary(pb.MptcpdServiceClient.CreateEndpoint, createEndpoint(func(r *pb.CreateEndpointRequest) { r.Address = "ff02::1" })), "address"},
	{"CreateEndpoint/unspecified v4", unary(pb.MptcpdServiceClient.CreateEndpoint, createEndpoint(func(r *pb.CreateEndpointRequest) { r.Address = "0.0.0.0" })), "address"},
	{"CreateEndpoint/unspecified v6", unary(pb.MptcpdServiceClient.CreateEndpoint, createEndpoint(func(r *pb.CreateEndpointRequest) { r.Address = "::" })), "address"},
	{"CreateEndpoint/missing address", unary(pb.MptcpdServiceClient.CreateEndpoint, createEndpoint(func(r *pb.CreateEndpointRequest) { r.Address = "" })), "address"},
	{"CreateEndpoint/id 256", unary(pb.MptcpdServiceClient.CreateEndpoint, createEndpoint(func(r *pb.CreateEndpointRequest) { r.Id = 256 })), "id"},
	{"CreateEndpoint/port 70000", unary(pb.MptcpdServiceClient.CreateEndpoint, createEndpoint(func(r *pb.CreateEndpointRequest) {
		r.Port, r.Flags = 70000, []pb.EndpointFlag{pb.EndpointFlag_ENDPOINT_FLAG_SIGNAL}
	})), "port"},
	{"CreateEndpoint/port without signal", unary(pb.MptcpdServiceClient.CreateEndpoint, createEndpoint(func(r *pb.CreateEndpointRequest) { r.Port = 8080 })), "port"},
	{"CreateEndpoint/implicit", unary(pb.MptcpdServiceClient.CreateEndpoint, createEndpoint(func(r *pb.CreateEndpointRequest) {
		r.Flags = append(r.Flags, pb.EndpointFlag_ENDPOINT_FLAG_IMPLICIT)
	})), "flags"},
	{"CreateEndpoint/signal fullmesh", unary(pb.MptcpdServiceClient.CreateEndpoint, createEndpoint(func(r *pb.CreateEndpointRequest) {
		r.Flags = []pb.EndpointFlag{pb.EndpointFlag_ENDPOINT_FLAG_SIGNAL, pb.EndpointFlag_ENDPOINT_FLAG_FULLMESH}
	})), "flags"},
	{"CreateEndpoint/unknown flag", unary(pb.MptcpdServiceClient.CreateEndpoint, createEndpoint(func(r *pb.CreateEndpointRequest) {
		r.Flags = append(r.Flags, pb.EndpointFlag(99))
	})), "flags[1]"},
	{"CreateEndpoint/unspecified flag", unary(pb.MptcpdServiceClient.CreateEndpoint, createEndpoint(func(r *pb.CreateEndpointRequest) {
		r.Flags = []pb.EndpointFlag{pb.EndpointFlag_ENDPOINT_FLAG_UNSPECIFIED}
	})), "flags[0]"},
	{"CreateEndpoint/unknown interface", unary(pb.MptcpdServiceClient.CreateEndpoint, createEndpoint(func(r *pb.CreateEndpointRequest) { r.InterfaceName = "nosuch0" })), "interface_name"},

	{"UpdateEndpoint/id 0", unary(pb.MptcpdServiceClient.UpdateEndpoint, &pb.UpdateEndpointRequest{Backup: ptr(true)}), "id"},
	{"UpdateEndpoint/id 256", unary(pb.MptcpdServiceClient.UpdateEndpoint, &pb.UpdateEndpointRequest{Id: 256, Backup: ptr(true)}), "id"},
	{"UpdateEndpoint/no flag", unary(pb.MptcpdServiceClient.UpdateEndpoint, &pb.UpdateEndpointRequest{Id: 1}), "backup"},

	{"DeleteEndpoint/id 0", unary(pb.MptcpdServiceClient.DeleteEndpoint, &pb.DeleteEndpointRequest{}), "id"},
	{"DeleteEndpoint/id 256", unary(pb.MptcpdServiceClient.DeleteEndpoint, &pb.DeleteEndpointRequest{Id: 256}), "id"},

	{"SetLimits/nil", unary(pb.MptcpdServiceClient.SetLimits, &pb.SetLimitsRequest{}), "limits"},
	{"SetLimits/subflows 9", unary(pb.MptcpdServiceClient.SetLimits, &pb.SetLimitsRequest{Limits: &pb.Limits{Subflows: 9}}), "limits.subflows"},
	{"SetLimits/add_addr_accepted 9", unary(pb.MptcpdServiceClient.SetLimits, &pb.SetLimitsRequest{Limits: &pb.Limits{AddAddrAccepted: 9}}), "limits.add_addr_accepted"},

	{"ValidatePolicy/empty", unary(pb.MptcpdServiceClient.ValidatePolicy, &pb.ValidatePolicyRequest{}), "document"},
	{"ValidatePolicy/too big", unary(pb.MptcpdServiceClient.ValidatePolicy, &pb.ValidatePolicyRequest{Document: strings.Repeat("#", 1<<20+1)}), "document"},
	{"ApplyPolicy/empty", unary(pb.MptcpdServiceClient.ApplyPolicy, &pb.ApplyPolicyRequest{}), "document"},
	{"ApplyPolicy/empty dry run", unary(pb.MptcpdServiceClient.ApplyPolicy, &pb.ApplyPolicyRequest{DryRun: true}), "document"},
	{"ApplyPolicy/too big", unary(pb.MptcpdServiceClient.ApplyPolicy, &pb.ApplyPolicyRequest{Document: strings.Repeat("#", 1<<20+1)}), "document"},

	{"ListConnections/page_size 10001", unary(pb.MptcpdServiceClient.ListConnections, &pb.ListConnectionsRequest{PageSize: 10001}), "page_size"},
	{"ListConnections/page_token text", unary(pb.MptcpdServiceClient.ListConnections, &pb.ListConnectionsRequest{PageToken: "next"}), "page_token"},
	{"ListConnections/page_token negative", unary(pb.MptcpdServiceClient.ListConnections, &pb.ListConnectionsRequest{PageToken: "-1"}), "page_token"},
	{"ListConnections/page_token 2^32", unary(pb.MptcpdServiceClient.ListConnections, &pb.ListConnectionsRequest{PageToken: "4294967296"}), "page_token"},
	{"ListConnections/page_token bad listener cookie", unary(pb.MptcpdServiceClient.ListConnections, &pb.ListConnectionsRequest{PageToken: "0/0.0.0.0:80/x"}), "page_token"},
	{"ListConnections/page_token bad listener address", unary(pb.MptcpdServiceClient.ListConnections, &pb.ListConnectionsRequest{PageToken: "0/300.1.1.1:80/1"}), "page_token"},
	{"ListConnections/page_token listener of a token", unary(pb.MptcpdServiceClient.ListConnections, &pb.ListConnectionsRequest{PageToken: "7/0.0.0.0:80/1"}), "page_token"},

	{"GetConnection/token 0", unary(pb.MptcpdServiceClient.GetConnection, &pb.GetConnectionRequest{}), "token"},

	{"Announce/token 0", unary(pb.MptcpdServiceClient.Announce, announce(func(r *pb.AnnounceRequest) { r.Token = 0 })), "token"},
	{"Announce/bad address", unary(pb.MptcpdServiceClient.Announce, announce(func(r *pb.AnnounceRequest) { r.Address = "300.1.1.1" })), "address"},
	{"Announce/multicast", unary(pb.MptcpdServiceClient.Announce, announce(func(r *pb.AnnounceRequest) { r.Address = "ff02::1" })), "address"},
	{"Announce/id 0", unary(pb.MptcpdServiceClient.Announce, announce(func(r *pb.AnnounceRequest) { r.Id = 0 })), "id"},
	{"Announce/id 256", unary(pb.MptcpdServiceClient.Announce, announce(func(r *pb.AnnounceRequest) { r.Id = 256 })), "id"},
	{"Announce/port 70000", unary(pb.MptcpdServiceClient.Announce, announce(func(r *pb.AnnounceRequest) { r.Port = 70000 })), "port"},

	{"Withdraw/token 0", unary(pb.MptcpdServiceClient.Withdraw, &pb.WithdrawRequest{Id: 2}), "token"},
	{"Withdraw/id 0", unary(pb.MptcpdServiceClient.Withdraw, &pb.WithdrawRequest{Token: 7}), "id"},
	{"Withdraw/id 256", unary(pb.MptcpdServiceClient.Withdraw, &pb.WithdrawRequest{Token: 7, Id: 256}), "id"},

	{"CreateSubflow/token 0", unary(pb.MptcpdServiceClient.CreateSubflow, createSubflow(func(r *pb.CreateSubflowRequest) { r.Token = 0 })), "token"},
	{"CreateSubflow/bad local address", unary(pb.MptcpdServiceClient.CreateSubflow, createSubflow(func(r *pb.CreateSubflowRequest) { r.LocalAddress = "300.1.1.1" })), "local_address"},
	{"CreateSubflow/missing local address", unary(pb.MptcpdServiceClient.CreateSubflow, createSubflow(func(r *pb.CreateSubflowRequest) { r.LocalAddress = "" })), "local_address"},
	{"CreateSubflow/local_id 256", unary(pb.MptcpdServiceClient.CreateSubflow, createSubflow(func(r *pb.CreateSubflowRequest) { r.LocalId = 256 })), "local_id"},
	{"CreateSubflow/local_port 70000", unary(pb.MptcpdServiceClient.CreateSubflow, createSubflow(func(r *pb.CreateSubflowRequest) { r.LocalPort = 70000 })), "local_port"},
	{"CreateSubflow/missing remote address", unary(pb.MptcpdServiceClient.CreateSubflow, createSubflow(func(r *pb.CreateSubflowRequest) { r.RemoteAddress = "" })), "remote_address"},
	{"CreateSubflow/zoned remote address", unary(pb.MptcpdServiceClient.CreateSubflow, createSubflow(func(r *pb.CreateSubflowRequest) {
		r.LocalAddress, r.RemoteAddress = "fe80::1", "fe80::2%eth0"
	})), "remote_address"},
	{"CreateSubflow/remote_port 0", unary(pb.MptcpdServiceClient.CreateSubflow, createSubflow(func(r *pb.CreateSubflowRequest) { r.RemotePort = 0 })), "remote_port"},
	{"CreateSubflow/remote_port 70000", unary(pb.MptcpdServiceClient.CreateSubflow, createSubflow(func(r *pb.CreateSubflowRequest) { r.RemotePort = 70000 })), "remote_port"},
	{"CreateSubflow/family mismatch", unary(pb.MptcpdServiceClient.CreateSubflow, createSubflow(func(r *pb.CreateSubflowRequest) { r.RemoteAddress = "2001:db8::1" })), "remote_address"},
	{"CreateSubflow/unknown interface", unary(pb.MptcpdServiceClient.CreateSubflow, createSubflow(func(r *pb.CreateSubflowRequest) { r.InterfaceName = "nosuch0" })), "interface_name"},

	{"DestroySubflow/key missing", unary(pb.MptcpdServiceClient.DestroySubflow, &pb.DestroySubflowRequest{}), "subflow"},
	{"DestroySubflow/token 0", unary(pb.MptcpdServiceClient.DestroySubflow, &pb.DestroySubflowRequest{Subflow: subflowKey(func(k *pb.SubflowKey) { k.Token = 0 })}), "subflow.token"},
	{"DestroySubflow/bad local address", unary(pb.MptcpdServiceClient.DestroySubflow, &pb.DestroySubflowRequest{Subflow: subflowKey(func(k *pb.SubflowKey) { k.LocalAddress = "300.1.1.1" })}), "subflow.local_address"},
	{"DestroySubflow/local_port 0", unary(pb.MptcpdServiceClient.DestroySubflow, &pb.DestroySubflowRequest{Subflow: subflowKey(func(k *pb.SubflowKey) { k.LocalPort = 0 })}), "subflow.local_port"},
	{"DestroySubflow/missing remote address", unary(pb.MptcpdServiceClient.DestroySubflow, &pb.DestroySubflowRequest{Subflow: subflowKey(func(k *pb.SubflowKey) { k.RemoteAddress = "" })}), "subflow.remote_address"},
	{"DestroySubflow/remote_port 70000", unary(pb.MptcpdServiceClient.DestroySubflow, &pb.DestroySubflowRequest{Subflow: subflowKey(func(k *pb.SubflowKey) { k.RemotePort = 70000 })}), "subflow.remote_port"},
	{"DestroySubflow/family mismatch", unary(pb.MptcpdServiceClient.DestroySubflow, &pb.DestroySubflowRequest{Subflow: subflowKey(func(k *pb.SubflowKey) { k.LocalAddress = "2001:db8::1" })}), "subflow.remote_address"},

	{"SetSubflowBackup/key missing", unary(pb.MptcpdServiceClient.SetSubflowBackup, &pb.SetSubflowBackupRequest{Backup: true}), "subflow"},
	{"SetSubflowBackup/token 0", unary(pb.MptcpdServiceClient.SetSubflowBackup, &pb.SetSubflowBackupRequest{Subflow: subflowKey(func(k *pb.SubflowKey) { k.Token = 0 })}), "subflow.token"},
	{"SetSubflowBackup/remote_port 0", unary(pb.MptcpdServiceClient.SetSubflowBackup, &pb.SetSubflowBackupRequest{Subflow: subflowKey(func(k *pb.SubflowKey) { k.RemotePort = 0 })}), "subflow.remote_port"},
	{"SetSubflowBackup/family mismatch", unary(pb.MptcpdServiceClient.SetSubflowBackup, &pb.SetSubflowBackupRequest{Subflow: subflowKey(func(k *pb.SubflowKey) { k.RemoteAddress = "2001:db8::2" })}), "subflow.remote_address"},

	{"Watch/unknown kind", watch(&pb.WatchRequest{Kinds: []pb.EventKind{pb.EventKind_EVENT_KIND_SUBFLOW_ESTABLISHED, pb.EventKind(99)}}), "kinds[1]"},
	{"Watch/unspecified kind", watch(&pb.WatchRequest{Kinds: []pb.EventKind{pb.EventKind_EVENT_KIND_UNSPECIFIED}}), "kinds[0]"},
	{"Watch/token 0", watch(&pb.WatchRequest{Tokens: []uint32{7, 0}}), "tokens[1]"},
}

// TestValidRequestsReachBackend: the good requests the bad-input cases are
// made from pass the checks and each makes its one backend call.
func TestValidRequestsReachBackend(t *testing.T) {
	backend := newFakeBackend()
	_, client := startUnix(t, backend)
	for _, tc := range validCalls {
		t.Run(tc.name, func(t *testing.T) {
			backend.reset()
			if err := tc.call(callCtx(t), client); err != nil {
				t.Fatalf("valid request refused: %v", err)
			}
			if got := backend.Calls(); len(got) != 1 || got[0] != tc.backend {
				t.Errorf("backend saw %v, want [%s]", got, tc.backend)
			}
		})
	}
}

// TestBadRequestsChangeNothing: every RPC refuses bad input with
// INVALID_ARGUMENT and a BadRequest detail naming the field, on the wire
// and as api.Dial's client restores it, and the backend sees no call.
func TestBadRequestsChangeNothing(t *testing.T) {
	backend := newFakeBackend()
	svc, client := startUnix(t, backend)
	// A client without mptcpd's interceptors sees the status as sent.
	raw, err := grpc.NewClient("unix://"+svc.Addrs()[0].String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = raw.Close() })
	rawClient := pb.NewMptcpdServiceClient(raw)

	for _, tc := range badCalls {
		t.Run(tc.name, func(t *testing.T) {
			backend.reset()
			ctx := callCtx(t)

			err := tc.call(ctx, client)
			var apiErr *api.Error
			switch {
			case !errors.As(err, &apiErr):
				t.Fatalf("error %v (%T), want an *api.Error", err, err)
			case apiErr.Code != codes.InvalidArgument || status.Code(err) != codes.InvalidArgument:
				t.Errorf("code %v, want InvalidArgument (%v)", apiErr.Code, err)
			case apiErr.Field != tc.field:
				t.Errorf("field %q, want %q (%v)", apiErr.Field, tc.field, err)
			case !errors.Is(err, genl.ErrInvalid):
				t.Errorf("errors.Is(%v, genl.ErrInvalid) = false", err)
			case !strings.HasPrefix(err.Error(), tc.field+": "):
				t.Errorf("message %q does not start with the field", err)
			}

			err = tc.call(ctx, rawClient)
			st := status.Convert(err)
			var fields []string
			for _, d := range st.Details() {
				if br, ok := d.(*errdetails.BadRequest); ok {
					for _, v := range br.GetFieldViolations() {
						fields = append(fields, v.GetField())
						if v.GetDescription() == "" {
							t.Errorf("violation of %s has no description", v.GetField())
						}
					}
				}
			}
			if st.Code() != codes.InvalidArgument || len(fields) != 1 || fields[0] != tc.field {
				t.Errorf("on the wire: %v with BadRequest fields %q, want InvalidArgument naming %q", st.Code(), fields, tc.field)
			}

			if got := backend.Calls(); len(got) != 0 {
				t.Errorf("a bad request reached the backend: %v", got)
			}
		})
	}
}

// TestValidationCoversEveryRPC: every RPC that takes input has at least one
// bad-input case, and every RPC a valid case.
func TestValidationCoversEveryRPC(t *testing.T) {
	noInput := map[string]bool{"GetStatus": true, "ListEndpoints": true, "FlushEndpoints": true, "GetLimits": true, "GetPolicy": true}
	rpcs := rpcNames()
	for _, name := range rpcs {
		if !noInput[name] && !hasCase(name, len(badCalls), func(i int) string { return badCalls[i].name }) {
			t.Errorf("no bad-input case for %s", name)
		}
		if !hasCase(name, len(validCalls), func(i int) string { return validCalls[i].name }) {
			t.Errorf("no valid case for %s", name)
		}
	}
	if len(rpcs) != 20 {
		t.Errorf("%d RPCs in the service, the cases were written for 20: add cases for the new ones", len(rpcs))
	}
}

func hasCase(rpc string, n int, name func(int) string) bool {
	for i := range n {
		if n := name(i); n == rpc || strings.HasPrefix(n, rpc+"/") {
			return true
		}
	}
	return false
}

// rpcNames returns the short names of the service's methods and streams.
func rpcNames() []string {
	var names []string
	for _, m := range pb.MptcpdService_ServiceDesc.Methods {
		names = append(names, m.MethodName)
	}
	for _, s := range pb.MptcpdService_ServiceDesc.Streams {
		names = append(names, s.StreamName)
	}
	return names
}
