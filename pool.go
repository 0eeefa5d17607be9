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
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/bulkhead-go/bulkhead/internal/proc"
	"github.com/bulkhead-go/bulkhead/internal/wire"
)

// Pool routes calls to worker processes. It is safe for concurrent use.
type Pool struct {
	cfg     settings
	spawner *proc.Spawner
	done    chan struct{} // closed by Close: stops spawn retries

	mu       sync.Mutex
	workers  map[*workerProc]struct{} // said HELLO and not yet exited
	starting map[*workerProc]struct{} // spawned, waiting for HELLO
	avail    []*workerProc            // workers with spare capacity
	waiters  waitQueue
	active   int // workers that count toward cfg.Workers (not retiring)
	pending  int // spawns under way
	inflight int // calls holding a worker
	closed   bool
	drained  chan struct{} // closed when inflight reaches 0 after Close
	respawns ring

	wg        sync.WaitGroup // spawn goroutines
	closeOnce sync.Once
	closeErr  error

	stats counters
}

// New validates cfg, starts cfg.Workers workers and returns once one of them
// is ready. It fails if every initial worker fails to start (the error is the
// first *StartError) or if ctx ends first. Later start failures are retried
// in the background and never fail New.
func New(ctx context.Context, cfg Config) (*Pool, error) {
	s, err := cfg.settings()
	if err != nil {
		return nil, err
	}
	p := &Pool{
		cfg:      s,
		spawner:  proc.NewSpawner(),
		done:     make(chan struct{}),
		workers:  make(map[*workerProc]struct{}),
		starting: make(map[*workerProc]struct{}),
	}
	first := make(chan error, s.Workers)
	p.mu.Lock()
	for range s.Workers {
		p.spawnLocked(time.Time{}, first)
	}
	p.mu.Unlock()
	var firstErr error
	for range s.Workers {
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

// spawnLocked starts one spawn goroutine. since is when the worker it
// replaces was lost (zero for an initial worker). The result of its first
// attempt goes to first, if not nil. Called with p.mu held.
func (p *Pool) spawnLocked(since time.Time, first chan<- error) {
	p.pending++
	p.wg.Add(1)
	go p.spawn(since, first)
}

// spawn starts a worker, retrying start failures with exponential backoff
// until one starts or the pool closes.
func (p *Pool) spawn(since time.Time, first chan<- error) {
	defer p.wg.Done()
	backoff := p.cfg.restartDelay()
	for attempt := 0; ; attempt++ {
		w, err := launch(&p.cfg, p.spawner, p.onExit, p.trackStarting)
		p.mu.Lock()
		if err != nil {
			p.stats.startFailures.Add(1)
			p.cfg.Logger.Error("worker failed to start", startAttrs(err)...)
			if len(p.workers) == 0 {
				// No worker can serve the oldest caller: tell it why,
				// rather than leave it waiting on a broken command.
				if wt := p.waiters.pop(); wt != nil {
					wt.ch <- grant{err: err}
				}
			}
		}
		if first != nil {
			first <- err
			first = nil
		}
		if p.closed {
			p.pending--
			p.mu.Unlock()
			if w != nil {
				w.proc.Kill()
				<-w.proc.Exited()
				w.closeResources()
			}
			return
		}
		if err == nil {
			p.pending--
			p.active++
			p.workers[w] = struct{}{}
			p.stats.started.Add(1)
			if !since.IsZero() {
				p.respawns.add(time.Since(since))
			}
			p.offerLocked(w)
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-p.done:
			t.Stop()
		}
		backoff = min(backoff*2, p.cfg.maxRestartDelay())
	}
}

// trackStarting records a worker between spawn and HELLO, so that Close can
// cut its handshake short.
func (p *Pool) trackStarting(w *workerProc, add bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if add {
		p.starting[w] = struct{}{}
		if p.closed {
			w.conn.shutdown()
		}
	} else {
		delete(p.starting, w)
	}
}

// onExit runs once per worker, on its watching goroutine, after the process
// has been reaped.
func (p *Pool) onExit(w *workerProc) {
	w.conn.shutdown() // wake a caller blocked reading, even if a grandchild holds the socket
	p.mu.Lock()
	if _, ok := p.workers[w]; !ok {
		p.mu.Unlock()
		return // a start-up failure: startWorker cleans up
	}
	delete(p.workers, w)
	w.dead = true
	p.removeAvailLocked(w)
	phase := PhaseIdle
	if w.inflight > 0 {
		phase = PhaseCall
	}
	expected := w.retiring
	if !expected {
		p.active--
	}
	if !p.closed && p.active+p.pending < p.cfg.Workers {
		p.spawnLocked(time.Now(), nil)
	}
	closeNow := w.inflight == 0 && !w.closed
	w.closed = w.closed || closeNow
	p.mu.Unlock()

	ex := proc.ExitOf(w.proc.State())
	if expected {
		p.cfg.Logger.Info("worker stopped", "pid", w.pid, "reason", w.retireWhy, "exit", ex.String())
	} else {
		p.stats.crashes[phase].Add(1)
		attrs := []any{"pid", w.pid, "phase", phase.String(), "exit", ex.String(), "stderr_tail", w.stderr.String()}
		if phase == PhaseCall {
			attrs = append(attrs, "request_id", w.current.Load())
		}
		if w.broken.Load() {
			attrs = append(attrs, "killed_by_pool", true)
		}
		p.cfg.Logger.Error("worker crashed", attrs...)
	}
	if closeNow {
		w.closeResources()
	}
}

// grant is what a waiting caller receives: a worker, or the reason it will
// get none.
type grant struct {
	w   *workerProc
	err error
}

// acquire takes a worker with spare capacity, waiting in FIFO order.
func (p *Pool) acquire(ctx context.Context, method string) (*workerProc, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	if p.waiters.empty() && len(p.avail) > 0 {
		w := p.avail[len(p.avail)-1]
		p.takeLocked(w)
		p.mu.Unlock()
		return w, nil
	}
	wt := getWaiter()
	p.waiters.push(wt)
	p.mu.Unlock()

	select {
	case g := <-wt.ch:
		putWaiter(wt)
		return g.w, g.err
	case <-ctx.Done():
		p.mu.Lock()
		removed := p.waiters.remove(wt)
		p.mu.Unlock()
		if !removed {
			// A worker (or error) was granted as ctx ended: give it back.
			g := <-wt.ch
			if g.w != nil {
				p.release(g.w)
			}
		}
		putWaiter(wt)
		return nil, &CanceledError{Method: method, Err: ctx.Err()}
	}
}

// takeLocked counts a call on w.
func (p *Pool) takeLocked(w *workerProc) {
	w.inflight++
	p.inflight++
	if w.inflight >= w.capacity {
		p.removeAvailLocked(w)
	}
}

// offerLocked gives w's spare capacity to waiting callers, oldest first, and
// makes what is left available.
func (p *Pool) offerLocked(w *workerProc) {
	for w.inflight < w.capacity {
		wt := p.waiters.pop()
		if wt == nil {
			break
		}
		w.inflight++
		p.inflight++
		wt.ch <- grant{w: w}
	}
	if w.inflight < w.capacity && !w.available {
		w.available = true
		p.avail = append(p.avail, w)
	}
}

func (p *Pool) removeAvailLocked(w *workerProc) {
	if !w.available {
		return
	}
	w.available = false
	for i, x := range p.avail {
		if x == w {
			p.avail = append(p.avail[:i], p.avail[i+1:]...)
			return
		}
	}
}

// release ends a call's hold on w.
func (p *Pool) release(w *workerProc) {
	p.mu.Lock()
	w.inflight--
	p.inflight--
	if p.closed && p.inflight == 0 && p.drained != nil {
		close(p.drained)
		p.drained = nil
	}
	switch {
	case w.dead:
		if w.inflight == 0 && !w.closed {
			w.closed = true
			p.mu.Unlock()
			w.closeResources()
			return
		}
	case w.retiring || w.broken.Load():
		if w.inflight == 0 && w.retiring {
			p.stopLocked(w)
		}
	case !p.closed:
		p.offerLocked(w)
	}
	p.mu.Unlock()
}

// retireLocked takes w out of service on purpose (recycling, a panic, an
// abandoned call); it is stopped once its calls are done, and replaced now.
func (p *Pool) retireLocked(w *workerProc, why string) {
	if w.retiring || w.dead {
		return
	}
	w.retiring = true
	w.retireWhy = why
	p.removeAvailLocked(w)
	if !w.broken.Load() {
		p.active--
	}
	if !p.closed && p.active+p.pending < p.cfg.Workers {
		p.spawnLocked(time.Now(), nil)
	}
	if w.inflight == 0 {
		p.stopLocked(w)
	}
}

// stopLocked asks w to quit and escalates to SIGTERM, then SIGKILL.
func (p *Pool) stopLocked(w *workerProc) {
	w.conn.sendControl(wire.TypeQuit, 0)
	w.proc.Stop(proc.Step{Wait: p.cfg.KillGrace}, proc.Step{Signal: syscall.SIGTERM, Wait: p.cfg.KillGrace})
}

// Call runs method on a worker with args and returns its result. Arguments
// and results are encoded as CBOR: nil, bools, integers, floats, strings,
// []byte, slices, maps and structs.
//
// The ctx deadline travels to the worker. If ctx ends first, Call returns at
// once with a *CanceledError wrapping ctx.Err(), and the worker, which may be
// stuck in native code, is stopped and replaced. See errors.go for every
// other error.
func (p *Pool) Call(ctx context.Context, method string, args ...any) (Reply, error) {
	if len(method) == 0 || len(method) > wire.MaxMethodBytes {
		return Reply{}, fmt.Errorf("bulkhead: method name of %d bytes (want 1 to %d)", len(method), wire.MaxMethodBytes)
	}
	for attempt := 0; ; attempt++ {
		w, err := p.acquire(ctx, method)
		if err != nil {
			return Reply{}, err
		}
		r, err, again := p.callOn(ctx, w, method, args)
		p.release(w)
		if !again || attempt >= p.cfg.MaxRedispatch {
			return r, err
		}
		p.stats.redispatched.Add(1)
	}
}

// callOn runs one attempt of a call on w. again is true when the worker died
// before starting the call, so that it may safely go to another worker.
func (p *Pool) callOn(ctx context.Context, w *workerProc, method string, args []any) (r Reply, err error, again bool) {
	var deadline int64
	if d, ok := ctx.Deadline(); ok {
		deadline = d.UnixNano()
	}
	pd, err := w.conn.send(method, deadline, args)
	if err != nil {
		return Reply{}, fmt.Errorf("bulkhead: call %q: %w", method, err), false
	}
	defer w.conn.release(pd)
	w.current.Store(pd.id)

	// A caller blocked in read(2) cannot select on ctx: shutting the
	// socket down is what wakes it.
	var stop func() bool
	if ctx.Done() != nil {
		stop = context.AfterFunc(ctx, w.conn.shutdown)
	}
	w.conn.wait(pd, ctx.Done())
	fired := stop != nil && !stop()

	w.conn.mu.Lock()
	done, typ, payload, cerr := pd.done, pd.typ, pd.payload, pd.err
	w.conn.mu.Unlock()

	if done && cerr == nil {
		if fired {
			p.abandon(w, "connection shut down by an abandoned call")
		}
		if typ == wire.TypeReply {
			return Reply{raw: payload}, nil, false
		}
		return Reply{}, p.remoteError(w, pd.id, method, payload), false
	}
	if ctx.Err() != nil {
		started := w.hasStarted(pd.id)
		p.stats.abandoned.Add(1)
		p.abandon(w, "call abandoned: "+ctx.Err().Error())
		return Reply{}, &CanceledError{Method: method, RequestID: pd.id, PID: w.pid, Started: started, Err: ctx.Err()}, false
	}
	err = p.crashed(w, pd.id, method, cerr)
	var ce *CrashError
	again = errors.As(err, &ce) && ce.Phase == PhaseIdle // it never started
	return Reply{}, err, again
}

// crashed handles a broken connection under a call: the worker died, closed
// the socket, or broke the protocol.
func (p *Pool) crashed(w *workerProc, id uint64, method string, cause error) error {
	started := w.hasStarted(id)
	alive := !w.proc.Exiting()
	if alive {
		// A live worker that closed its socket or sent garbage is of no
		// further use, and cannot be trusted to exit: kill it now.
		w.broken.Store(true)
		w.proc.Kill()
	}
	<-w.proc.Exited() // prompt: it is dead or SIGKILLed
	ex := proc.ExitOf(w.proc.State())
	e := &CrashError{
		Phase: PhaseCall, PID: w.pid, RequestID: id, Method: method,
		ExitCode: ex.Code, Signal: ex.Signal, CoreDumped: ex.Core,
		Killed: alive && ex.Signal == syscall.SIGKILL,
		Stderr: w.stderr.String(), Err: cause,
	}
	switch {
	case errors.Is(cause, wire.ErrProtocol):
		e.Reason = "broke the protocol (" + cause.Error() + "); killed"
	case e.Killed:
		e.Reason = "closed its connection while alive; killed"
	default:
		e.Reason = ex.String()
	}
	if !started {
		e.Phase = PhaseIdle
		e.Reason = "died before starting the call: " + e.Reason
	}
	return e
}

// abandon stops a worker whose call was abandoned: it may be stuck.
func (p *Pool) abandon(w *workerProc, why string) {
	p.mu.Lock()
	if !w.retiring && !w.dead {
		w.retiring = true
		w.retireWhy = why
		p.removeAvailLocked(w)
		if !w.broken.Load() {
			p.active--
		}
		if !p.closed && p.active+p.pending < p.cfg.Workers {
			p.spawnLocked(time.Now(), nil)
		}
	}
	p.mu.Unlock()
	w.proc.Stop(proc.Step{Signal: syscall.SIGTERM, Wait: p.cfg.KillGrace})
}

func (p *Pool) remoteError(w *workerProc, id uint64, method string, payload []byte) error {
	body, err := wire.DecodeError(payload)
	if err != nil {
		// A malformed ERROR is a protocol violation.
		return p.crashed(w, id, method, err)
	}
	e := &RemoteError{Code: ErrorCode(body.Code), Message: body.Message, Details: body.Details,
		Method: method, RequestID: id, PID: w.pid}
	if e.Code == CodePanic {
		p.mu.Lock()
		p.retireLocked(w, "handler panicked")
		p.mu.Unlock()
	}
	return e
}

// Close stops the pool: new calls fail with ErrClosed, calls in flight run
// to completion, then every worker is sent QUIT and, if it lingers, SIGTERM
// and SIGKILL. If ctx ends first, the remaining workers are killed at once.
// Close returns when every worker process has been reaped.
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
		w.conn.shutdown()
	}
	var drained chan struct{}
	if p.inflight > 0 {
		drained = make(chan struct{})
		p.drained = drained
	}
	p.mu.Unlock()

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
		if !w.retiring {
			w.retiring, w.retireWhy = true, "pool closed"
		}
		p.removeAvailLocked(w)
		if err != nil {
			w.proc.Kill()
		} else {
			p.stopLocked(w)
		}
	}
	p.mu.Unlock()
	for _, w := range ws {
		select {
		case <-w.proc.Exited():
		case <-ctx.Done():
			if err == nil {
				err = ctx.Err()
			}
			for _, w := range ws {
				w.proc.Kill()
			}
			<-w.proc.Exited()
		}
		w.proc.Release()
	}
	p.wg.Wait()
	p.spawner.Close()
	return err
}

