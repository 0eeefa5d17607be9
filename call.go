package bulkhead

import (
	"context"
	"errors"
	"fmt"
	"github.com/bulkhead-go/bulkhead/internal/dispatch"
	"math"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/bulkhead-go/bulkhead/internal/proc"
	"github.com/bulkhead-go/bulkhead/internal/wire"
)

// Call runs method on a worker with args and returns its result. Arguments
// and results are encoded as CBOR: nil, bools, integers, floats, strings,
// []byte, slices, maps and structs.
//
// The ctx deadline travels to the worker. A ctx that has already ended
// returns a *CanceledError at once, with nothing sent. If ctx ends while the
// worker runs the call, Call returns a *CanceledError wrapping ctx.Err(), and
// the worker, which may be stuck in native code, is stopped (see
// CanceledError) and replaced. A call to a method listed in
// Config.Idempotent whose worker crashes under it is replayed on another
// worker. Every error it returns is one of the package's error types or
// sentinels (ErrClosed, ErrEncoding): see CrashError, StartError,
// CanceledError, OverloadedError, UnhealthyError, QuarantinedError and
// RemoteError.
func (p *Pool) Call(ctx context.Context, method string, args ...any) (Reply, error) {
	return p.measured(ctx, method, callArgs{list: args})
}

// CallBytes runs method with one []byte argument, as Call(ctx, method, arg)
// does, and appends its result, a byte string, to dst: a null result
// appends nothing, any other result is the error Reply.Decode into a
// *[]byte returns. Errors are Call's.
//
// It is the allocation-free form of the commonest call: arg is not boxed
// into an any, and the reply's buffer is recycled before it returns, so a
// caller that reuses dst (CallBytes(ctx, m, in, out[:0])) allocates nothing
// per call. arg is read, not kept, but escape analysis cannot tell: a
// slice of an array on the caller's stack is moved to the heap.
func (p *Pool) CallBytes(ctx context.Context, method string, arg, dst []byte) ([]byte, error) {
	r, err := p.measured(ctx, method, callArgs{one: arg, isOne: true})
	if err != nil {
		return dst, err
	}
	defer r.Release()
	b, err := wire.BytesView(r.raw)
	if err != nil {
		var v []byte
		if err = r.Decode(&v); err != nil {
			return dst, err
		}
		b = v
	}
	return append(dst, b...), nil
}

// callArgs are a call's arguments: Call's list, or CallBytes's one []byte,
// which stays unboxed.
type callArgs struct {
	list  []any
	one   []byte
	isOne bool
}

// boxed returns the arguments as a list.
func (a callArgs) boxed() []any {
	if a.isOne {
		return []any{a.one}
	}
	return a.list
}

// measured is call, counted and timed for Pool.Metrics.
func (p *Pool) measured(ctx context.Context, method string, args callArgs) (Reply, error) {
	if p.hooks.noMetrics {
		return p.call(ctx, nil, method, args)
	}
	m := p.metrics.lookup(method)
	if p.cfg.NoCallTimings {
		r, err := p.call(ctx, m, method, args)
		m.outcomes[OutcomeOf(err)].Add(1)
		return r, err
	}
	t0 := p.metrics.clock()
	r, err := p.call(ctx, m, method, args)
	m.duration.observe(p.metrics.clock() - t0)
	m.outcomes[OutcomeOf(err)].Add(1)
	return r, err
}

