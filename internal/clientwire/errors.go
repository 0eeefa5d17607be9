package clientwire

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/activation"
)

// Errors of the daemon's own (CLIENT-PROTOCOL.md section 7); the client
// package exports them.
var (
	ErrPermission = errors.New("bulkhead: permission denied")
	ErrNotFound   = errors.New("bulkhead: not found")
	ErrBadRequest = errors.New("bulkhead: bad request")
	ErrLimit      = errors.New("bulkhead: connection limit reached")
	ErrProtocol   = errors.New("bulkhead: client protocol error")
)

// Error is an ERROR of a kind this side does not know, kept as it came.
type Error struct {
	Kind    string
	Message string
	Fields  map[string]any // every other key
}

func (e *Error) Error() string { return fmt.Sprintf("bulkhead: %s: %s", e.Kind, e.Message) }

// sentinels are the errors that cross as a kind alone.
var sentinels = []struct {
	kind string
	err  error
}{
	{"closed", bulkhead.ErrClosed},
	{"encoding", bulkhead.ErrEncoding},
	{"permission_denied", ErrPermission},
	{"not_found", ErrNotFound},
	{"bad_request", ErrBadRequest},
	{"too_many", ErrLimit},
	{"protocol", ErrProtocol},
	{"unsupported_version", ErrProtocol},
	{"released", activation.ErrReleased},
	{"unknown_class", activation.ErrUnknownClass},
	{"class_not_registered", activation.ErrClassNotRegistered},
	{"not_locked", activation.ErrNotLocked},
	{"too_many_objects", activation.ErrTooManyObjects},
	{"name_in_use", activation.ErrNameInUse},
	{"not_registered", activation.ErrNotRegistered},
	{"rot_full", activation.ErrROTFull},
	{"invalid_name", activation.ErrInvalidName},
	{"server_stopping", activation.ErrServerStopping},
	{"session_closed", activation.ErrSessionClosed},
}

// KindOf is err's kind, for a sentinel or one of the typed errors.
func KindOf(err error) string { return EncodeError(err)["kind"].(string) }

// EncodeError is err as an ERROR payload: its kind, its message and its
// type's fields. An error of no known kind crosses as "internal".
func EncodeError(err error) map[string]any {
	m := map[string]any{"message": err.Error()}
	if typedFields(err, m) {
		return m
	}
	for _, s := range sentinels {
		if errors.Is(err, s.err) {
			m["kind"] = s.kind
			return m
		}
	}
	m["kind"] = "internal"
	return m
}

