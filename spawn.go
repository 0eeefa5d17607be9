package bulkhead

import (
	"errors"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/bulkhead-go/bulkhead/internal/dispatch"
	"github.com/bulkhead-go/bulkhead/internal/proc"
	"github.com/bulkhead-go/bulkhead/internal/sandbox"
	"github.com/bulkhead-go/bulkhead/internal/wire"
)

// workerProc is the dispatcher's view of one worker process. Fields below mu
// are guarded by Pool.mu.
type workerProc struct {
	dispatch.Worker // the process, its connection and start marker (set by launch)

	capacity int       // calls it may have in flight
	born     time.Time // when it said HELLO

	// lost, if set, is told at once when a caller finds the connection
	// broken, before the process is reaped, so that its owner can start
	// a replacement without waiting for the reaping (see crashOf). Set
	// before the worker takes its first call.
	lost func(*workerProc)

	// guarded by Pool.mu
	state     state        // where it is in its life (worker_state.go)
	inflight  int          // calls that hold it
	hung      int          // abandoned calls whose stopHung is stopping it
	holds     int          // users of conn and marker: the process, inflight, hung (dropLocked)
	available bool         // in Pool.avail
	queueable bool         // in Pool.queueable
	wasSpare  bool         // it left Pool.spares without being promoted (its death is logged as a spare's)
	retireWhy string       // why it was retired, for the log; set on entering retiring (retired)
	crashFP   *fingerprint // the fingerprint of the call that crashed it, if its caller saw that first
	slowID    uint64       // the latest call logged as slow (Config.SlowCall)

	broken atomic.Bool // its connection failed under a call; being killed
	// killedByClose: Close's ctx ended with the worker still running.
	killedByClose atomic.Bool
	current       atomic.Uint64 // request id of the latest call, for the crash log
	// curMethod and curSince describe the latest call sent to it, for the
	// status page (Pool.Snapshot): its method's counters (which name it)
	// and when it was sent (Pool's metrics clock, nanoseconds).
	curMethod atomic.Pointer[methodMetrics]
	curSince  atomic.Int64

	pol workerPolicy // recycling and limit state (policy_recycle.go)

	usage sandbox.Usage // what its cgroup recorded (Sandbox.Cgroup), read once it is reaped
	syms  *elfSymbols   // its program's function symbols, for C SDK reports (forensics_c.go)
}

// launch spawns one worker of s.Command through sp and waits for its HELLO,
// its exit, or the start timeout, whichever comes first. onExit runs once the
// process has exited and been reaped, whatever happened. track, if not nil,
// is told when the worker starts and stops waiting for HELLO, so that an
// owner closing down can cut the wait short with w.Conn.Shutdown.
// extraEnv is added to the worker's environment.
func launch(s *settings, sp *proc.Spawner, onExit func(*workerProc), track func(*workerProc, bool), extraEnv ...string) (*workerProc, error) {
	return launchWatched(s, sp, nil, onExit, track, nil, extraEnv...)
}

// launchWatched is launch with onDied, which runs as soon as the pidfd
// reports the worker's exit, before the reaping (which a descendant holding
// its stderr can delay): the connection is shut down first, so that nothing
// written after the death, by a descendant that kept the socket, is read;
// and with opts, which tunes the connection from the worker's HELLO.
func launchWatched(s *settings, sp *proc.Spawner, onDied, onExit func(*workerProc), track func(*workerProc, bool),
	opts func(wire.Hello) dispatch.Options, extraEnv ...string) (*workerProc, error) {
	w := &workerProc{syms: s.syms}
	h := dispatch.Hooks{Reaped: func() { onExit(w) }}
	if onDied != nil {
		h.Died = func() { onDied(w) }
	}
	if track != nil {
		h.Starting = func(waiting bool) { track(w, waiting) }
	}
	spec := s.spec(extraEnv)
	spec.Options = opts
	spec.Fork = s.fork
	spec.Prepare = func(spec *dispatch.Spec) (func(bool, error) error, func(), error) {
		st, err := s.sandbox.Prepare(s.path, s.Env, spec, s.Logger)
		if err != nil {
			return nil, nil, err
		}
		return st.Launched, func() { w.reaped(st, s.Logger) }, nil
	}
	if err := dispatch.Launch(&w.Worker, spec, sp, h); err != nil {
		return nil, startError(err)
	}
	w.capacity = s.capacity(w.Hello)
	w.born = time.Now()
	if int(w.Hello.PID) != w.PID && !s.Sandbox.IsolatePID { // in its PID namespace, it is PID 2
		s.Logger.Warn("worker HELLO names another pid", "pid", w.PID, "hello_pid", w.Hello.PID)
	}
	return w, nil
}