// call is Call without the metrics; m is the method's counters, which the
// worker that takes the call is marked with (nil: not marked).
func (p *Pool) call(ctx context.Context, m *methodMetrics, method string, args callArgs) (Reply, error) {
	if len(method) == 0 || len(method) > wire.MaxMethodBytes {
		return Reply{}, fmt.Errorf("bulkhead: method name of %d bytes (want 1 to %d)", len(method), wire.MaxMethodBytes)
	}
	if err := ctx.Err(); err != nil {
		return Reply{}, notSent(method, err)
	}
	var fp *fingerprint
	if p.quar != nil {
		f, err := p.quar.fingerprint(ctx, method, args.boxed())
		if err != nil {
			return Reply{}, fmt.Errorf("bulkhead: call %q: %w", method, err)
		}
		fp = &f
	}
	// Encoded once, before any worker is held or lock taken: a panicking
	// MarshalCBOR costs nothing but this call, and a redispatch or replay
	// sends the same bytes.
	f, err := encodeCall(ctx, method, args, p.cfg.maxFrame)
	if err != nil {
		return Reply{}, fmt.Errorf("bulkhead: call %q: %w: %w", method, ErrEncoding, err)
	}
	defer putBuilder(f)
	traced, err := tracedFrame(ctx, f, p.cfg.maxFrame)
	if err != nil {
		return Reply{}, fmt.Errorf("bulkhead: call %q: %w: %w", method, ErrEncoding, err)
	}
	if traced != nil {
		defer putBuilder(traced)
	}
	replays, redispatches := 0, 0
	for {
		w, err := p.acquire(ctx, method, fp, f.Len() > maxQueuedFrame)
		if err != nil {
			return Reply{}, err
		}
		r, again, err := p.callOn(ctx, w, m, method, frameFor(w, f, traced), fp)
		p.release(w, err == nil || isRemote(err))
		if again == redispatchQueued || (again == redispatchNext && redispatches < p.cfg.MaxRedispatch) {
			if again == redispatchNext {
				redispatches++
			}
			p.stats.redispatched.Add(1)
			continue
		}
		if err != nil && p.replayable(ctx, method, err, replays) {
			replays++
			p.stats.replayed.Add(1)
			continue
		}
		if replays > 0 {
			// Declared here: its address escapes, and the common path
			// should not pay for it.
			var ce *CrashError
			if errors.As(err, &ce) {
				ce.Replays = replays
			}
		}
		return r, err
	}
}

// maxQueuedFrame is the largest CALL frame that may wait behind other calls
// in a busy worker's socket (Config.Pipeline); larger ones wait for a
// worker with room to run them. Well under the socket's buffer, so that a
// queued frame is written at once.
const maxQueuedFrame = 256 << 10

// builders holds the frames of calls being made (encodeCall).
var builders = sync.Pool{New: func() any { return new(wire.Builder) }}

// encodeCall encodes a CALL frame with id 0; Conn.Send numbers it.
func encodeCall(ctx context.Context, method string, args callArgs, maxFrame uint32) (*wire.Builder, error) {
	var deadline int64
	if d, ok := ctx.Deadline(); ok {
		deadline = d.UnixNano()
	}
	b := builders.Get().(*wire.Builder)
	var err error
	switch {
	case args.isOne:
		err = b.CallBytes(0, method, deadline, args.one, maxFrame, true)
	case wire.AnyLarge(args.list):
		err = b.CallVec(0, method, deadline, args.list, maxFrame)
	default:
		err = b.Call(0, method, deadline, args.list, maxFrame)
	}
	if err != nil {
		putBuilder(b)
		return nil, err
	}
	return b, nil
}

// putBuilder recycles b, unless it grew large.
func putBuilder(b *wire.Builder) {
	b.Reset()
	if b.Cap() <= 1<<20 {
		builders.Put(b)
	}
}

// notSent is the error of a call whose ctx ended before it reached a worker.
func notSent(method string, cause error) *CanceledError {
	e := &CanceledError{Method: method, Err: cause, ExitCode: -1,
		Reason: "its ctx had ended before it was sent; nothing was sent"}
	return e
}

// replayable reports whether a failed attempt may run again: only a crash of
// a started call to an idempotent method, with replays and ctx left.
func (p *Pool) replayable(ctx context.Context, method string, err error, replays int) bool {
	if p.cfg.idempotent == nil || replays >= p.cfg.MaxReplays || ctx.Err() != nil {
		return false
	}
	if _, ok := p.cfg.idempotent[method]; !ok {
		return false
	}
	var ce *CrashError
	return errors.As(err, &ce) && ce.Phase == PhaseCall
}

func isRemote(err error) bool {
	var re *RemoteError
	return errors.As(err, &re)
}

// redispatch says whether a call whose worker died may go to another one.
type redispatch int

const (
	noRedispatch     redispatch = iota
	redispatchNext              // it never started, and was next in line: counts toward MaxRedispatch
	redispatchQueued            // it never started, and another call or the pool was the cause: a bystander
)