// typedFields fills m with the kind and fields of err's type, if it has one.
func typedFields(err error, m map[string]any) bool {
	var (
		crash *bulkhead.CrashError
		start *bulkhead.StartError
		canc  *bulkhead.CanceledError
		over  *bulkhead.OverloadedError
		unh   *bulkhead.UnhealthyError
		quar  *bulkhead.QuarantinedError
		rem   *bulkhead.RemoteError
		disc  *activation.DisconnectedError
		slow  *activation.SlowSubscriberError
	)
	switch {
	case errors.As(err, &disc): // before crash: it wraps one
		put(m, "disconnected", "class", disc.Class, "object", disc.Object, "pid", disc.PID)
		if disc.Err != nil {
			m["cause"] = EncodeError(disc.Err)
		}
	case errors.As(err, &crash):
		put(m, "crash", "phase", crash.Phase.String(), "pid", crash.PID, "request_id", crash.RequestID,
			"method", crash.Method, "exit_code", crash.ExitCode, "signal", int(crash.Signal),
			"core_dumped", crash.CoreDumped, "killed", crash.Killed, "reason", crash.Reason,
			"stderr", crash.Stderr, "limit", crash.Limit.String(), "replays", crash.Replays,
			"abandoned_by", crash.AbandonedBy)
		putSet(m, "peak_memory", crash.PeakMemory, "syscall", crash.Syscall, "syscall_number", crash.SyscallNumber,
			"function", crash.Function, "fingerprint", crash.Fingerprint,
			"cpu_ns", crash.CPU.Nanoseconds(), "max_rss", crash.MaxRSS)
	case errors.As(err, &start):
		put(m, "start", "pid", start.PID, "exit_code", start.ExitCode, "signal", int(start.Signal),
			"exited", start.Exited, "reason", start.Reason, "stderr", start.Stderr)
		putSet(m, "protection", start.Protection)
	case errors.As(err, &canc):
		cause := "canceled"
		if errors.Is(canc.Err, context.DeadlineExceeded) {
			cause = "deadline"
		}
		put(m, "canceled", "method", canc.Method, "request_id", canc.RequestID, "pid", canc.PID, "cause", cause)
		if stopped(canc) {
			put(m, "canceled", "started", canc.Started, "reason", canc.Reason, "exit_code", canc.ExitCode,
				"signal", int(canc.Signal), "stack", canc.Stack)
		}
	case errors.As(err, &over):
		put(m, "overloaded", "method", over.Method, "queued", over.Queued, "waited_ns", int64(over.Waited),
			"reason", over.Reason)
	case errors.As(err, &unh):
		put(m, "unhealthy", "method", unh.Method, "failures", unh.Failures, "since_ns", unh.Since.UnixNano(),
			"reason", unh.Reason, "last", errText(unh.Last))
	case errors.As(err, &quar):
		put(m, "quarantined", "method", quar.Method, "key", quar.Key, "args_hash", quar.ArgsHash,
			"deaths", quar.Deaths, "until_ns", quar.Until.UnixNano(), "reason", quar.Reason, "last", errText(quar.Last))
	case errors.As(err, &rem):
		put(m, "remote", "code", uint64(rem.Code), "message", rem.Message, "method", rem.Method,
			"request_id", rem.RequestID, "pid", rem.PID)
		if rem.Details != nil {
			m["details"] = rem.Details
		}
	case errors.As(err, &slow):
		put(m, "slow_subscriber", "object", slow.Object, "buffer", slow.Buffer)
	default:
		return false
	}
	return true
}

// stopped reports whether e's fields valid after Wait are filled. The pool
// fills them on a goroutine of its own while it stops the worker; the
// daemon answers at once (no caller waits past its deadline), so until then
// they are left out, not read as they are being written.
func stopped(e *bulkhead.CanceledError) bool {
	if e.Stopped == nil {
		return true
	}
	select {
	case <-e.Stopped:
		return true
	default:
		return false
	}
}

func put(m map[string]any, kind string, kv ...any) {
	m["kind"] = kind
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
}

