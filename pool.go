// Package bulkhead calls unreliable native code in worker processes, so that
// a segfault, abort, leak or hang kills a worker, never the service.
//
// A Pool starts worker programs (written with package worker, or in any
// language that speaks docs/PROTOCOL.md) and routes calls to them, first come,
// first served. A worker that dies at start-up, during a call or between calls
// costs at most the one call it was running, which gets a typed error; the
// worker is replaced and no call is lost or run twice by the pool's doing.
package bulkhead

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"syscall"
	"time"

	"github.com/bulkhead-go/bulkhead/internal/dispatch"

	"github.com/bulkhead-go/bulkhead/internal/proc"
	"github.com/bulkhead-go/bulkhead/internal/wire"
)

// Pool routes calls to worker processes. It is safe for concurrent use.
type Pool struct {
	cfg     settings
	hooks   hooks
	spawner *proc.Spawner
	done    chan struct{} // closed by Close: stops spawn retries and the monitor

	mu        sync.Mutex
	workers   map[*workerProc]struct{} // said HELLO and not yet exited
	starting  map[*workerProc]struct{} // spawned, waiting for HELLO
	avail     []*workerProc            // workers with spare capacity
	queueable []*workerProc            // workers with room in their pipeline (Config.Pipeline)
	waiters   waitQueue
	active    int // workers that count toward the pool's size (not retiring)
	pending   int // spawns under way
	inflight  int // calls holding a worker
	closed    bool
	drained   chan struct{} // closed when inflight reaches 0 after Close
	respawns  ring
	loop      crashLoop
	quar      *quarantine   // nil: quarantine is off
	sweepBuf  []*workerProc // the monitor's scratch list

	spares       []*workerProc // warm spares, ready and taking no calls (spare.go)
	sparePending int           // spare spawns under way

	forks     forkServers    // Config.ForkServer (pool_fork.go)
	wg        sync.WaitGroup // spawn goroutines, the monitor, fork server starts
	closeOnce sync.Once
	closeErr  error

	stats   counters
	metrics callMetrics      // per method and outcome, queue wait, crashes by signal (pool_metrics.go)
	crashes crashLog         // the latest crashes, for Snapshot; guarded by mu
	bufs    dispatch.Buffers // large reply buffers given back by Reply.Release

	// fx are effects decided under mu and run by unlock once it is
	// released: writes to workers, signals, log records. Nothing that can
	// block, or call a user's slog handler, runs under the pool's lock.
	fx []func()
}

// unlock releases p.mu, then runs the effects queued under it, in order.
func (p *Pool) unlock() {
	fx := p.fx
	p.fx = nil
	p.mu.Unlock()
	for _, f := range fx {
		f()
	}
}

// afterLocked queues f to run once p.mu is released (unlock).
func (p *Pool) afterLocked(f func()) { p.fx = append(p.fx, f) }

// logLocked queues a log record for after the lock.
func (p *Pool) logLocked(level slog.Level, msg string, args ...any) {
	l := p.cfg.Logger
	p.afterLocked(func() { l.Log(context.Background(), level, msg, args...) })
}

// New validates cfg, starts cfg's MinWorkers workers and returns once one of
// them is ready. It fails if every initial worker fails to start (the error
// is the first *StartError) or if ctx ends first. Later start failures are
// retried in the background and never fail New. With MinWorkers 0 (and
// MaxWorkers set) New starts nothing and returns at once: the first call
// starts the first worker.
func New(ctx context.Context, cfg Config) (*Pool, error) {
	return newPool(ctx, cfg, hooks{})
}

