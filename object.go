package bulkhead

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/bulkhead-go/bulkhead/internal/wire"
)

// object is an object in a class server. Handles (*Object) count as its
// references; so do calls in flight and keep-alive ROT entries. When the
// count reaches zero the worker is told to RELEASE it and its server loses a
// lock.
type object struct {
	a     *Activator
	s     *server
	class *classEntry
	id    uint64

	refs atomic.Int64
	disc atomic.Pointer[DisconnectedError] // set once its server is gone

	mu   sync.Mutex // subs
	subs []*Subscription

	rot []string // names in the running object table; guarded by Activator.mu
}

// newObjectLocked records an object on s, counted as a lock from now on, so
// that an activation on its way keeps the server alive.
func (a *Activator) newObjectLocked(s *server, c *classEntry) *object {
	s.nextOID++
	o := &object{a: a, s: s, class: c, id: s.nextOID}
	s.omu.Lock()
	s.objects[o.id] = o
	s.omu.Unlock()
	s.objCount++
	a.objects++
	return o
}

// dropObject forgets an object whose activation failed or was abandoned.
func (a *Activator) dropObject(o *object) {
	a.mu.Lock()
	stop := a.forgetLocked(o)
	a.mu.Unlock()
	if stop {
		a.stop(o.s)
	}
}

// forgetLocked removes o from its server and drops its lock; it reports
// whether the server must now stop. A gone server has forgotten it already.
func (a *Activator) forgetLocked(o *object) bool {
	s := o.s
	s.omu.Lock()
	_, ok := s.objects[o.id]
	delete(s.objects, o.id)
	s.omu.Unlock()
	if !ok {
		return false
	}
	a.dropROTLocked(o)
	s.objCount--
	a.objects--
	return a.maybeStopLocked(s)
}