// callOn runs one attempt of a call on w: it sends the frame, waits, and
// hands the outcome to answered, canceled or crashed. again is set when the
// worker died before starting the call, so that it may safely go to another
// worker.
func (p *Pool) callOn(ctx context.Context, w *workerProc, m *methodMetrics, method string, f *wire.Builder, fp *fingerprint) (Reply, redispatch, error) {
	if err := ctx.Err(); err != nil {
		return Reply{}, noRedispatch, notSent(method, err)
	}
	pd, err := w.Conn.Send(ctx, f)
	if err != nil {
		return Reply{}, noRedispatch, notSent(method, ctx.Err())
	}
	defer w.Conn.Release(pd)
	w.current.Store(pd.ID())
	if m != nil {
		w.curMethod.Store(m)
		if !p.cfg.NoCallTimings || p.cfg.SlowCall > 0 {
			w.curSince.Store(int64(p.metrics.clock()))
		}
	}

	res := w.Conn.Wait(ctx, pd)
	shut := res.Shut
	if !shut && p.cfg.CancelGrace > 0 && !res.Done && ctx.Err() != nil {
		if e := p.cancelSoft(w, pd, method, ctx.Err(), fp); e != nil {
			return Reply{}, noRedispatch, e
		}
	}
	if !shut && !w.Conn.Done(pd) && ctx.Err() != nil && (!w.HasStarted(pd.ID()) || w.Conn.MovedPast(pd.ID())) {
		// It waits behind other calls on this worker (Config.Pipeline),
		// or its serial worker has finished it and moved on, its answer
		// on the way: give it up alone, and leave the worker to the calls
		// it runs.
		if e := p.abandonQueued(w, pd, method, ctx.Err(), fp); e != nil {
			return Reply{}, noRedispatch, e
		}
		// Its answer came meanwhile: take it.
	}
	res = w.Conn.Result(pd)
	switch {
	case res.Done && res.Err == nil:
		if shut {
			// The answer came, but the connection is gone.
			p.abandon(w, "connection shut down by an abandoned call")
		}
		return p.answered(ctx, w, pd.ID(), method, res, fp)
	case shut || !res.Done && ctx.Err() != nil:
		return Reply{}, noRedispatch, p.canceled(ctx, w, pd.ID(), method, fp)
	}
	return p.lostUnder(ctx, w, pd.ID(), method, res.Err, fp)
}

// answered turns a worker's REPLY or ERROR into the call's outcome. A REPLY
// whose value breaks PROTOCOL.md section 5 is a lie: it costs the worker.
func (p *Pool) answered(ctx context.Context, w *workerProc, id uint64, method string, res dispatch.Result, fp *fingerprint) (Reply, redispatch, error) {
	if res.Type == wire.TypeReply {
		if err := wire.CheckValue(res.Payload); err != nil {
			w.Conn.Fail(err)
			err := p.crashed(w, id, method, err)
			p.attribute(fp, w, err)
			return Reply{}, noRedispatch, err
		}
		r := Reply{raw: res.Payload}
		if res.HasUsage {
			r.use = &CallUsage{CPU: time.Duration(min(res.Usage.CPU, math.MaxInt64)), MaxRSS: int64(min(res.Usage.MaxRSS, math.MaxInt64))}
		}
		if res.Small != nil {
			r.small, r.gen = res.Small, res.Small.Gen()
		}
		if res.Large {
			r.big = &replyBuffer{buf: res.Payload, owner: &p.bufs}
		}
		return r, noRedispatch, nil
	}
	err := p.remoteError(w, id, method, res.Payload, fp)
	if re, ok := err.(*RemoteError); ok && skipped(re.Code, re.Details) && pastDeadline(ctx) {
		// The worker saw the deadline pass before the call started and
		// did not run it: that is our ctx ending, with nothing to stop.
		p.stats.abandoned.Add(1)
		e := &CanceledError{Method: method, RequestID: id, PID: w.PID, Err: context.DeadlineExceeded,
			ExitCode: -1, Reason: "the worker skipped it: its deadline had passed before it could start"}
		return Reply{}, noRedispatch, e
	}
	return Reply{}, noRedispatch, err
}

