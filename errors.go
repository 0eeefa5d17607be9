package bulkhead

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/bulkhead-go/bulkhead/internal/wire"
)

// The taxonomy of call failures. Every error a call returns matches exactly
// one of these with errors.Is or errors.As (docs/DESIGN.md, "Errors", has the
// full table):
//
//	*CrashError       errors.Is(err, ErrWorkerCrashed): the worker died or broke the protocol while the call was on it;
//	                  also errors.Is(err, ErrLimitExceeded) when it was killed for a limit (Limit says which)
//	*StartError       errors.Is(err, ErrStartFailed): no worker could be started for the call
//	*CanceledError    errors.Is(err, context.DeadlineExceeded / context.Canceled): the caller's ctx ended first;
//	                  the worker was stopped step by step (SIGTERM, DumpSignal, SIGKILL), Stack holds its stack dump
//	*OverloadedError  errors.Is(err, ErrOverloaded): the queue was full (MaxQueue) or the wait too long (QueueTimeout)
//	*UnhealthyError   errors.Is(err, ErrUnhealthy): workers keep failing to start or crashing idle; failed fast
//	*QuarantinedError errors.Is(err, ErrQuarantined): calls like this one kept killing workers; failed fast
//	*RemoteError      the worker answered with an error; it keeps serving (unless Code is CodePanic)
//	ErrClosed         the pool is closed
//	ErrEncoding       errors.Is(err, ErrEncoding): the arguments could not be encoded (CBOR, by
//	                  fxamacker/cbor: a type's MarshalCBOR is used), or the frame would be over
//	                  Config.MaxFrameSize; nothing was sent
//
// Errors for calls that never reached a worker carry RequestID 0 and PID 0.
var (
	ErrWorkerCrashed = errors.New("bulkhead: worker crashed")
	ErrStartFailed   = errors.New("bulkhead: worker failed to start")
	ErrClosed        = errors.New("bulkhead: pool closed")
	ErrLimitExceeded = errors.New("bulkhead: worker exceeded a resource limit")
	ErrOverloaded    = errors.New("bulkhead: pool overloaded")
	ErrUnhealthy     = errors.New("bulkhead: pool unhealthy")
	ErrQuarantined   = errors.New("bulkhead: request quarantined")
	ErrEncoding      = errors.New("bulkhead: arguments could not be encoded")
)

// Phase says when a worker died: at start-up, during a call, or between calls;
// each calls for a different answer (a start failure, the call's error, or
// nobody's).
type Phase int

const (
	PhaseStartup Phase = iota + 1 // before it said HELLO
	PhaseCall                     // while a call was on it
	PhaseIdle                     // between calls
)

func (p Phase) String() string {
	switch p {
	case PhaseStartup:
		return "startup"
	case PhaseCall:
		return "call"
	case PhaseIdle:
		return "idle"
	}
	return fmt.Sprintf("Phase(%d)", int(p))
}