// tryRef takes a reference if o still has one.
func (o *object) tryRef() bool {
	for {
		n := o.refs.Load()
		if n <= 0 {
			return false
		}
		if o.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// unref drops a reference. The last one is dropped under the activator's
// lock, with the server's lock, in one step.
func (o *object) unref() {
	for {
		n := o.refs.Load()
		if n > 1 {
			if o.refs.CompareAndSwap(n, n-1) {
				return
			}
			continue
		}
		a := o.a
		a.mu.Lock()
		if !o.refs.CompareAndSwap(1, 0) {
			a.mu.Unlock()
			continue
		}
		stop := a.forgetLocked(o)
		alive := o.s.state != stateGone
		a.mu.Unlock()
		if alive {
			// Before SUSPEND and QUIT, on this goroutine: the worker
			// destroys the object before it is told to quit.
			o.s.sendControl(wire.TypeRelease, o.id)
		}
		if stop {
			a.stop(o.s)
		}
		return
	}
}

// disconnect marks o as gone with its server and ends its subscriptions.
func (o *object) disconnect(d *DisconnectedError) {
	e := *d
	e.Class, e.Object = o.class.name, o.id
	o.disc.Store(&e)
	o.mu.Lock()
	subs := o.subs
	o.subs = nil
	o.mu.Unlock()
	for _, s := range subs {
		s.end(&e)
	}
}

// Object is a handle to an object in a class server: one reference, owned by
// a session. Clone it to get another reference; Release each exactly once.
// It is safe for concurrent use.
type Object struct {
	o        *object
	sess     *Session
	released atomic.Bool
}

// Class returns the object's class.
func (h *Object) Class() string { return h.o.class.name }

// ID returns the object's id, unique within its server process.
func (h *Object) ID() uint64 { return h.o.id }

// PID returns the process id of the object's server.
func (h *Object) PID() int { return h.o.s.pid }

// Session returns the session that owns this handle.
func (h *Object) Session() *Session { return h.sess }

// errReleased explains why a released handle cannot be used.
func (h *Object) errReleased() error {
	if err := h.sess.Err(); err != nil {
		return err
	}
	return ErrReleased
}

// Clone returns a new handle to the same object, owned by the same session
// (AddRef).
func (h *Object) Clone() (*Object, error) {
	if h.released.Load() {
		return nil, h.errReleased()
	}
	if !h.o.tryRef() {
		return nil, h.errReleased()
	}
	h.sess.touch()
	return h.sess.adopt(h.o)
}

// Release drops this handle's reference. The object is destroyed when its
// last reference is gone; its server stops when its last lock is. A second
// Release of the same handle returns ErrReleased and changes nothing.
func (h *Object) Release() error {
	if !h.released.CompareAndSwap(false, true) {
		return ErrReleased
	}
	h.sess.touch()
	h.sess.forget(h)
	h.drop(ErrReleased)
	return nil
}

// drop ends the handle's subscriptions and reference; the caller has set
// released.
func (h *Object) drop(why error) {
	o := h.o
	o.mu.Lock()
	var mine []*Subscription
	o.subs = deleteFunc(o.subs, func(s *Subscription) bool {
		if s.h == h {
			mine = append(mine, s)
			return true
		}
		return false
	})
	o.mu.Unlock()
	for _, s := range mine {
		s.end(why)
	}
	o.unref()
}

func deleteFunc[T any](s []T, del func(T) bool) []T {
	out := s[:0]
	for _, v := range s {
		if !del(v) {
			out = append(out, v)
		}
	}
	clear(s[len(out):])
	return out
}

// Call runs method on the object with args and returns its result. The
// class's threading model decides what runs concurrently (worker.Threading).
//
// If the object's server is gone, Call returns a *DisconnectedError
// (errors.Is(err, ErrObjectDisconnected)) wrapping the server's
// *CrashError. If ctx ends first, Call returns a *CanceledError and the
// server, which may be stuck in native code, is killed: its other objects
// are disconnected too, as a pool's worker would be replaced.
func (h *Object) Call(ctx context.Context, method string, args ...any) (Reply, error) {
	if len(method) == 0 || len(method) > wire.MaxMethodBytes {
		return Reply{}, fmt.Errorf("bulkhead: method name of %d bytes (want 1 to %d)", len(method), wire.MaxMethodBytes)
	}
	if h.released.Load() {
		return Reply{}, h.errReleased()
	}
	o := h.o
	if d := o.disc.Load(); d != nil {
		o.a.stats.disconnected.Add(1)
		return Reply{}, d
	}
	if !o.tryRef() {
		return Reply{}, h.errReleased()
	}
	defer o.unref()
	h.sess.touch()
	s := o.s
	if !s.acquireConn() {
		o.a.stats.disconnected.Add(1)
		return Reply{}, o.disconnectedErr(nil)
	}
	defer s.releaseConn()
	w := s.w
	var deadline int64
	if d, ok := ctx.Deadline(); ok {
		deadline = d.UnixNano()
	}
	pd, err := w.conn.sendObjCall(o.id, method, deadline, args)
	if err != nil {
		return Reply{}, fmt.Errorf("bulkhead: call %q: %w", method, err)
	}
	id := pd.id
	typ, payload, cerr, canceled := s.wait(ctx, pd) // recycles pd
	switch {
	case cerr == nil && typ == wire.TypeReply:
		return Reply{raw: payload}, nil
	case cerr == nil:
		body, derr := wire.DecodeError(payload)
		if derr != nil {
			o.a.stats.disconnected.Add(1)
			return Reply{}, o.disconnectedErr(serverCrash(w, id, method, derr))
		}
		return Reply{}, &RemoteError{Code: ErrorCode(body.Code), Message: body.Message, Details: body.Details,
			Method: method, RequestID: id, PID: s.pid}
	case canceled:
		return Reply{}, &CanceledError{Method: method, RequestID: id, PID: s.pid, Started: w.hasStarted(id), Err: ctx.Err()}
	default:
		o.a.stats.disconnected.Add(1)
		return Reply{}, o.disconnectedErr(serverCrash(w, id, method, cerr))
	}
}

// disconnectedErr is the error for a call on o once its server is gone.
func (o *object) disconnectedErr(crash error) error {
	if d := o.disc.Load(); d != nil && crash == nil {
		return d
	}
	if crash == nil {
		crash = o.s.crash
	}
	return &DisconnectedError{Class: o.class.name, Object: o.id, PID: o.s.pid, Err: crash}
}

// wait waits for a request's answer on s. If ctx ends first the connection
// is shut down (that is what wakes a caller blocked reading) and the server
// killed: canceled is then true.
func (s *server) wait(ctx context.Context, pd *pending) (typ wire.Type, payload []byte, err error, canceled bool) {
	c := s.w.conn
	fired := c.wait(pd, ctx)
	c.mu.Lock()
	done, typ, payload, err := pd.done, pd.typ, pd.payload, pd.err
	c.mu.Unlock()
	c.release(pd)
	if fired || (!done && ctx.Err() != nil) {
		s.w.broken.Store(true)
		s.w.proc.Kill()
		if done && err == nil {
			return typ, payload, nil, false
		}
		return 0, nil, ctx.Err(), true
	}
	if !done {
		err = errConnBroken
	}
	return typ, payload, err, false
}

// serverCrash describes a server whose connection broke under a request.
func serverCrash(w *workerProc, id uint64, method string, cause error) *CrashError {
	e := crashOf(w, id, method, cause)
	if !w.hasStarted(id) {
		e.Phase = PhaseIdle
		e.Reason = "died before starting the request: " + e.Reason
	}
	return e
}

// activate creates an object of c for sess, on via's server if possible,
// retrying on another server when one answers "server stopping" or dies
// before starting the activation. The caller never sees those.
func (a *Activator) activate(ctx context.Context, sess *Session, c *classEntry, via *ClassObject, args []any) (*Object, error) {
	var last error
	for attempt := 0; attempt <= a.maxRetries; attempt++ {
		o, err := a.placeObject(ctx, c, via)
		if err != nil {
			return nil, err
		}
		h, retry, err := a.activateOn(ctx, sess, o, args)
		if !retry {
			return h, err
		}
		last = err
		via = nil
	}
	return nil, fmt.Errorf("bulkhead: activation of %s failed %d times in a row: %w", c.name, a.maxRetries+1, last)
}

// activateOn sends one ACTIVATE for o, whose server lock is already taken.
// retry is true when another server should be tried.
func (a *Activator) activateOn(ctx context.Context, sess *Session, o *object, args []any) (h *Object, retry bool, err error) {
	s := o.s
	if !s.acquireConn() {
		// Gone between the routing and now: it never saw the request.
		a.dropObject(o)
		a.stats.redispatched.Add(1)
		return nil, true, fmt.Errorf("bulkhead: server %d exited before the activation was sent", s.pid)
	}
	defer s.releaseConn()
	w := s.w
	pd, err := w.conn.sendActivate(o.class.name, o.id, args)
	if err != nil {
		a.dropObject(o)
		return nil, false, fmt.Errorf("bulkhead: activate %s: %w", o.class.name, err)
	}
	id := pd.id
	if hk := a.hooks.activateSent; hk != nil {
		hk(s, o.id)
	}
	typ, payload, cerr, canceled := s.wait(ctx, pd) // recycles pd
	switch {
	case cerr == nil && typ == wire.TypeReply:
		o.refs.Store(1)
		a.stats.activations.Add(1)
		h, err := sess.adopt(o)
		if err != nil {
			return nil, false, err // adopt dropped the reference
		}
		return h, false, nil
	case cerr == nil:
		a.dropObject(o)
		body, derr := wire.DecodeError(payload)
		if derr != nil {
			return nil, false, serverCrash(w, id, "activate "+o.class.name, derr)
		}
		if body.Code == wire.CodeServerStopping {
			// Seed 004: the server decided to stop while the request was
			// on its way. Launch or pick another and retry.
			a.stats.stoppingRetries.Add(1)
			return nil, true, fmt.Errorf("%w: server %d", ErrServerStopping, s.pid)
		}
		return nil, false, &RemoteError{Code: ErrorCode(body.Code), Message: body.Message, Details: body.Details,
			Method: "activate " + o.class.name, RequestID: id, PID: s.pid}
	case canceled:
		a.dropObject(o)
		return nil, false, &CanceledError{Method: "activate " + o.class.name, RequestID: id, PID: s.pid,
			Started: w.hasStarted(id), Err: ctx.Err()}
	default:
		ce := serverCrash(w, id, "activate "+o.class.name, cerr)
		a.dropObject(o)
		if ce.Phase == PhaseIdle {
			a.stats.redispatched.Add(1)
			return nil, true, ce // it never started: safe to run elsewhere
		}
		return nil, false, ce
	}
}