// canceled ends a call whose ctx ended while the worker had it (or while it
// was being written): the worker, perhaps stuck in native code, is stopped
// step by step on a goroutine the pool owns, and e.Wait reports how. The
// caller gets its error at once.
func (p *Pool) canceled(ctx context.Context, w *workerProc, id uint64, method string, fp *fingerprint) *CanceledError {
	p.stats.abandoned.Add(1)
	e := (&CanceledError{Method: method, RequestID: id, PID: w.PID, Err: ctx.Err()}).arm()
	// The worker's end is this call's doing: other calls on it are told so
	// (crashed), and its exit is no crash record (onExit).
	w.Conn.MarkAbandoned(id)
	p.mu.Lock()
	alone := w.inflight == 1 // for quarantine: only a call alone on its worker is to blame
	p.retireLocked(w, "hung: call abandoned: "+e.Err.Error(), RecycleNone)
	w.hung++ // stopHung stops it, not release
	w.holdLocked()
	async := !p.closed
	if async {
		p.wg.Add(1)
	}
	p.unlock()
	if async {
		go func() {
			defer p.wg.Done()
			p.stopHung(w, e, fp, alone)
		}()
	} else {
		p.stopHung(w, e, fp, alone)
	}
	return e
}

// lostUnder handles a connection that broke under a call: the worker died,
// closed its socket or broke the protocol. A call the worker never started
// may go elsewhere: at no cost to its redispatch budget when another call,
// or the pool itself, was the cause.
func (p *Pool) lostUnder(ctx context.Context, w *workerProc, id uint64, method string, cause error, fp *fingerprint) (Reply, redispatch, error) {
	w.finish()
	select {
	case <-w.Proc.Exited():
	case <-ctx.Done():
		// The worker is being stopped step by step (another call on it
		// was abandoned), or its reaping waits on a descendant: that is
		// no reason to keep this caller past its ctx.
		return Reply{}, noRedispatch, p.lostLate(ctx, w, id, method)
	}
	err := p.crashed(w, id, method, cause)
	var ce *CrashError
	if !errors.As(err, &ce) || ce.Phase != PhaseIdle {
		p.attribute(fp, w, err)
		return Reply{}, noRedispatch, err
	}
	p.mu.Lock()
	retiring := w.retired() // a handler panicked, or the pool stops it: not this call's doing
	p.unlock()
	// Panicked too: the panicking call's caller retires the worker, but
	// perhaps only after this caller has read the end of the stream.
	if retiring || w.Conn.Panicked() || w.StartedWord().Load() > w.Conn.Answered() || w.Conn.AbandonedBy() != 0 {
		return Reply{}, redispatchQueued, err // another call was running
	}
	return Reply{}, redispatchNext, err
}

// lostLate ends a call whose connection broke and whose ctx ended while its
// worker had not yet exited. The caller gets a *CanceledError at once; a
// goroutine the pool owns holds the worker (its start marker) until it has
// exited, then fills e as Wait promises.
func (p *Pool) lostLate(ctx context.Context, w *workerProc, id uint64, method string) *CanceledError {
	p.stats.abandoned.Add(1)
	e := (&CanceledError{Method: method, RequestID: id, PID: w.PID, Err: ctx.Err(), ExitCode: -1}).arm()
	p.mu.Lock()
	p.holdCallLocked(w) // this goroutine's hold; the caller releases its own
	p.wg.Add(1)
	p.unlock()
	go func() {
		defer p.wg.Done()
		<-w.Proc.Exited()
		ex := proc.ExitOf(w.Proc.State())
		e.Started = w.HasStarted(id)
		e.ExitCode, e.Signal = ex.Code, ex.Signal
		e.Reason = "its worker's connection broke and the worker was still being stopped when its ctx ended (" + ex.String() + ")"
		close(e.stop)
		p.release(w, false)
	}()
	return e
}

// abandonQueued ends a call whose ctx ended while it was queued behind
// other calls on w, before w started it (or on a serial worker that has
// finished it). The worker is left running and sent CANCEL; e.Wait waits
// until it answered the call (ran it after all, or skipped it) or died,
// and e.Started says which. It returns nil if the call's answer had
// already come.
func (p *Pool) abandonQueued(w *workerProc, pd *dispatch.Pending, method string, cause error, fp *fingerprint) *CanceledError {
	return p.leaveToWorker(w, pd, method, cause, fp, 0)
}