// CrashError reports a call that failed because its worker died, closed its
// connection, or broke the protocol while the call was on it. The call had
// started (or may have: see docs/PROTOCOL.md, the start marker), so it was
// not run again.
type CrashError struct {
	Phase     Phase
	PID       int
	RequestID uint64
	Method    string

	ExitCode   int            // exit status, or -1 if killed by a signal
	Signal     syscall.Signal // the signal that ended the worker, or 0
	CoreDumped bool
	// Killed is true when the pool itself killed the worker, because it
	// closed its connection or broke the protocol; Signal is then SIGKILL.
	Killed bool
	Reason string // what happened, in words
	Stderr string // the head and tail of the worker's stderr (Config.StderrTail)
	Err    error  // the underlying connection or protocol error, if any
	// Limit is the resource limit the worker was killed for exceeding:
	// Config.MaxMemory (the pool killed it mid-call), Sandbox.MemoryMax
	// (the kernel's OOM killer did), or one of Limits.
	Limit Limit
	// PeakMemory is the peak memory of the worker's cgroup, in bytes, when
	// the kernel's OOM killer killed it at Sandbox.MemoryMax; else 0.
	PeakMemory int64
	// Syscall and SyscallNumber name the system call outside its seccomp
	// profile (Sandbox.Seccomp) that the worker was killed for, when Limit
	// is LimitSandbox; else "" and 0.
	Syscall       string
	SyscallNumber int
	// Replays is how many times the call had been replayed before this
	// attempt (idempotent methods only).
	Replays int
	// CPU and MaxRSS are the worker's resource usage over its whole life,
	// from the kernel's accounting when it was reaped (wait4's rusage): user
	// and system CPU time, and peak resident memory in bytes. Zero if the
	// kernel gave none.
	CPU    time.Duration
	MaxRSS int64
	// Function is the native function the worker died in, when its crash
	// report names it: for a Go worker whose C code faulted, the C function
	// its cgo call had entered (from the Go runtime's report on stderr);
	// for a C SDK worker, the innermost named frame of its report: the
	// faulting function, named from the symbol tables of the program or of
	// the library it is in if the report did not name it, or if none names
	// it (a static function of a stripped library), the nearest caller that
	// has a name, such as the library's exported function the call
	// entered. Stderr shows every frame. "" when the report does not say.
	Function string
	// Fingerprint is the call's quarantine fingerprint ("method key", or
	// "method #hash" of its arguments), set only with
	// Config.QuarantineAfter; "" otherwise.
	Fingerprint string
	// AbandonedBy, if not 0, is the request id of another call on the same
	// worker whose ctx ended and made the pool stop the worker: this call
	// was lost with it, at no fault of its own or the worker's. The worker's
	// end is then no crash of the worker's: Stats.CallCrashes and the
	// "worker crashed" log record leave it out.
	AbandonedBy uint64
}

func (e *CrashError) Error() string {
	if e.Method == "" { // it died between calls, or under none of this caller's
		return fmt.Sprintf("bulkhead: worker %d crashed: %s", e.PID, e.Reason)
	}
	return fmt.Sprintf("bulkhead: worker %d crashed during %q%s: %s", e.PID, e.Method, requestText(e.RequestID), e.Reason)
}

// Is makes errors.Is(err, ErrWorkerCrashed) true, and errors.Is(err,
// ErrLimitExceeded) when Limit is set.
func (e *CrashError) Is(target error) bool {
	return target == ErrWorkerCrashed || (target == ErrLimitExceeded && e.Limit != LimitNone)
}

func (e *CrashError) Unwrap() error { return e.Err }

// StartError reports a worker that did not get as far as HELLO: it could not
// be executed, exited or crashed, stayed silent past StartTimeout, or sent a
// HELLO that was refused.
type StartError struct {
	PID      int // 0 if it never ran
	ExitCode int // -1 if killed by a signal or still running when killed
	Signal   syscall.Signal
	Exited   bool // the process ended on its own before HELLO
	// Protection names the sandbox protection that could not be applied
	// ("user", "binary pin", ...; Config.Sandbox), so that the worker was
	// not started; empty for any other failure.
	Protection string
	Reason     string
	Stderr     string
	Err        error
}

func (e *StartError) Error() string {
	s := "bulkhead: worker failed to start: " + e.Reason
	if last := lastLine(e.Stderr); last != "" {
		s += "; its stderr ends: " + last // "cannot open shared object file", say
	}
	return s
}

