package bulkhead

import (
	"log/slog"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// Every error type of the package is a slog.LogValuer: logged as
// slog.Any("err", err), it becomes a group of its fields (kind, pid,
// request id, signal by name, stderr...), which a JSON handler keeps
// apart for queries, instead of one sentence. "msg" holds Error().

// SignalName names sig as the kernel headers do ("SIGSEGV"), or "" for 0.
func SignalName(sig syscall.Signal) string {
	if sig == 0 {
		return ""
	}
	if n := unix.SignalName(sig); n != "" {
		return n
	}
	return "signal " + strconv.Itoa(int(sig))
}

// exitAttrs are the attributes of a process's end, those that are set.
func exitAttrs(code int, sig syscall.Signal, core bool) []slog.Attr {
	if sig != 0 {
		a := []slog.Attr{slog.String("signal", SignalName(sig))}
		if core {
			a = append(a, slog.Bool("core_dumped", true))
		}
		return a
	}
	return []slog.Attr{slog.Int("exit_code", code)}
}

// LogValue logs the crash with its phase, signal (by name), request and
// the head and tail of the worker's stderr.
func (e *CrashError) LogValue() slog.Value {
	a := []slog.Attr{
		slog.String("kind", "crash"), slog.String("msg", e.Error()), slog.String("phase", e.Phase.String()),
		slog.Int("pid", e.PID), slog.Uint64("request_id", e.RequestID), slog.String("method", e.Method),
	}
	a = append(a, exitAttrs(e.ExitCode, e.Signal, e.CoreDumped)...)
	a = append(a, slog.String("reason", e.Reason))
	if e.Function != "" {
		a = append(a, slog.String("function", e.Function))
	}
	if e.MaxRSS > 0 {
		a = append(a, slog.Duration("cpu", e.CPU), slog.Int64("max_rss", e.MaxRSS))
	}
	if e.Fingerprint != "" {
		a = append(a, slog.String("fingerprint", e.Fingerprint))
	}
	if e.Killed {
		a = append(a, slog.Bool("killed_by_pool", true))
	}
	if e.Limit != LimitNone {
		a = append(a, slog.String("limit", e.Limit.String()))
	}
	if e.Syscall != "" || e.SyscallNumber != 0 {
		a = append(a, slog.String("syscall", e.Syscall), slog.Int("syscall_nr", e.SyscallNumber))
	}
	if e.PeakMemory > 0 {
		a = append(a, slog.Int64("peak_memory", e.PeakMemory))
	}
	if e.Replays > 0 {
		a = append(a, slog.Int("replays", e.Replays))
	}
	if e.AbandonedBy != 0 {
		a = append(a, slog.Uint64("abandoned_by", e.AbandonedBy))
	}
	if e.Err != nil {
		a = append(a, slog.String("cause", e.Err.Error()))
	}
	if e.Stderr != "" {
		a = append(a, slog.String("stderr", e.Stderr))
	}
	return slog.GroupValue(a...)
}

// LogValue logs the failed start with the process's end and its stderr.
func (e *StartError) LogValue() slog.Value {
	a := []slog.Attr{slog.String("kind", "start"), slog.String("msg", e.Error()), slog.Int("pid", e.PID)}
	if e.Exited || e.Signal != 0 {
		a = append(a, exitAttrs(e.ExitCode, e.Signal, false)...)
	}
	a = append(a, slog.String("reason", e.Reason))
	if e.Protection != "" {
		a = append(a, slog.String("protection", e.Protection))
	}
	if e.Err != nil {
		a = append(a, slog.String("cause", e.Err.Error()))
	}
	if e.Stderr != "" {
		a = append(a, slog.String("stderr", e.Stderr))
	}
	return slog.GroupValue(a...)
}

// LogValue logs the abandoned call. The fields valid after Wait are
// logged only once they are filled, so that logging the error at once,
// while the worker is being stopped, reads nothing being written.
func (e *CanceledError) LogValue() slog.Value {
	a := []slog.Attr{
		slog.String("kind", "canceled"), slog.String("msg", e.Error()), slog.String("method", e.Method),
		slog.Uint64("request_id", e.RequestID), slog.Int("pid", e.PID),
	}
	if e.Err != nil {
		a = append(a, slog.String("cause", e.Err.Error()))
	}
	if e.PID != 0 && e.done() {
		a = append(a, slog.Bool("started", e.Started), slog.String("reason", e.Reason))
		a = append(a, exitAttrs(e.ExitCode, e.Signal, false)...)
		if e.Stack != "" {
			a = append(a, slog.String("stack", e.Stack))
		}
	}
	return slog.GroupValue(a...)
}

// LogValue logs the worker's error with its code, and its stack after a
// panic.
func (e *RemoteError) LogValue() slog.Value {
	a := []slog.Attr{
		slog.String("kind", "remote"), slog.String("msg", e.Error()), slog.String("code", e.Code.String()),
		slog.String("method", e.Method), slog.Uint64("request_id", e.RequestID), slog.Int("pid", e.PID),
		slog.String("message", e.Message),
	}
	if s := e.Stack(); s != "" {
		a = append(a, slog.String("stack", s))
	}
	return slog.GroupValue(a...)
}

// LogValue logs the refusal with the queue's length.
func (e *OverloadedError) LogValue() slog.Value {
	return slog.GroupValue(slog.String("kind", "overloaded"), slog.String("msg", e.Error()),
		slog.String("method", e.Method), slog.Int("queued", e.Queued), slog.Duration("waited", e.Waited))
}

// LogValue logs the refusal with the failure streak and the last failure.
func (e *UnhealthyError) LogValue() slog.Value {
	a := []slog.Attr{
		slog.String("kind", "unhealthy"), slog.String("msg", e.Error()), slog.String("method", e.Method),
		slog.Int("failures", e.Failures), slog.Time("since", e.Since),
	}
	if e.Last != nil {
		a = append(a, slog.Any("last", e.Last))
	}
	return slog.GroupValue(a...)
}

// LogValue logs the refusal with the fingerprint and the crash that put
// it in quarantine.
func (e *QuarantinedError) LogValue() slog.Value {
	a := []slog.Attr{
		slog.String("kind", "quarantined"), slog.String("msg", e.Error()), slog.String("method", e.Method),
	}
	if e.Key != "" {
		a = append(a, slog.String("key", e.Key))
	} else {
		a = append(a, slog.String("args_hash", strconv.FormatUint(e.ArgsHash, 16)))
	}
	a = append(a, slog.Int("deaths", e.Deaths), slog.Time("until", e.Until))
	if e.Last != nil {
		a = append(a, slog.Any("last", e.Last))
	}
	return slog.GroupValue(a...)
}
