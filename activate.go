package bulkhead

import (
	"context"
	"fmt"

	"github.com/bulkhead-go/bulkhead/internal/wire"
)

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
	method := "activate " + o.class.name
	if err := ctx.Err(); err != nil {
		// Placed as its ctx ended: nothing is sent.
		a.dropObject(o)
		return nil, false, &CanceledError{Method: method, Err: err}
	}
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
	ans, ce, left := s.await(ctx, pd, method, func(ans answer) { a.leftActivation(o, ans) }) // recycles pd
	switch {
	case ce != nil:
		if !left {
			a.dropObject(o)
		}
		return nil, false, ce
	case ans.err == nil && ans.typ == wire.TypeReply:
		o.refs.Store(1)
		a.stats.activations.Add(1)
		h, err := sess.adopt(o)
		if err != nil {
			return nil, false, err // adopt dropped the reference
		}
		return h, false, nil
	case ans.err == nil:
		a.dropObject(o)
		body, derr := wire.DecodeError(ans.payload)
		if derr != nil {
			return nil, false, serverCrash(w, id, method, derr)
		}
		if body.Code == wire.CodeServerStopping {
			// Seed 004: the server decided to stop while the request was
			// on its way. Launch or pick another and retry.
			a.stats.stoppingRetries.Add(1)
			return nil, true, fmt.Errorf("%w: server %d", ErrServerStopping, s.pid)
		}
		return nil, false, &RemoteError{Code: ErrorCode(body.Code), Message: body.Message, Details: body.Details,
			Method: method, RequestID: id, PID: s.pid}
	}
	crash := serverCrash(w, id, method, ans.err)
	a.dropObject(o)
	if crash.Phase == PhaseIdle {
		a.stats.redispatched.Add(1)
		return nil, true, crash // it never started: safe to run elsewhere
	}
	return nil, false, crash
}

// leftActivation ends an activation given up while it was queued, once the
// worker has answered it: an object the worker made after all is released
// at once, which may stop its server.
func (a *Activator) leftActivation(o *object, ans answer) {
	if ans.err == nil && ans.typ == wire.TypeReply {
		o.refs.Store(1)
		o.unref() // RELEASE, and the server's lock
		return
	}
	a.dropObject(o)
}