func newPool(ctx context.Context, cfg Config, h hooks) (*Pool, error) {
	s, err := cfg.settings()
	if err != nil {
		return nil, err
	}
	if err := s.forkRefusal(); err != nil {
		return nil, err
	}
	p := &Pool{
		cfg:      s,
		hooks:    h,
		spawner:  proc.NewSpawner(),
		done:     make(chan struct{}),
		workers:  make(map[*workerProc]struct{}),
		starting: make(map[*workerProc]struct{}),
	}
	if s.Sandbox.any() {
		// Every worker then has no_new_privs, whatever else its
		// sandbox does (the trampoline sets it too).
		if err := p.spawner.NoNewPrivs(); err != nil {
			p.spawner.Close()
			return nil, &StartError{ExitCode: -1, Protection: "no_new_privs", Reason: "sandbox: no_new_privs: " + err.Error(), Err: err}
		}
	}
	p.loop.init(s.UnhealthyAfter)
	p.metrics.epoch = time.Now()
	if s.QuarantineAfter > 0 {
		p.quar = newQuarantine(&p.cfg)
		p.quar.log = func(msg string, args ...any) { p.logLocked(slog.LevelWarn, msg, args...) }
	}
	if s.monitored() && !h.noMonitor {
		p.wg.Add(1)
		go p.every(s.MonitorInterval, p.sweep)
	}
	if s.SlowCall > 0 {
		p.wg.Add(1)
		go p.every(max(s.SlowCall/4, time.Millisecond), p.findSlow) // four looks per SlowCall
	}
	if s.ForkServer {
		// Before the first workers, so that they are forked already.
		p.cfg.fork = p.forkWorker
		if p.claimForkStart(false) {
			p.startForkServer()
		}
	}
	if s.min == 0 {
		p.mu.Lock()
		p.replenishLocked()
		p.unlock()
		return p, nil
	}
	first := make(chan error, s.min)
	p.mu.Lock()
	for range s.min {
		p.spawnLocked(spawnReq{first: first})
	}
	p.replenishLocked()
	p.unlock()
	var firstErr error
	for range s.min {
		select {
		case err := <-first:
			if err == nil {
				return p, nil
			}
			if firstErr == nil {
				firstErr = err
			}
		case <-ctx.Done():
			firstErr = ctx.Err()
		}
		if ctx.Err() != nil {
			break
		}
	}
	closeCtx, cancel := context.WithCancel(context.Background())
	cancel() // close at once: nothing useful is running
	_ = p.Close(closeCtx)
	return nil, firstErr
}

// now is the pool's clock; tests inject one.
func (p *Pool) now() time.Time {
	if p.hooks.now != nil {
		return p.hooks.now()
	}
	return time.Now()
}

// onExit runs once per worker, on its watching goroutine, after the process
// has been reaped.
func (p *Pool) onExit(w *workerProc) {
	w.Conn.Shutdown() // wake a caller blocked reading, even if a grandchild holds the socket
	w.Conn.DropOrphans(dispatch.ErrWorkerExited)
	fn := nativeFunction(w.Stderr.String(), w.syms) // may read the program's symbols: not under the lock
	p.mu.Lock()
	if _, ok := p.workers[w]; !ok {
		// Not taken in: a start-up failure, which launch cleans up, or
		// a worker that exited right after its HELLO, which spawn finds
		// dead (diedAfterHello).
		w.to(dead)
		p.unlock()
		return
	}
	ex := proc.ExitOf(w.Proc.State())
	delete(p.workers, w)
	p.moveLocked(w, dead)
	p.removeAvailLocked(w)
	wasSpare := w.wasSpare
	// A death is during a call only if the worker had begun one it had not
	// answered: a call still unstarted (it is redispatched) does not make
	// the death a call crash (an idle timeout exit that raced a call's
	// arrival was counted as one).
	phase := PhaseIdle
	if w.inflight > 0 && (!w.Hello.Marker || w.StartedWord().Load() > w.Conn.Answered()) {
		phase = PhaseCall
	}
	memKill := w.pol.limitKill.Load() == int32(LimitMemory)
	// A worker whose connection a cancellation shut down exits at the end
	// of its stream: the pool's doing, though the caller may not have
	// retired it yet.
	abandoned := w.Conn.AbandonedBy() != 0
	expected := (w.retired() || abandoned) && !memKill
	why := w.retireWhy
	if why == "" && abandoned {
		why = "connection shut down by an abandoned call"
	}
	var limit Limit
	switch {
	case memKill:
		limit = LimitMemory
	case sandboxLimit(&w.usage, ex.Signal) != LimitNone:
		limit = sandboxLimit(&w.usage, ex.Signal)
	case !expected:
		limit = classifyLimit(&p.cfg.Limits, ex.Signal, w.broken.Load(), rusage(w), w.Stderr.String())
	}
	if !expected {
		p.recordCrashLocked(w, phase, ex.Signal, ex.Code, ex.Core, ex.String(), limit, fn)
	}
	if !expected && phase == PhaseIdle && !p.closed {
		// Nobody's call killed it: the worker itself is failing.
		p.failureLocked(&CrashError{Phase: PhaseIdle, PID: w.PID, ExitCode: ex.Code, Signal: ex.Signal,
			CoreDumped: ex.Core, Reason: "died between calls: " + ex.String(), Stderr: w.Stderr.String(), Limit: limit})
	}
	p.fillLocked(time.Now())
	last := w.dropLocked() // the process's hold
	p.unlock()

	if expected {
		// A worker that Close stops is news to nobody: Debug, so that a
		// small program's Close does not print a record per worker.
		level := slog.LevelInfo
		if why == "pool closed" {
			level = slog.LevelDebug
		}
		p.cfg.Logger.Log(context.Background(), level, "worker stopped", "pid", w.PID, "reason", why, "exit", ex.String())
	} else {
		p.stats.crashes[phase].Add(1)
		p.metrics.crashed(phase, ex.Signal)
		attrs := crashAttrs(w, phase, ex, limit, memKill, wasSpare, fn)
		p.cfg.Logger.Error("worker crashed", attrs...)
	}
	if last {
		w.Close()
	}
}