// counters are the pool's cumulative statistics.
type counters struct {
	started       atomic.Uint64
	startFailures atomic.Uint64
	crashes       [PhaseIdle + 1]atomic.Uint64
	redispatched  atomic.Uint64
	abandoned     atomic.Uint64
}

// Stats is a snapshot of a pool's state and counters.
type Stats struct {
	Workers       int    // ready workers
	Starting      int    // workers being started
	InFlight      int    // calls holding a worker
	Waiting       int    // calls waiting for a worker
	Started       uint64 // workers that said HELLO, in all
	StartFailures uint64
	CallCrashes   uint64 // workers that died during a call
	IdleCrashes   uint64 // workers that died between calls
	Redispatched  uint64 // calls sent again because their worker died before starting them
	Abandoned     uint64 // calls whose ctx ended first
	// RespawnP50 is the median time from losing a worker to its
	// replacement's HELLO, over recent replacements.
	RespawnP50 time.Duration
	Respawns   int // replacements measured for RespawnP50
}

// Stats returns a snapshot of the pool's state and counters.
func (p *Pool) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	p50, n := p.respawns.median()
	return Stats{
		Workers: len(p.workers), Starting: p.pending, InFlight: p.inflight, Waiting: p.waiters.n,
		Started:       p.stats.started.Load(),
		StartFailures: p.stats.startFailures.Load(),
		CallCrashes:   p.stats.crashes[PhaseCall].Load(),
		IdleCrashes:   p.stats.crashes[PhaseIdle].Load(),
		Redispatched:  p.stats.redispatched.Load(),
		Abandoned:     p.stats.abandoned.Load(),
		RespawnP50:    p50, Respawns: n,
	}
}

func startAttrs(err error) []any {
	var se *StartError
	if errors.As(err, &se) {
		return []any{"pid", se.PID, "reason", se.Reason, "stderr_tail", se.Stderr}
	}
	return []any{"err", err}
}

// WorkerInfo describes one running worker.
type WorkerInfo struct {
	PID      int
	Name     string // from its HELLO
	InFlight int
	Capacity int
	Since    time.Time // when it said HELLO
}

// Workers lists the running workers.
func (p *Pool) Workers() []WorkerInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]WorkerInfo, 0, len(p.workers))
	for w := range p.workers {
		out = append(out, WorkerInfo{PID: w.pid, Name: w.hello.Name, InFlight: w.inflight, Capacity: w.capacity, Since: w.born})
	}
	return out
}