// crashed describes a broken connection under a call: the worker died,
// closed the socket, or broke the protocol.
func (p *Pool) crashed(w *workerProc, id uint64, method string, cause error) error {
	e := crashOf(w, id, method, cause)
	started := w.HasStarted(id) // exact now that it is dead
	switch {
	case w.Conn.AbandonedBy() != 0 && w.Conn.AbandonedBy() != id:
		// Not this call's doing: another call on the worker was abandoned,
		// which shut the connection down and has the worker stopped.
		e.AbandonedBy = w.Conn.AbandonedBy()
		e.Reason = fmt.Sprintf("stopped by the pool: call %d on the same worker was abandoned (%s)", e.AbandonedBy, e.Reason)
	case w.pol.limitKill.Load() == int32(LimitMemory):
		e.Limit, e.Killed = LimitMemory, true
		e.Reason = fmt.Sprintf("resident memory of %d bytes exceeded MaxMemory (%d); killed", w.pol.rss.Load(), p.cfg.MaxMemory)
	case sandboxVerdict(e, &w.usage, p.cfg.Sandbox.MemoryMax):
	case !e.Killed && !errors.Is(cause, wire.ErrProtocol):
		if e.Limit = classifyLimit(&p.cfg.Limits, e.Signal, false, rusage(w), e.Stderr); e.Limit != LimitNone {
			e.Reason += " (exceeded its " + e.Limit.String() + " limit)"
		}
	}
	if !started {
		e.Phase = PhaseIdle
		e.Reason = "died before starting the call: " + e.Reason
	}
	return e
}

// abandon stops a worker whose connection a cancellation shut down although
// the call's answer came: it can serve nobody. It does not wait.
func (p *Pool) abandon(w *workerProc, why string) {
	p.mu.Lock()
	p.retireLocked(w, why, RecycleNone)
	p.unlock()
	w.Proc.Stop(proc.Step{Signal: syscall.SIGTERM, Wait: p.cfg.KillGrace})
}

func (p *Pool) remoteError(w *workerProc, id uint64, method string, payload []byte, fp *fingerprint) error {
	body, err := wire.DecodeError(payload)
	if err != nil {
		// A malformed ERROR is a protocol violation.
		w.Conn.Fail(err)
		err := p.crashed(w, id, method, err)
		p.attribute(fp, w, err)
		return err
	}
	e := &RemoteError{Code: ErrorCode(body.Code), Message: body.Message, Details: body.Details,
		Method: method, RequestID: id, PID: w.PID}
	if e.Code == CodeUnknownMethod {
		e.Message += methodList(w.Hello.Methods)
	}
	if e.Code == CodePanic {
		p.mu.Lock()
		p.retireLocked(w, "handler panicked", RecycleNone)
		p.unlock()
	}
	return e
}

// methodList is what an unknown method's error adds: the methods the
// worker named in its HELLO (a caller that may call the pool may know
// them), at most 32 of them, sorted; "" if it named none (any method).
func methodList(methods []string) string {
	if len(methods) == 0 {
		return ""
	}
	const most = 32
	ms := slices.Sorted(slices.Values(methods))
	more := ""
	if len(ms) > most {
		more = fmt.Sprintf(" and %d more", len(ms)-most)
		ms = ms[:most]
	}
	return fmt.Sprintf("; the worker's methods: %s%s", strings.Join(ms, ", "), more)
}

// pastDeadline reports whether ctx's deadline has passed by the clock,
// which may be a moment before ctx's own timer says so.
//
// It compares wall-clock nanoseconds, as the worker did against the CALL's
// deadline: a ctx deadline carries a monotonic reading, and the two clocks
// may disagree by a little, enough for a skip the worker saw (by the wall
// clock) to look early by the monotonic one.
func pastDeadline(ctx context.Context) bool {
	d, ok := ctx.Deadline()
	return ok && time.Now().UnixNano() >= d.UnixNano()
}