// crashAttrs are the "worker crashed" record's attributes: every field a
// CrashError of the death would carry, and where the worker was.
func crashAttrs(w *workerProc, phase Phase, ex proc.Exit, limit Limit, memKill, wasSpare bool, fn string) []any {
	attrs := []any{"pid", w.PID, "phase", phase.String(), "exit", ex.String(), "exit_code", ex.Code,
		"signal", SignalName(ex.Signal), "core_dumped", ex.Core, "stderr_tail", w.Stderr.String()}
	if phase == PhaseCall {
		attrs = append(attrs, "request_id", w.current.Load())
	}
	if fn != "" {
		attrs = append(attrs, "function", fn)
	}
	if w.broken.Load() || memKill {
		attrs = append(attrs, "killed_by_pool", true)
	}
	if limit != LimitNone {
		attrs = append(attrs, "limit", limit.String())
	}
	if wasSpare {
		attrs = append(attrs, "spare", true)
	}
	return attrs
}

// grant is what a waiting caller receives: a worker, or the reason it will
// get none.
type grant struct {
	w   *workerProc
	err error
}

// acquire takes a worker with spare capacity, waiting in FIFO order. It
// fails fast for a quarantined fingerprint (fp is nil when quarantine is
// off), an unhealthy pool, or a full queue.
//
// whole says that the call's frame is too large to be queued behind other
// calls in a worker's socket (Config.Pipeline): writing it would block until
// the worker reads, and a write cut short by a deadline costs the worker,
// and the call it runs. Such a call takes only a worker that can run it.
func (p *Pool) acquire(ctx context.Context, method string, fp *fingerprint, whole bool) (*workerProc, error) {
	p.mu.Lock()
	if p.closed {
		p.unlock()
		return nil, ErrClosed
	}
	if fp != nil {
		if err := p.quar.checkLocked(fp, method, p.now); err != nil {
			p.stats.quarantineRefused.Add(1)
			p.unlock()
			return nil, err
		}
	}
	if p.loop.unhealthy {
		err := p.unhealthyErrorLocked(method)
		p.unlock()
		return nil, err
	}
	if p.waiters.empty() && len(p.avail) > 0 {
		w := p.avail[len(p.avail)-1]
		p.takeLocked(w)
		p.unlock()
		return w, nil
	}
	if !whole && p.waiters.empty() && len(p.queueable) > 0 && p.atMaxLocked() {
		w := p.queueable[0]
		for _, x := range p.queueable[1:] {
			if x.inflight < w.inflight {
				w = x
			}
		}
		p.takeLocked(w)
		p.unlock()
		return w, nil
	}
	if p.waiters.n >= p.cfg.MaxQueue {
		n := p.waiters.n
		p.unlock()
		p.stats.overloaded.Add(1)
		return nil, &OverloadedError{Method: method, Queued: n,
			Reason: fmt.Sprintf("%d calls already waiting for a worker (MaxQueue)", n)}
	}
	wt := getWaiter()
	wt.whole = whole
	p.waiters.push(wt)
	p.fillLocked(time.Time{})
	p.unlock()
	t0 := p.metrics.clock()
	w, err := p.wait(ctx, method, wt)
	p.metrics.queue.observe(p.metrics.clock() - t0)
	return w, err
}

