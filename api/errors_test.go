package api_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mptcpd/mptcpd/api"
	"github.com/mptcpd/mptcpd/genl"
	"github.com/mptcpd/mptcpd/pm"
	pb "github.com/mptcpd/mptcpd/proto/mptcpd/v1"
)

// sentinels are the domain errors a client can match after the wire.
var sentinels = []error{
	genl.ErrNotFound, genl.ErrUnknownToken, genl.ErrExists, genl.ErrIDInUse, genl.ErrLimit,
	genl.ErrPermission, genl.ErrWrongPathManager, pm.ErrWrongMode, pm.ErrOwnedByPolicy,
	genl.ErrUnavailable, genl.ErrEventsLost, genl.ErrInvalid,
}

// TestErrorMapping is the matrix of backend errors and what a client of
// api.Dial gets: the gRPC code on the wire, the message, and errors.Is
// matching the very sentinel (and its documented aliases) and no other.
func TestErrorMapping(t *testing.T) {
	plain := errors.New("disk on fire")
	cases := []struct {
		err  error
		code codes.Code
		// also are the other errors the client's error matches.
		also []error
	}{
		{genl.ErrNotFound, codes.NotFound, nil},
		{genl.ErrUnknownToken, codes.NotFound, []error{genl.ErrNotFound}},
		{genl.ErrExists, codes.AlreadyExists, nil},
		{genl.ErrIDInUse, codes.AlreadyExists, nil},
		{genl.ErrLimit, codes.ResourceExhausted, nil},
		{genl.ErrPermission, codes.PermissionDenied, []error{os.ErrPermission}},
		{genl.ErrWrongPathManager, codes.FailedPrecondition, nil},
		{pm.ErrWrongMode, codes.FailedPrecondition, nil},
		{pm.ErrOwnedByPolicy, codes.FailedPrecondition, nil},
		{genl.ErrUnavailable, codes.Unavailable, nil},
		{genl.ErrEventsLost, codes.Aborted, nil},
		{genl.ErrInvalid, codes.InvalidArgument, nil},
		{plain, codes.Internal, nil},
	}
	backend := newFakeBackend()
	_, client := startUnix(t, backend)
	calls := []struct {
		name string
		call rpcCall
	}{
		{"unary read", unary(pb.MptcpdServiceClient.GetEndpoint, &pb.GetEndpointRequest{Id: 1})},
		{"unary write", unary(pb.MptcpdServiceClient.DeleteEndpoint, &pb.DeleteEndpointRequest{Id: 1})},
		{"stream", watch(&pb.WatchRequest{})},
	}
	for _, tc := range cases {
		for _, c := range calls {
			t.Run(fmt.Sprintf("%v/%s", tc.err, c.name), func(t *testing.T) {
				backend.setErr(fmt.Errorf("endpoint 1: %w", tc.err))
				defer backend.setErr(nil)
				err := c.call(callCtx(t), client)
				if err == nil {
					t.Fatal("no error")
				}
				if got := status.Code(err); got != tc.code {
					t.Errorf("code %v, want %v (%v)", got, tc.code, err)
				}
				if want := "endpoint 1: " + tc.err.Error(); err.Error() != want {
					t.Errorf("message %q, want %q", err, want)
				}
				var apiErr *api.Error
				if !errors.As(err, &apiErr) || apiErr.Code != tc.code {
					t.Errorf("error %#v is not an *api.Error with code %v", err, tc.code)
				}
				for _, s := range append(sentinels, os.ErrPermission) {
					want := s == tc.err || containsErr(tc.also, s)
					if got := errors.Is(err, s); got != want {
						t.Errorf("errors.Is(err, %q) = %v, want %v", s, got, want)
					}
				}
			})
		}
	}
}

func containsErr(errs []error, e error) bool {
	for _, x := range errs {
		if x == e {
			return true
		}
	}
	return false
}

