package activation

import (
	"errors"
	"log/slog"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/internal/dispatch"
	"github.com/bulkhead-go/bulkhead/internal/proc"
	"github.com/bulkhead-go/bulkhead/internal/sandbox"
	"github.com/bulkhead-go/bulkhead/internal/wire"
)

// A class server's process: how it is started from a bulkhead.Process, and
// how its end is described. The connection machinery is the pool's
// (internal/dispatch); the errors are the root package's, so that
// errors.As works the same on a pool's calls and an object's.

// Defaults for what a bulkhead.Process leaves zero; the pool's are the same.
const (
	defaultStartTimeout = 10 * time.Second
	defaultKillGrace    = 2 * time.Second
	defaultStderrTail   = 4 << 10
	maxStderrTail       = 1 << 20
)

// serverProc is one class server's process, as the activator sees it.
type serverProc struct {
	dispatch.Worker
	// usage is what its sandbox recorded, set once it is reaped (before
	// Proc.Exited is closed).
	usage     sandbox.Usage
	memoryMax int64 // its Sandbox.MemoryMax
	// killed is set when the activator kills the process: its
	// connection broke, a request on it was abandoned, or it did not
	// register in time. Its end is then not counted as its own crash.
	killed atomic.Bool
	// program is the file it was started from (dispatch.Spec.Path),
	// whose symbols name the frames of its crash report.
	program  string
	fnOnce   sync.Once
	function string // nativeFunction's answer, once it is reaped
}

// nativeFunction is the C function the reaped server died in, from its
// crash report on stderr (bulkhead.NativeFunction, as a pool's worker), or
// "". It may read the program's symbols: never call it under a lock.
func (w *serverProc) nativeFunction() string {
	w.fnOnce.Do(func() { w.function = bulkhead.NativeFunction(w.Stderr.String(), w.program) })
	return w.function
}

// kill kills the process, marking its end as the activator's doing.
func (w *serverProc) kill() {
	w.killed.Store(true)
	w.Proc.Kill()
}

// processSpec is how to start a class server: dispatch's Spec, and its
// sandbox, which launchProcess applies at each start.
type processSpec struct {
	dispatch.Spec
	plan      *sandbox.Plan
	env       []string // Process.Env
	memoryMax int64    // Sandbox.MemoryMax, for its crashes' reasons
}

// newProcessSpec validates p into how to start it, reporting each problem
// to bad. Class servers always use the socket transport: the watcher polls
// it for the frames a server sends on its own.
func newProcessSpec(p bulkhead.Process, bad func(format string, args ...any)) processSpec {
	s := dispatch.Spec{
		Command: p.Command, Args: append([]string(nil), p.Args...), Dir: p.Dir,
		StderrTail: p.StderrTail, KillGrace: defaultKillGrace, StartTimeout: p.StartTimeout,
		MaxFrame: wire.DefaultMaxFrame,
	}
	plan, err := sandbox.NewPlan(sandbox.Settings(p.Sandbox))
	if err != nil {
		bad("Sandbox: %w", err)
	}
	if p.Command == "" {
		bad("Command is required")
	} else if path, err := exec.LookPath(p.Command); err != nil {
		bad("Command: %w", err)
	} else {
		s.Path = path
	}
	switch {
	case p.StartTimeout < 0:
		bad("StartTimeout = %v: must not be negative", p.StartTimeout)
	case p.StartTimeout == 0:
		s.StartTimeout = defaultStartTimeout
	}
	switch {
	case p.StderrTail < 0 || p.StderrTail > maxStderrTail:
		bad("StderrTail = %d: want 0 (4 KiB) to %d", p.StderrTail, maxStderrTail)
	case p.StderrTail == 0:
		s.StderrTail = defaultStderrTail
	}
	lim := proc.Rlimits(p.Limits)
	if err := lim.Validate(); err != nil {
		bad("Limits: %w", err)
	} else if lim.Set() {
		s.Limit = lim.Apply
	}
	return processSpec{Spec: s, plan: plan, env: append([]string(nil), p.Env...), memoryMax: p.Sandbox.MemoryMax}
}