// takeLocked counts a call on w.
func (p *Pool) takeLocked(w *workerProc) {
	p.holdCallLocked(w)
	if w.inflight >= w.capacity {
		p.avail = removeWorker(p.avail, w, &w.available)
		if w.inflight >= p.depth(w) {
			p.queueable = removeWorker(p.queueable, w, &w.queueable)
		}
	}
}

// holdCallLocked counts a call, or a goroutine acting for one, as holding
// w: it keeps conn and marker (holdLocked) until release.
func (p *Pool) holdCallLocked(w *workerProc) {
	w.inflight++
	p.inflight++
	w.holdLocked()
}

// connOptions tunes the connection of a worker that said h: large replies
// into the pool's buffers; the serial marker; calls held back for the
// reader with Config.Pipeline (depth beyond capacity); followers only with
// Config.CancelGrace.
func (p *Pool) connOptions(h wire.Hello) dispatch.Options {
	capacity := p.cfg.capacity(h)
	o := dispatch.Options{Buffers: &p.bufs, Follow: p.cfg.CancelGrace > 0, Serial: h.Marker && capacity == 1}
	if p.cfg.Pipeline > 0 && h.Marker {
		o.HoldAfter = capacity + 1
	}
	return o
}

// depth is how many calls w may have in flight, the ones queued in
// its socket (Config.Pipeline) included.
func (p *Pool) depth(w *workerProc) int {
	if p.cfg.Pipeline > 0 && w.Hello.Marker {
		return w.capacity + p.cfg.Pipeline
	}
	return w.capacity
}

// atMaxLocked reports whether the pool has all the workers it may have, so
// that calls may be queued on busy workers (Config.Pipeline) rather than
// wait for a new one.
func (p *Pool) atMaxLocked() bool { return p.active+p.pending >= p.cfg.max }

// offerLocked gives w's spare capacity to waiting callers, oldest first, and
// makes what is left available. With Config.Pipeline, waiting callers may
// also be queued on a busy worker; only room to run a call makes a worker
// available to a caller that did not wait.
func (p *Pool) offerLocked(w *workerProc) {
	limit, depth := w.capacity, p.depth(w)
	if p.atMaxLocked() {
		// The pool cannot grow: queue calls on the worker itself
		// (Config.Pipeline), where it finds them without a round trip.
		limit = depth
	}
	for w.inflight < limit {
		if wt := p.waiters.head; wt == nil || wt.whole && w.inflight >= w.capacity {
			break // first come, first served: the oldest waits for room to run
		}
		wt := p.waiters.pop()
		p.holdCallLocked(w)
		wt.ch <- grant{w: w}
	}
	if w.inflight < w.capacity && !w.available {
		w.available = true
		p.avail = append(p.avail, w)
	}
	if w.inflight < depth && depth > w.capacity && !w.queueable {
		w.queueable = true
		p.queueable = append(p.queueable, w)
	}
}

// removeAvailLocked takes w off both lists of workers with room: it is
// leaving.
func (p *Pool) removeAvailLocked(w *workerProc) {
	p.avail = removeWorker(p.avail, w, &w.available)
	p.queueable = removeWorker(p.queueable, w, &w.queueable)
}

// removeWorker removes w from list if *in says it is there.
func removeWorker(list []*workerProc, w *workerProc, in *bool) []*workerProc {
	if !*in {
		return list
	}
	*in = false
	if n := len(list); n > 0 && list[n-1] == w {
		return list[:n-1] // the hot case: acquire takes the top
	}
	for i, x := range list {
		if x == w {
			return append(list[:i], list[i+1:]...)
		}
	}
	return list
}

// release ends a call's hold on w. served is true when the worker answered
// the call (a reply or an error of its own): evidence that workers work,
// which resets the crash-loop count.
func (p *Pool) release(w *workerProc, served bool) {
	p.mu.Lock()
	w.inflight--
	p.inflight--
	last := w.dropLocked()
	w.pol.calls++
	if served && p.loop.streak > 0 {
		p.healedLocked()
	}
	if p.closed && p.inflight == 0 && p.drained != nil {
		close(p.drained)
		p.drained = nil
	}
	switch {
	case last: // dead, and nothing else uses conn and marker
		p.unlock()
		w.Close()
		return
	case w.state != serving || w.broken.Load():
		if w.state == retiring && w.inflight == 0 && w.hung == 0 {
			p.stopLocked(w)
		}
	case !p.closed:
		if p.cfg.timed() {
			now := p.now()
			w.pol.lastUsed = now
			if r := p.dueLocked(w, now); r != RecycleNone {
				p.recycleLocked(w, r)
			}
		} else if r := p.dueLocked(w, time.Time{}); r != RecycleNone {
			p.recycleLocked(w, r)
		}
		if w.state == serving {
			p.offerLocked(w)
		}
	}
	p.unlock()
}