// TestFromStatusByCode: a status without mptcpd's ErrorInfo — from the
// gRPC runtime, an interceptor, or another server — still matches the
// sentinel of its code.
func TestFromStatusByCode(t *testing.T) {
	cases := []struct {
		code codes.Code
		want error
	}{
		{codes.NotFound, genl.ErrNotFound},
		{codes.AlreadyExists, genl.ErrExists},
		{codes.ResourceExhausted, genl.ErrLimit},
		{codes.PermissionDenied, genl.ErrPermission},
		{codes.Unauthenticated, genl.ErrPermission},
		{codes.FailedPrecondition, pm.ErrWrongMode},
		{codes.Unavailable, genl.ErrUnavailable},
		{codes.InvalidArgument, genl.ErrInvalid},
		{codes.Internal, nil},
		{codes.Unknown, nil},
		{codes.DeadlineExceeded, nil},
	}
	for _, tc := range cases {
		t.Run(tc.code.String(), func(t *testing.T) {
			err := api.FromStatus(status.Error(tc.code, "from elsewhere"))
			if status.Code(err) != tc.code || err.Error() != "from elsewhere" {
				t.Errorf("FromStatus = %v (code %v), want the code and message kept", err, status.Code(err))
			}
			for _, s := range sentinels {
				if got, want := errors.Is(err, s), s == tc.want; got != want {
					t.Errorf("errors.Is(err, %q) = %v, want %v", s, got, want)
				}
			}
			if tc.code == codes.PermissionDenied && !errors.Is(err, os.ErrPermission) {
				t.Errorf("a PERMISSION_DENIED without details does not match os.ErrPermission")
			}
		})
	}

	// An ErrorInfo of another domain is not ours: the code decides.
	st, _ := status.New(codes.NotFound, "theirs").WithDetails(&errdetails.ErrorInfo{Reason: "OWNED_BY_POLICY", Domain: "example.com"})
	if err := api.FromStatus(st.Err()); !errors.Is(err, genl.ErrNotFound) || errors.Is(err, pm.ErrOwnedByPolicy) {
		t.Errorf("foreign ErrorInfo: %v matches the wrong sentinel", err)
	}
	// Not a status, or none: passed through.
	if err := api.FromStatus(io.EOF); err != io.EOF {
		t.Errorf("FromStatus(io.EOF) = %v, want io.EOF itself", err)
	}
	if err := api.FromStatus(nil); err != nil {
		t.Errorf("FromStatus(nil) = %v", err)
	}
}

func TestToStatus(t *testing.T) {
	if err := api.ToStatus(nil); err != nil {
		t.Errorf("ToStatus(nil) = %v", err)
	}
	already := status.Error(codes.Aborted, "as is")
	if err := api.ToStatus(already); err != already {
		t.Errorf("ToStatus changed a status error: %v", err)
	}
	for _, tc := range []struct {
		err  error
		code codes.Code
	}{
		{fmt.Errorf("waiting: %w", context.Canceled), codes.Canceled},
		{fmt.Errorf("waiting: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
	} {
		if got := status.Code(api.ToStatus(tc.err)); got != tc.code {
			t.Errorf("ToStatus(%v) code %v, want %v", tc.err, got, tc.code)
		}
	}

	// A FieldError wrapped by the backend keeps its field.
	err := api.ToStatus(fmt.Errorf("policy: %w", &api.FieldError{Field: "document", Message: "line 3: unknown key"}))
	st := status.Convert(err)
	var field string
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok && len(br.GetFieldViolations()) == 1 {
			field = br.GetFieldViolations()[0].GetField()
		}
	}
	if st.Code() != codes.InvalidArgument || field != "document" {
		t.Errorf("wrapped FieldError: %v with field %q, want InvalidArgument naming document", st.Code(), field)
	}
	back := api.FromStatus(err)
	var apiErr *api.Error
	if !errors.As(back, &apiErr) || apiErr.Field != "document" || apiErr.Reason != "INVALID" || !errors.Is(back, genl.ErrInvalid) {
		t.Errorf("FromStatus(ToStatus(FieldError)) = %#v", back)
	}
	if !strings.Contains(back.Error(), "line 3: unknown key") {
		t.Errorf("message lost: %q", back)
	}
}
