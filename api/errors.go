package api

import (
	"context"
	"errors"
	"fmt"
	"os"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"

	"github.com/mptcpd/mptcpd/events"
	"github.com/mptcpd/mptcpd/genl"
	"github.com/mptcpd/mptcpd/pm"
)

// ErrorDomain is the domain of the ErrorInfo detail that carries the
// reason of an mptcpd error across the wire.
const ErrorDomain = "mptcpd.v1"

// kinds maps each domain sentinel to its gRPC code and the reason that
// carries it across the wire. The order matters: the first sentinel an
// error matches decides (ErrUnknownToken also matches ErrNotFound).
var kinds = [...]struct {
	err    error
	code   codes.Code
	reason string
}{
	{genl.ErrUnknownToken, codes.NotFound, "UNKNOWN_TOKEN"},
	{genl.ErrNotFound, codes.NotFound, "NOT_FOUND"},
	{genl.ErrIDInUse, codes.AlreadyExists, "ID_IN_USE"},
	{genl.ErrExists, codes.AlreadyExists, "EXISTS"},
	{genl.ErrLimit, codes.ResourceExhausted, "KERNEL_LIMIT"},
	{genl.ErrPermission, codes.PermissionDenied, "PERMISSION"},
	{genl.ErrWrongPathManager, codes.FailedPrecondition, "WRONG_PATH_MANAGER"},
	{pm.ErrWrongMode, codes.FailedPrecondition, "WRONG_MODE"},
	{pm.ErrOwnedByPolicy, codes.FailedPrecondition, "OWNED_BY_POLICY"},
	{genl.ErrUnavailable, codes.Unavailable, "UNAVAILABLE"},
	{genl.ErrEventsLost, codes.Aborted, "EVENTS_LOST"},
	{events.ErrTooSlow, codes.ResourceExhausted, "WATCHER_TOO_SLOW"},
	{genl.ErrInvalid, codes.InvalidArgument, "INVALID"},
}

// FieldError is a request field with a bad value. It matches
// genl.ErrInvalid and becomes INVALID_ARGUMENT with a BadRequest detail
// naming the field.
type FieldError struct {
	// Field is the field's path in the request, e.g. "subflow.local_address".
	Field string
	// Message says what is wrong and what is allowed.
	Message string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Message }

// Is makes a FieldError match genl.ErrInvalid.
func (e *FieldError) Is(target error) bool { return target == genl.ErrInvalid }

// invalid returns a *FieldError for field.
func invalid(field, format string, args ...any) error {
	return &FieldError{Field: field, Message: fmt.Sprintf(format, args...)}
}

// ToStatus converts an error of the daemon into a gRPC status error: the
// domain sentinels to their codes, with an ErrorInfo detail that lets
// FromStatus restore the sentinel on the client; a *FieldError to
// INVALID_ARGUMENT with a BadRequest detail; anything else to INTERNAL.
// nil stays nil, and a status error passes through.
func ToStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	switch {
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	st := status.New(codes.Internal, err.Error())
	var details []protoadapt.MessageV1
	for _, k := range kinds {
		if errors.Is(err, k.err) {
			st = status.New(k.code, err.Error())
			details = append(details, &errdetails.ErrorInfo{Reason: k.reason, Domain: ErrorDomain})
			break
		}
	}
	var fe *FieldError
	if errors.As(err, &fe) {
		details = append(details, &errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
			{Field: fe.Field, Description: fe.Message},
		}})
	}
	if len(details) > 0 {
		if withDetails, derr := st.WithDetails(details...); derr == nil {
			st = withDetails
		}
	}
	return st.Err()
}

// Error is an error the daemon returned over the wire, as FromStatus
// restores it: errors.Is matches the domain sentinel it was made from
// (genl.ErrNotFound, pm.ErrOwnedByPolicy …) and its gRPC status.
type Error struct {
	// Code is the gRPC code; Reason the ErrorInfo reason, if any.
	Code   codes.Code
	Reason string
	// Field names the request field at fault, for INVALID_ARGUMENT.
	Field string
	// Message is the daemon's message.
	Message string

	sentinel error
}

func (e *Error) Error() string { return e.Message }

// Is matches the sentinel the error was made from.
func (e *Error) Is(target error) bool {
	if e.sentinel == nil {
		return false
	}
	if e.sentinel == target {
		return true
	}
	return errors.Is(e.sentinel, target) ||
		(e.sentinel == genl.ErrUnknownToken && target == genl.ErrNotFound) ||
		(e.sentinel == genl.ErrPermission && target == os.ErrPermission)
}

// GRPCStatus lets status.FromError see the original status.
func (e *Error) GRPCStatus() *status.Status { return status.New(e.Code, e.Message) }

// FromStatus converts a gRPC status error from the daemon back into an
// *Error that matches the domain sentinel (see ToStatus). A status without
// a reason matches the sentinel of its code. Other errors pass through.
func FromStatus(err error) error {
	st, ok := status.FromError(err)
	if !ok || st.Code() == codes.OK {
		return err
	}
	e := &Error{Code: st.Code(), Message: st.Message()}
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			if d.GetDomain() == ErrorDomain {
				e.Reason = d.GetReason()
			}
		case *errdetails.BadRequest:
			if v := d.GetFieldViolations(); len(v) > 0 {
				e.Field = v[0].GetField()
			}
		}
	}
	if e.Reason == "" {
		e.sentinel = codeSentinels[e.Code]
		return e
	}
	for _, k := range kinds {
		if k.reason == e.Reason {
			e.sentinel = k.err
			break
		}
	}
	return e
}

// codeSentinels are the sentinels of statuses that carry no reason (from
// the gRPC runtime, an interceptor, or another server).
var codeSentinels = map[codes.Code]error{
	codes.NotFound:           genl.ErrNotFound,
	codes.AlreadyExists:      genl.ErrExists,
	codes.ResourceExhausted:  genl.ErrLimit,
	codes.PermissionDenied:   genl.ErrPermission,
	codes.Unauthenticated:    genl.ErrPermission,
	codes.FailedPrecondition: pm.ErrWrongMode,
	codes.Unavailable:        genl.ErrUnavailable,
	codes.InvalidArgument:    genl.ErrInvalid,
}