// putSet adds the fields that are set: the optional ones, absent when zero
// (CLIENT-PROTOCOL.md section 7).
func putSet(m map[string]any, kv ...any) {
	for i := 0; i+1 < len(kv); i += 2 {
		if v := kv[i+1]; v != "" && v != 0 && v != int64(0) {
			m[kv[i].(string)] = v
		}
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// DecodeError turns an ERROR payload back into the error it was: the root
// and activation packages' types and sentinels, this package's, or an
// *Error.
func DecodeError(p []byte) error {
	var raw map[string]any
	if err := Decode(p, &raw); err != nil {
		return err
	}
	return errorOf(fields(raw))
}

// fields reads a decoded map with text keys.
type fields map[string]any

func (f fields) str(k string) string { s, _ := f[k].(string); return s }
func (f fields) b(k string) bool     { v, _ := f[k].(bool); return v }

func (f fields) i64(k string) int64 {
	switch v := f[k].(type) {
	case uint64:
		return int64(v)
	case int64:
		return v
	}
	return 0
}

func (f fields) u64(k string) uint64 { return uint64(f.i64(k)) }
func (f fields) n(k string) int      { return int(f.i64(k)) }

func errorOf(f fields) error {
	kind, msg := f.str("kind"), f.str("message")
	switch kind {
	case "crash":
		return &bulkhead.CrashError{Phase: phaseOf(f.str("phase")), PID: f.n("pid"), RequestID: f.u64("request_id"),
			Method: f.str("method"), ExitCode: f.n("exit_code"), Signal: syscall.Signal(f.n("signal")),
			CoreDumped: f.b("core_dumped"), Killed: f.b("killed"), Reason: f.str("reason"), Stderr: f.str("stderr"),
			Limit: limitOf(f.str("limit")), Replays: f.n("replays"), AbandonedBy: f.u64("abandoned_by"),
			PeakMemory: f.i64("peak_memory"), Syscall: f.str("syscall"), SyscallNumber: f.n("syscall_number"),
			Function: f.str("function"), Fingerprint: f.str("fingerprint"),
			CPU: time.Duration(f.i64("cpu_ns")), MaxRSS: f.i64("max_rss")}
	case "start":
		return &bulkhead.StartError{PID: f.n("pid"), ExitCode: f.n("exit_code"), Signal: syscall.Signal(f.n("signal")),
			Exited: f.b("exited"), Reason: f.str("reason"), Stderr: f.str("stderr"), Protection: f.str("protection")}
	case "canceled":
		cause := context.Canceled
		if f.str("cause") == "deadline" {
			cause = context.DeadlineExceeded
		}
		return &bulkhead.CanceledError{Method: f.str("method"), RequestID: f.u64("request_id"), PID: f.n("pid"),
			Err: cause, Started: f.b("started"), Reason: f.str("reason"), ExitCode: f.n("exit_code"),
			Signal: syscall.Signal(f.n("signal")), Stack: f.str("stack")}
	case "overloaded":
		return &bulkhead.OverloadedError{Method: f.str("method"), Queued: f.n("queued"),
			Waited: time.Duration(f.i64("waited_ns")), Reason: f.str("reason")}
	case "unhealthy":
		return &bulkhead.UnhealthyError{Method: f.str("method"), Failures: f.n("failures"),
			Since: time.Unix(0, f.i64("since_ns")), Reason: f.str("reason"), Last: textError(f.str("last"))}
	case "quarantined":
		return &bulkhead.QuarantinedError{Method: f.str("method"), Key: f.str("key"), ArgsHash: f.u64("args_hash"),
			Deaths: f.n("deaths"), Until: time.Unix(0, f.i64("until_ns")), Reason: f.str("reason"), Last: textError(f.str("last"))}
	case "remote":
		return &bulkhead.RemoteError{Code: bulkhead.ErrorCode(f.u64("code")), Message: msg, Details: f["details"],
			Method: f.str("method"), RequestID: f.u64("request_id"), PID: f.n("pid")}
	case "disconnected":
		e := &activation.DisconnectedError{Class: f.str("class"), Object: f.u64("object"), PID: f.n("pid")}
		if c, ok := f["cause"].(map[any]any); ok {
			e.Err = errorOf(textKeys(c))
		}
		return e
	case "slow_subscriber":
		return &activation.SlowSubscriberError{Object: f.u64("object"), Buffer: f.n("buffer")}
	}
	for _, s := range sentinels {
		if s.kind == kind {
			return &sentinelError{msg: msg, err: s.err}
		}
	}
	rest := make(map[string]any)
	for k, v := range f {
		if k != "kind" && k != "message" {
			rest[k] = v
		}
	}
	return &Error{Kind: kind, Message: msg, Fields: rest}
}

func textKeys(m map[any]any) fields {
	f := make(fields, len(m))
	for k, v := range m {
		if s, ok := k.(string); ok {
			f[s] = v
		}
	}
	return f
}

func textError(s string) error {
	if s == "" {
		return nil
	}
	return errors.New(s)
}

func phaseOf(s string) bulkhead.Phase {
	for _, p := range []bulkhead.Phase{bulkhead.PhaseStartup, bulkhead.PhaseCall, bulkhead.PhaseIdle} {
		if p.String() == s {
			return p
		}
	}
	return 0
}

func limitOf(s string) bulkhead.Limit {
	for l := bulkhead.LimitNone; l < 32; l++ {
		if l.String() == s {
			return l
		}
	}
	return bulkhead.LimitNone
}

// sentinelError is a sentinel as it came: the daemon's message, and
// errors.Is true for the sentinel.
type sentinelError struct {
	msg string
	err error
}

func (e *sentinelError) Error() string { return e.msg }
func (e *sentinelError) Unwrap() error { return e.err }