// launchProcess starts a server of spec through sp and waits for its HELLO
// (dispatch.Launch). onExit runs once the process has been reaped; track is
// told when the wait for HELLO starts and ends.
func launchProcess(spec processSpec, sp *proc.Spawner, onExit func(*serverProc), track func(*serverProc, bool)) (*serverProc, error) {
	w := &serverProc{memoryMax: spec.memoryMax, program: spec.Path}
	h := dispatch.Hooks{
		Reaped:   func() { onExit(w) },
		Starting: func(waiting bool) { track(w, waiting) },
	}
	ds := spec.Spec
	ds.Prepare = func(s *dispatch.Spec) (func(bool, error) error, func(), error) {
		st, err := spec.plan.Prepare(s.Path, spec.env, s, slog.Default())
		if err != nil {
			return nil, nil, err
		}
		return st.Launched, func() {
			var err error
			if w.usage, err = st.Reaped(); err != nil {
				slog.Default().Warn("class server cgroup left behind", "pid", w.PID, "err", err)
			}
		}, nil
	}
	if err := dispatch.Launch(&w.Worker, ds, sp, h); err != nil {
		return nil, startError(err)
	}
	return w, nil
}

// startError is a launch's failure as a *bulkhead.StartError.
func startError(err error) error {
	var f *dispatch.StartFailure
	if !errors.As(err, &f) {
		return err
	}
	e := &bulkhead.StartError{PID: f.PID, ExitCode: f.Exit.Code, Signal: f.Exit.Signal, Exited: f.Exited,
		Reason: f.Reason, Stderr: f.Stderr, Err: f.Err}
	var se *sandbox.Error
	if errors.As(f.Err, &se) {
		e.Protection = se.Protection
	}
	return e
}

// serverCrash describes a server whose connection broke under request id:
// it died, closed its socket, or broke the protocol. A live server is of no
// further use, so it is killed first; serverCrash returns once the process
// has been reaped. A request it had not started is a crash between calls.
func serverCrash(w *serverProc, id uint64, method string, cause error) *bulkhead.CrashError {
	if !w.Proc.Exiting() && w.Conn.AbandonedBy() == 0 && w.killed.CompareAndSwap(false, true) {
		w.Proc.Kill()
	}
	<-w.Proc.Exited()
	ex := proc.ExitOf(w.Proc.State())
	killed := w.killed.Load() && ex.Signal == syscall.SIGKILL
	e := &bulkhead.CrashError{
		Phase: bulkhead.PhaseCall, PID: w.PID, RequestID: id, Method: method,
		ExitCode: ex.Code, Signal: ex.Signal, CoreDumped: ex.Core, Killed: killed,
		Reason: dispatch.CrashReason(ex, cause, killed), Stderr: w.Stderr.String(), Err: cause,
		AbandonedBy: w.Conn.AbandonedBy(), Function: w.nativeFunction(),
	}
	sandboxVerdict(e, w)
	if !w.HasStarted(id) {
		e.Phase = bulkhead.PhaseIdle
		e.Reason = "died before starting the request: " + e.Reason
	}
	return e
}

// idleCrash describes a server that died with no request of the caller's
// on it. It runs under the activator's lock: the caller has called
// w.nativeFunction before taking it.
func idleCrash(w *serverProc) *bulkhead.CrashError {
	ex := proc.ExitOf(w.Proc.State())
	e := &bulkhead.CrashError{Phase: bulkhead.PhaseIdle, PID: w.PID, ExitCode: ex.Code, Signal: ex.Signal,
		CoreDumped: ex.Core, Killed: w.killed.Load(), Reason: ex.String(), Stderr: w.Stderr.String(),
		AbandonedBy: w.Conn.AbandonedBy(), Function: w.nativeFunction()}
	sandboxVerdict(e, w)
	return e
}

// sandboxVerdict sets e's Limit and Reason, and what goes with them, if
// the server's sandbox killed it, as a pool does for its workers: a
// system call outside its seccomp profile or a death at pids.max is
// LimitSandbox, the kernel's OOM killer at memory.max LimitMemory.
func sandboxVerdict(e *bulkhead.CrashError, w *serverProc) {
	c, why := w.usage.Verdict(e.Signal, w.memoryMax)
	switch c {
	case sandbox.CauseNone:
		return
	case sandbox.CauseSeccomp:
		v := w.usage.Violation
		e.Limit, e.Killed, e.Syscall, e.SyscallNumber = bulkhead.LimitSandbox, true, v.Name, v.Nr
	case sandbox.CausePids:
		e.Limit = bulkhead.LimitSandbox
	case sandbox.CauseOOM:
		e.Limit, e.PeakMemory = bulkhead.LimitMemory, w.usage.PeakMemory
	}
	e.Reason = why
}

// startAttrs are a start failure's log attributes.
func startAttrs(err error) []any {
	var se *bulkhead.StartError
	if errors.As(err, &se) {
		return []any{"pid", se.PID, "reason", se.Reason, "stderr_tail", se.Stderr}
	}
	return []any{"err", err}
}
