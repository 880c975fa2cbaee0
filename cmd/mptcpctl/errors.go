package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"

	"google.golang.org/grpc/codes"

	"github.com/mptcpd/mptcpd/api"
	"github.com/mptcpd/mptcpd/genl"
	"github.com/mptcpd/mptcpd/pm"
)

// Exit statuses; rootLong documents them.
const (
	exitOK           = 0
	exitFailure      = 1
	exitUsage        = 2
	exitUnreachable  = 3
	exitPermission   = 4
	exitNotFound     = 5
	exitExists       = 6
	exitInvalid      = 7
	exitPrecondition = 8
	exitLimit        = 9
)

// exitError is an error with the exit status it calls for.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageErrorf reports a command line that does not parse: an unknown
// word, a missing or extra argument.
func usageErrorf(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

// invalidf reports an argument whose value is wrong.
func invalidf(format string, args ...any) error {
	return &exitError{code: exitInvalid, err: fmt.Errorf(format, args...)}
}

// explain turns the error of a command into its exit status and the
// message a person can act on.
func (a *app) explain(err error) (int, string) {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code, err.Error()
	}
	var ae *api.Error
	if errors.As(err, &ae) {
		return a.explainAPI(ae)
	}
	switch {
	case errors.Is(err, context.Canceled):
		return exitFailure, "interrupted"
	case errors.Is(err, context.DeadlineExceeded):
		return exitUnreachable, a.timedOut()
	case a.cmd == nil:
		// cobra found no command, or its flags or arguments did not parse.
		return exitUsage, err.Error()
	}
	return exitFailure, err.Error()
}

// explainAPI explains an error mptcpd (or the way to it) returned.
func (a *app) explainAPI(e *api.Error) (int, string) {
	msg := e.Message
	switch {
	case e.Code == codes.Canceled:
		return exitFailure, "interrupted"
	case e.Code == codes.DeadlineExceeded:
		return exitUnreachable, a.timedOut()
	case e.Code == codes.Unavailable && e.Reason == "":
		// No reason: the call never reached mptcpd's own code.
		return a.unreachable(e)
	case e.Code == codes.Unimplemented:
		return exitFailure, fmt.Sprintf("mptcpd at %s does not know this call (is it older than mptcpctl?): %s", a.where(), msg)
	case errors.Is(e, genl.ErrPermission):
		return exitPermission, a.permissionDenied(msg)
	case errors.Is(e, genl.ErrUnknownToken):
		return exitNotFound, labelled("not found", msg) + "; `mptcpctl connection list` lists the connections"
	case errors.Is(e, genl.ErrNotFound):
		return exitNotFound, labelled("not found", msg) + a.hint(annSee)
	case errors.Is(e, genl.ErrIDInUse):
		return exitExists, labelled("already exists", msg) + "; pick another id, or leave it out and mptcpd picks one"
	case errors.Is(e, genl.ErrExists):
		return exitExists, labelled("already exists", msg) + a.hint(annSee)
	case errors.Is(e, genl.ErrLimit):
		return exitLimit, labelled("kernel limit reached", msg) + "; `mptcpctl limits show` shows the limits"
	case errors.Is(e, pm.ErrOwnedByPolicy):
		return exitPrecondition, labelled("failed precondition", msg) + "; the policy owns it: change the policy instead (`mptcpctl policy show`, then `mptcpctl policy apply FILE`)"
	case errors.Is(e, genl.ErrWrongPathManager):
		return exitPrecondition, labelled("wrong path manager", msg) + a.hint(annMode)
	case errors.Is(e, pm.ErrWrongMode):
		return exitPrecondition, labelled("wrong mode", msg) + a.hint(annMode)
	case errors.Is(e, genl.ErrUnavailable):
		return exitUnreachable, labelled("unavailable", msg)
	case errors.Is(e, genl.ErrInvalid):
		if e.Field != "" && !strings.Contains(msg, e.Field) {
			msg = e.Field + ": " + msg
		}
		return exitInvalid, labelled("invalid argument", msg)
	}
	return exitFailure, labelled("mptcpd failed", msg)
}

// unreachable explains a call that could not reach mptcpd, from the
// error of the last attempt to connect when there was one.
func (a *app) unreachable(e *api.Error) (int, string) {
	var dialErr error
	if a.target != nil {
		dialErr = a.target.dialer.lastErr()
	}
	socket := ""
	if a.target != nil {
		socket = a.target.socket
	}
	switch {
	case dialErr == nil:
	case socket != "" && errors.Is(dialErr, syscall.ENOENT):
		return a.explain(notRunning(socket))
	case socket != "" && errors.Is(dialErr, syscall.ECONNREFUSED):
		return exitUnreachable, fmt.Sprintf("mptcpd is not running: nothing listens on %s (the socket is stale); start it with `systemctl start mptcpd` (or `sudo scripts/run.sh`)", socket)
	case socket != "" && errors.Is(dialErr, syscall.EACCES):
		return a.explain(noAccess(socket, "connect to "+socket))
	case errors.Is(dialErr, syscall.ECONNREFUSED):
		return exitUnreachable, fmt.Sprintf("cannot reach mptcpd at %s: nothing listens there; is it running, and is its [api.tcp] listener on?", a.where())
	default:
		return exitUnreachable, fmt.Sprintf("cannot reach mptcpd at %s: %v", a.where(), dialErr)
	}
	return exitUnreachable, fmt.Sprintf("cannot reach mptcpd at %s: %s", a.where(), e.Message)
}

func (a *app) permissionDenied(msg string) string {
	action, needs := "reading mptcpd's state", "root or the group of its socket"
	if a.cmd != nil && a.cmd.Annotations[annAction] != "" {
		action, needs = a.cmd.Annotations[annAction], "root or the admin group"
	}
	if a.target != nil && a.target.socket == "" {
		needs = "a client certificate mptcpd trusts"
	}
	return fmt.Sprintf("permission denied: %s needs %s (mptcpd: %s)", action, needs, msg)
}

func (a *app) timedOut() string {
	return fmt.Sprintf("mptcpd at %s did not answer within %s; is it stuck? --timeout waits longer", a.where(), a.timeout)
}

// where names the daemon's address for messages.
func (a *app) where() string {
	if a.target != nil {
		return a.target.server
	}
	return a.server
}

// hint returns the command's annotation key as "; HINT", or "".
func (a *app) hint(key string) string {
	if a.cmd == nil || a.cmd.Annotations[key] == "" {
		return ""
	}
	return "; " + a.cmd.Annotations[key]
}

// labelled prefixes msg with label, unless msg already starts with it.
func labelled(label, msg string) string {
	if strings.HasPrefix(strings.ToLower(msg), label) {
		return msg
	}
	return label + ": " + msg
}
