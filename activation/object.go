package activation

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/bulkhead-go/bulkhead"
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
	// settled: the activation that created it has been answered, or given
	// up (settleLocked); guarded by Activator.mu.
	settled bool
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
	s.taken++
	s.inflight++
	a.objects++
	return o
}

// dropObject forgets an object whose activation failed or was abandoned
// before the worker took it.
func (a *Activator) dropObject(o *object) { a.dropActivation(o, actNotTaken) }

// dropActivation forgets an object whose activation ended with out.
func (a *Activator) dropActivation(o *object, out actOutcome) {
	a.mu.Lock()
	a.settleLocked(o, out)
	stop := a.forgetLocked(o)
	a.mu.Unlock()
	if stop {
		a.stop(o.s)
	}
}

// forgetLocked removes o from its server and drops its lock; it reports
// whether the server must now stop. A gone server has forgotten it already.
func (a *Activator) forgetLocked(o *object) bool {
	a.settleLocked(o, actNotTaken) // if its activation had not been answered
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
// *CrashError. If ctx ends first, Call returns a *CanceledError: nothing is
// sent if it had ended already; a call still waiting behind others on its
// server, which has not started it, is left to the server; otherwise the
// server, which may be stuck in native code, is killed and its other
// objects are disconnected too, as a pool's worker would be replaced.
func (h *Object) Call(ctx context.Context, method string, args ...any) (bulkhead.Reply, error) {
	if len(method) == 0 || len(method) > wire.MaxMethodBytes {
		return bulkhead.Reply{}, fmt.Errorf("bulkhead: method name of %d bytes (want 1 to %d)", len(method), wire.MaxMethodBytes)
	}
	if h.released.Load() {
		return bulkhead.Reply{}, h.errReleased()
	}
	o := h.o
	if d := o.disc.Load(); d != nil {
		o.a.stats.disconnected.Add(1)
		return bulkhead.Reply{}, d
	}
	h.sess.touch()
	if err := ctx.Err(); err != nil {
		return bulkhead.Reply{}, &bulkhead.CanceledError{Method: method, Err: err} // nothing sent
	}
	if !o.tryRef() {
		return bulkhead.Reply{}, h.errReleased()
	}
	s := o.s
	if !s.acquireConn() {
		o.unref()
		o.a.stats.disconnected.Add(1)
		return bulkhead.Reply{}, o.disconnectedErr(nil)
	}
	defer s.releaseConn()
	r, left, err := o.call(ctx, s, method, args)
	if !left {
		o.unref()
	}
	return r, err
}

// call sends one OBJCALL for o, which holds a reference for it, and waits
// for its answer. If the request is left to the worker (left), the
// reference is dropped once the worker is done with it: RELEASE must not
// overtake the call.
func (o *object) call(ctx context.Context, s *server, method string, args []any) (r bulkhead.Reply, left bool, err error) {
	w := s.w
	var deadline int64
	if d, ok := ctx.Deadline(); ok {
		deadline = d.UnixNano()
	}
	var tp string
	if w.Hello.Trace == wire.TraceW3C {
		tp = bulkhead.Traceparent(ctx)
	}
	pd, err := w.Conn.SendObjCall(o.id, method, deadline, args, tp)
	if err != nil {
		return bulkhead.Reply{}, false, fmt.Errorf("bulkhead: call %q: %w", method, err)
	}
	id := pd.ID()
	if hk := o.a.hooks.callSent; hk != nil {
		hk(s, o.id)
	}
	ans, ce, left := s.await(ctx, pd, method, func(answer) { o.unref() }) // recycles pd
	switch {
	case ce != nil:
		return bulkhead.Reply{}, left, ce
	case ans.err == nil && ans.typ == wire.TypeReply:
		if verr := wire.CheckValue(ans.payload); verr != nil {
			// A lying value costs the server, as in Pool.Call.
			w.Conn.Fail(verr)
			o.a.stats.disconnected.Add(1)
			return bulkhead.Reply{}, false, o.disconnectedErr(serverCrash(w, id, method, verr))
		}
		return bulkhead.NewReply(ans.payload), false, nil
	case ans.err == nil:
		body, derr := wire.DecodeError(ans.payload)
		if derr != nil {
			o.a.stats.disconnected.Add(1)
			return bulkhead.Reply{}, false, o.disconnectedErr(serverCrash(w, id, method, derr))
		}
		return bulkhead.Reply{}, false, &bulkhead.RemoteError{Code: bulkhead.ErrorCode(body.Code), Message: body.Message, Details: body.Details,
			Method: method, RequestID: id, PID: s.pid}
	}
	o.a.stats.disconnected.Add(1)
	return bulkhead.Reply{}, false, o.disconnectedErr(serverCrash(w, id, method, ans.err))
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
