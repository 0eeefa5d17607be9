package activation

import (
	"context"
	"fmt"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/internal/wire"
)

// retryKind says whether, and why, an activation may go to another server.
type retryKind int

const (
	retryNone    retryKind = iota
	retryRefused           // the server answered "server stopping"
	retryDied              // the server died before it started the activation
)

// activate creates an object of c for sess, on via's server if possible.
// An activation refused because its server is stopping goes to another,
// launched if need be, as often as it takes: each refusal means that a
// server decided to stop, not that the activation failed, so only ctx
// bounds the retries and the client never sees them (PROTOCOL.md section
// 10). An activation whose server died before starting it goes elsewhere
// too, up to MaxRetries times in a row.
func (a *Activator) activate(ctx context.Context, sess *Session, c *classEntry, via *ClassObject, args []any) (*Object, error) {
	retry, deaths := false, 0
	for {
		o, err := a.placeObject(ctx, c, via, retry)
		if err != nil {
			return nil, err
		}
		h, again, err := a.activateOn(ctx, sess, o, args)
		switch again {
		case retryNone:
			return h, err
		case retryDied:
			if deaths++; deaths > a.maxRetries {
				return nil, fmt.Errorf("bulkhead: activation of %s: %d servers in a row died before starting it: %w", c.name, deaths, err)
			}
		}
		retry, via = true, nil
	}
}

// activateOn sends one ACTIVATE for o, whose server lock is already taken,
// and says whether another server may be tried.
func (a *Activator) activateOn(ctx context.Context, sess *Session, o *object, args []any) (*Object, retryKind, error) {
	s := o.s
	method := "activate " + o.class.name
	if err := ctx.Err(); err != nil {
		// Placed as its ctx ended: nothing is sent.
		a.dropObject(o)
		return nil, retryNone, &bulkhead.CanceledError{Method: method, Err: err}
	}
	if !s.acquireConn() {
		// Gone between the routing and now: it never saw the request.
		a.dropObject(o)
		a.stats.redispatched.Add(1)
		return nil, retryDied, fmt.Errorf("bulkhead: server %d exited before the activation was sent", s.pid)
	}
	defer s.releaseConn()
	w := s.w
	pd, err := w.Conn.SendActivate(o.class.name, o.id, args)
	if err != nil {
		a.dropObject(o)
		return nil, retryNone, fmt.Errorf("bulkhead: activate %s: %w", o.class.name, err)
	}
	id := pd.ID()
	if hk := a.hooks.activateSent; hk != nil {
		hk(s, o.id)
	}
	ans, ce, left := s.await(ctx, pd, method, func(ans answer) { a.leftActivation(o, ans) }) // recycles pd
	switch {
	case ce != nil:
		if !left {
			a.dropObject(o)
		}
		return nil, retryNone, ce
	case ans.err == nil && ans.typ == wire.TypeReply:
		a.mu.Lock()
		a.settleLocked(o, actTaken)
		a.mu.Unlock()
		o.refs.Store(1)
		a.stats.activations.Add(1)
		h, err := sess.adopt(o) // on error, adopt dropped the reference
		return h, retryNone, err
	case ans.err == nil:
		a.dropActivation(o, outcomeOf(ans))
		body, derr := wire.DecodeError(ans.payload)
		if derr != nil {
			return nil, retryNone, serverCrash(w, id, method, derr)
		}
		if body.Code == wire.CodeServerStopping {
			// The server decided to stop while the request was
			// on its way. Launch or pick another and retry.
			a.stats.stoppingRetries.Add(1)
			return nil, retryRefused, fmt.Errorf("%w: server %d", ErrServerStopping, s.pid)
		}
		return nil, retryNone, &bulkhead.RemoteError{Code: bulkhead.ErrorCode(body.Code), Message: body.Message, Details: body.Details,
			Method: method, RequestID: id, PID: s.pid}
	}
	crash := serverCrash(w, id, method, ans.err)
	a.dropObject(o)
	if crash.Phase == bulkhead.PhaseIdle {
		a.stats.redispatched.Add(1)
		return nil, retryDied, crash // it never started: safe to run elsewhere
	}
	return nil, retryNone, crash
}

// leftActivation ends an activation given up while it was queued, once the
// worker has answered it: an object the worker made after all is released
// at once, which may stop its server.
func (a *Activator) leftActivation(o *object, ans answer) {
	out := outcomeOf(ans)
	if out != actTaken || ans.typ != wire.TypeReply {
		a.dropActivation(o, out)
		return
	}
	a.mu.Lock()
	a.settleLocked(o, actTaken)
	a.mu.Unlock()
	o.refs.Store(1)
	o.unref() // RELEASE, and the server's lock
}