// lastLine is the last non-empty line of s, at most 200 bytes of it.
func lastLine(s string) string {
	s = strings.TrimRight(s, " \t\r\n")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	s = strings.TrimSpace(s)
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// Is makes errors.Is(err, ErrStartFailed) true, and errors.Is(err,
// ErrWorkerCrashed) too when the process died on its own.
func (e *StartError) Is(target error) bool {
	return target == ErrStartFailed || (target == ErrWorkerCrashed && e.Exited)
}

func (e *StartError) Unwrap() error { return e.Err }

// CanceledError reports a call whose ctx ended before its reply. It wraps
// ctx.Err(), so errors.Is(err, context.DeadlineExceeded) works. Call returns
// it at once, whatever the worker is doing.
//
// A ctx that had ended before the call was sent (or while it waited for a
// worker) costs nothing: PID is 0, nothing was sent, Wait returns at once.
//
// A call a worker had: the worker may be stuck in native code, so it is
// stopped step by step, in the background, and replaced: SIGTERM, then
// after Config.TermGrace the Config.DumpSignal (SIGQUIT: a Go worker prints
// every goroutine's stack), then after Config.DumpGrace SIGKILL. Wait blocks
// until that is over and the fields below Wait's line are filled: Stack then
// holds the tail of what the worker printed, and Reason says which step
// ended it.
//
// The worker is left running, since it was not running the call or will
// finish it soon, when: the worker itself skipped the call because its
// deadline had passed (Started false at once); the call was queued behind
// others on its worker (Config.Pipeline); a worker that runs one call at a
// time had finished it already; or Config.CancelGrace is set, and the
// worker answers within the grace. The worker is sent CANCEL, and Wait
// blocks until it answered the call or exited.
//
// Started after Wait never says false for a call that ran. It is exact for
// the call a worker was running; a call the worker skipped, whose answer
// was lost with the worker, reads as started (the start marker is a
// high-water mark), the safe direction.
type CanceledError struct {
	Method    string
	RequestID uint64
	PID       int // 0 if the call never reached a worker
	Err       error

	// Valid after Wait:
	Started  bool           // the worker had started running the call (exact: read once it was dead)
	Reason   string         // how the worker was stopped
	ExitCode int            // the worker's exit status, or -1
	Signal   syscall.Signal // the signal that ended the worker, or 0
	Stack    string         // the head and tail of the worker's stderr after DumpSignal, or ""

	// Stopped, if not nil, is closed once the fields valid after Wait are
	// filled. Nil when nothing was left to stop: Wait returns at once.
	// Select on it to wait with a bound of one's own.
	Stopped <-chan struct{}

	stop chan struct{} // Stopped's sending side, for the pool's own errors
}

// arm makes e's report pending until e.stop is closed.
func (e *CanceledError) arm() *CanceledError {
	e.stop = make(chan struct{})
	e.Stopped = e.stop
	return e
}

// Wait blocks until the worker that had the call has been stopped and the
// fields documented as valid after Wait are filled. It returns at once for a
// call that never reached a worker. Safe to call from several goroutines.
func (e *CanceledError) Wait() {
	if e.Stopped != nil {
		<-e.Stopped
	}
}

// done reports whether the stop report is complete, without blocking.
func (e *CanceledError) done() bool {
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

func (e *CanceledError) Error() string {
	s := fmt.Sprintf("bulkhead: call %q%s abandoned: %v", e.Method, requestText(e.RequestID), e.Err)
	switch {
	case !e.done() || e.Reason == "":
	case e.PID != 0:
		s += "; worker " + fmt.Sprint(e.PID) + " " + e.Reason
	default:
		s += "; " + e.Reason
	}
	return s
}

// requestText is " (request id)", or "" for a call that got no id.
func requestText(id uint64) string {
	if id == 0 {
		return ""
	}
	return fmt.Sprintf(" (request %d)", id)
}

func (e *CanceledError) Unwrap() error { return e.Err }

// ErrorCode is the code of a RemoteError (docs/PROTOCOL.md section 3).
type ErrorCode uint64

const (
	CodeApplication    ErrorCode = wire.CodeApplication
	CodeUnknownMethod  ErrorCode = wire.CodeUnknownMethod
	CodeBadArguments   ErrorCode = wire.CodeBadArguments
	CodePanic          ErrorCode = wire.CodePanic
	CodeCanceled       ErrorCode = wire.CodeCanceled
	CodeServerStopping ErrorCode = wire.CodeServerStopping
)

func (c ErrorCode) String() string {
	switch c {
	case CodeApplication:
		return "application"
	case CodeUnknownMethod:
		return "unknown_method"
	case CodeBadArguments:
		return "bad_arguments"
	case CodePanic:
		return "panic"
	case CodeCanceled:
		return "canceled"
	case CodeServerStopping:
		return "server_stopping"
	}
	return fmt.Sprintf("code(%d)", uint64(c))
}

// RemoteError is an error the worker's handler returned. The worker is
// healthy and keeps serving, except after CodePanic.
type RemoteError struct {
	Code      ErrorCode
	Message   string
	Details   any
	Method    string
	RequestID uint64
	PID       int
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("bulkhead: %s error from worker %d in %q: %s", e.Code, e.PID, e.Method, e.Message)
}

// skipped reports a worker's ERROR canceled that says no handler ran
// (details {"started": false}, PROTOCOL.md section 3).
func skipped(code ErrorCode, details any) bool { return wire.Skipped(uint64(code), details) }

// Stack returns the worker's stack trace for a CodePanic error, or "".
func (e *RemoteError) Stack() string {
	if m, ok := e.Details.(map[any]any); ok {
		s, _ := m["stack"].(string)
		return s
	}
	return ""
}

// OverloadedError reports a call refused because the pool was overloaded:
// MaxQueue calls were already waiting, or it waited QueueTimeout. Nothing
// was sent to a worker.
type OverloadedError struct {
	Method string
	Queued int           // calls waiting when it was refused
	Waited time.Duration // how long it waited (QueueTimeout), or 0
	Reason string
}

func (e *OverloadedError) Error() string {
	return fmt.Sprintf("bulkhead: call %q refused: %s", e.Method, e.Reason)
}

// Is makes errors.Is(err, ErrOverloaded) true.
func (e *OverloadedError) Is(target error) bool { return target == ErrOverloaded }

// UnhealthyError reports a call failed fast because workers keep failing to
// start or crashing while idle (Config.UnhealthyAfter). Nothing was sent to
// a worker. The pool probes one worker at a time and heals by itself.
type UnhealthyError struct {
	Method   string
	Failures int       // failures in a row
	Since    time.Time // when the pool turned unhealthy
	// Last is the latest failure: a *StartError or a *CrashError of phase
	// idle. It is not unwrapped, so that errors.Is(err, ErrStartFailed)
	// stays false for a call that no worker ever saw.
	Last   error
	Reason string
}

func (e *UnhealthyError) Error() string {
	return fmt.Sprintf("bulkhead: call %q failed fast: %s; last failure: %v", e.Method, e.Reason, e.Last)
}

// Is makes errors.Is(err, ErrUnhealthy) true.
func (e *UnhealthyError) Is(target error) bool { return target == ErrUnhealthy }

// QuarantinedError reports a call failed fast because calls with the same
// fingerprint killed Config.QuarantineAfter workers. Nothing was sent.
type QuarantinedError struct {
	Method   string
	Key      string // the caller's key (WithFingerprint), or ""
	ArgsHash uint64 // the hash of the arguments, when Key is ""
	Deaths   int    // worker deaths attributed to the fingerprint
	Until    time.Time
	// Last is the crash that put the fingerprint in quarantine; its PID and
	// RequestID name the worker and call. Not unwrapped.
	Last   error
	Reason string
}

func (e *QuarantinedError) Error() string {
	return fmt.Sprintf("bulkhead: call %q quarantined: %s", e.Method, e.Reason)
}

// Is makes errors.Is(err, ErrQuarantined) true.
func (e *QuarantinedError) Is(target error) bool { return target == ErrQuarantined }