// retireLocked takes w out of service on purpose (recycling, a panic, an
// abandoned call, a memory kill); it is stopped once its calls are done,
// and replaced now if the pool needs it. reason, if set, is counted and
// logged as a recycle.
func (p *Pool) retireLocked(w *workerProc, why string, reason RecycleReason) {
	if w.state == retiring || w.state == dead {
		return
	}
	p.moveLocked(w, retiring)
	w.retireWhy = why
	p.removeAvailLocked(w)
	if reason != RecycleNone {
		p.stats.recycled[reason].Add(1)
		p.logLocked(slog.LevelInfo, "worker recycled", "pid", w.PID, "reason", reason.String(), "calls", w.pol.calls)
	}
	p.fillLocked(time.Now())
	if w.inflight == 0 {
		p.stopLocked(w)
	}
}

// stopLocked asks w to quit and escalates to SIGTERM, then SIGKILL, once
// the lock is released.
//
// The QUIT is written after the lock is released, by which time the worker
// may have exited: the effect holds its socket (and shared-memory region)
// until it is done, as every user of them must.
func (p *Pool) stopLocked(w *workerProc) {
	grace := p.cfg.KillGrace
	w.holdLocked()
	p.afterLocked(func() {
		w.Conn.SendControl(wire.TypeQuit, 0)
		w.Proc.Stop(proc.Step{Wait: grace}, proc.Step{Signal: syscall.SIGTERM, Wait: grace})
		p.mu.Lock()
		last := w.dropLocked()
		p.unlock()
		if last {
			w.Close()
		}
	})
}

// Close stops the pool: new calls fail with ErrClosed, calls in flight run
// to completion, then every worker is sent QUIT and, if it lingers, SIGTERM
// and SIGKILL. If ctx ends first, the remaining workers are killed at once,
// and the calls still on them fail with a *CrashError whose Killed is true
// and whose Reason says that Close killed it. Close returns when every
// worker process has been reaped. Later calls to Close do nothing and
// return the first one's error.
func (p *Pool) Close(ctx context.Context) error {
	p.closeOnce.Do(func() { p.closeErr = p.close(ctx) })
	return p.closeErr
}

func (p *Pool) close(ctx context.Context) error {
	p.mu.Lock()
	p.closed = true
	close(p.done)
	for wt := p.waiters.pop(); wt != nil; wt = p.waiters.pop() {
		wt.ch <- grant{err: ErrClosed}
	}
	for w := range p.starting {
		w.Conn.Shutdown()
	}
	var drained chan struct{}
	if p.inflight > 0 {
		drained = make(chan struct{})
		p.drained = drained
	}
	p.unlock()

	var err error
	if drained != nil {
		select {
		case <-drained:
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	p.mu.Lock()
	ws := make([]*workerProc, 0, len(p.workers))
	for w := range p.workers {
		ws = append(ws, w)
		if w.state != retiring {
			// Out of service, as retireLocked does it (Close stops it
			// below): Stats counts it as stopping, not serving or spare.
			p.moveLocked(w, retiring)
			w.retireWhy = "pool closed"
		}
		p.removeAvailLocked(w)
		if err != nil {
			w.killedByClose.Store(true)
			w.Proc.Kill()
		} else {
			p.stopLocked(w)
		}
	}
	p.unlock()
	for _, w := range ws {
		select {
		case <-w.Proc.Exited():
		case <-ctx.Done():
			if err == nil {
				err = ctx.Err()
			}
			for _, w := range ws {
				w.killedByClose.Store(true)
				w.Proc.Kill()
			}
			<-w.Proc.Exited()
		}
		w.Proc.Release()
	}
	p.closeForkServer()
	p.wg.Wait()
	p.spawner.Close()
	if cerr := p.cfg.sandbox.Close(); cerr != nil {
		p.cfg.Logger.Warn("worker cgroups left behind", "err", cerr)
	}
	return err
}