// callUsageEnv asks a worker for a USAGE frame before each answer
// (Config.CallUsage; PROTOCOL.md section 1).
const callUsageEnv = "BULKHEAD_CALL_USAGE=1"

// capacity is how many calls at once a worker that said h runs.
func (s *settings) capacity(h wire.Hello) int { return min(s.ConcurrencyPerWorker, int(h.Concurrency)) }

// spec is how launch starts a worker of s, with extraEnv last.
func (s *settings) spec(extraEnv []string) dispatch.Spec {
	if s.CallUsage {
		extraEnv = append(extraEnv[:len(extraEnv):len(extraEnv)], callUsageEnv)
	}
	sp := dispatch.Spec{
		Path: s.path, Command: s.Command, Args: s.Args, Env: s.Env, Dir: s.Dir, ExtraEnv: extraEnv,
		StderrTail: s.StderrTail, KillGrace: s.KillGrace, StartTimeout: s.StartTimeout, MaxFrame: s.maxFrame,
		Shm: s.Transport == TransportShm, ShmRingSize: s.ShmRingSize, ShmSpin: s.ShmSpin,
	}
	if s.Limits.set() {
		sp.Limit = s.Limits.rlimits().Apply
	}
	return sp
}

// startError is launch's failure as the package's error type.
func startError(err error) error {
	var f *dispatch.StartFailure
	if !errors.As(err, &f) {
		return err
	}
	e := &StartError{PID: f.PID, ExitCode: f.Exit.Code, Signal: f.Exit.Signal, Exited: f.Exited,
		Reason: f.Reason, Stderr: f.Stderr, Err: f.Err}
	var se *sandbox.Error
	if errors.As(f.Err, &se) {
		e.Protection = se.Protection
		e.Reason = se.Error()
	}
	return e
}

// transport reports which transport w's frames use.
func (w *workerProc) transport() Transport {
	if w.Conn.OnShm() {
		return TransportShm
	}
	return TransportSocket
}

// crashOf describes a worker whose connection broke under request id: it
// died, closed its socket, or broke the protocol. A live worker is of no
// further use and cannot be trusted to exit, so it is killed first; either
// way crashOf returns once the process has been reaped.
func crashOf(w *workerProc, id uint64, method string, cause error) *CrashError {
	w.finish()
	<-w.Proc.Exited() // prompt: it is dead or SIGKILLed, or being stopped
	return describeCrash(w, id, method, cause)
}

// finish takes a worker whose connection broke out of service and has it
// killed, unless it is dying already or being stopped step by step.
func (w *workerProc) finish() {
	if w.lost != nil {
		w.lost(w) // the worker is finished either way: replace it now
	}
	// A connection shut down to abandon a call is not the worker's fault,
	// and the pool is stopping the worker already (stopHung, abandon).
	// Several calls may see the same broken connection (Config.Pipeline,
	// ConcurrencyPerWorker): the first kills, and all say so.
	if !w.Proc.Exiting() && w.Conn.AbandonedBy() == 0 && w.broken.CompareAndSwap(false, true) {
		w.Proc.Kill()
	}
}

// describeCrash describes a worker that has exited, whose connection broke
// under request id.
func describeCrash(w *workerProc, id uint64, method string, cause error) *CrashError {
	ex := proc.ExitOf(w.Proc.State())
	e := &CrashError{
		Phase: PhaseCall, PID: w.PID, RequestID: id, Method: method,
		ExitCode: ex.Code, Signal: ex.Signal, CoreDumped: ex.Core,
		Killed: w.broken.Load() && ex.Signal == syscall.SIGKILL,
		Stderr: w.Stderr.String(), Err: cause,
	}
	e.Function = nativeFunction(e.Stderr, w.syms)
	e.CPU, e.MaxRSS = usageOf(rusage(w))
	if w.killedByClose.Load() {
		e.Killed = true
		e.Reason = "killed by the pool's Close, whose ctx ended before this call (" + ex.String() + ")"
	} else {
		e.Reason = dispatch.CrashReason(ex, cause, e.Killed)
	}
	return e
}
