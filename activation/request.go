package activation

import (
	"bytes"
	"context"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/internal/dispatch"

	"github.com/bulkhead-go/bulkhead/internal/wire"
)

// Requests to a class server (ACTIVATE and OBJCALL): waiting for the answer,
// and what a ctx that ends first does (docs/DESIGN.md, "Cancellation").

// answer is how a request to a class server ended: the worker's REPLY or
// ERROR, or err if the connection broke first.
type answer struct {
	typ     wire.Type
	payload []byte
	err     error
}

// await waits for the answer to request pd on s, and recycles pd.
//
// An answer that has come is returned even if ctx ended meanwhile: the
// caller gets a working object or result, and the server is left alone. If
// ctx ends first, await returns a *CanceledError and either
//   - leaves the request to the worker, if it waits behind other requests
//     on a shared server and the worker has not started it: the server keeps
//     running, and onLeft runs with the worker's answer (or the connection's
//     end) on a goroutine the activator owns; left is then true; or
//   - kills the server, which may be stuck in the request, as a pool's
//     worker is; so too when this request's cancellation shut the
//     connection down, even if its answer came just before: a success from
//     a server killed for it would hand out a dead object.
func (s *server) await(ctx context.Context, pd *dispatch.Pending, method string, onLeft func(answer)) (ans answer, ce *bulkhead.CanceledError, left bool) {
	c := s.w.Conn
	id := pd.ID()
	// wait reports true when this request's ctx ending shut the connection
	// down, once the shutdown is over. abandonedBy also makes that so where
	// wait reports only that the shutdown was asked for.
	shut := c.Wait(ctx, pd).Shut && c.AbandonedBy() == id
	if !shut && ctx.Err() != nil && !s.w.HasStarted(id) {
		if ce := s.leave(pd, method, ctx.Err(), onLeft); ce != nil {
			c.Release(pd)
			return answer{}, ce, true
		}
		// Answered meanwhile: take the answer.
	}
	res := c.Result(pd)
	done := res.Done
	ans = answer{typ: res.Type, payload: res.Payload, err: res.Err}
	c.Release(pd)
	switch {
	case shut || (!done && ctx.Err() != nil):
		s.kill()
		return answer{}, &bulkhead.CanceledError{Method: method, RequestID: id, PID: s.pid, Started: s.w.HasStarted(id), Err: ctx.Err()}, false
	case !done: // wait returns with pd done unless ctx ended
		ans.err = dispatch.ErrBroken
	}
	return ans, nil, false
}

// kill kills s's process, marking its end as the activator's doing.
func (s *server) kill() {
	s.w.kill()
}

// leave gives up request pd, whose ctx ended while it waited behind other
// requests on s, before the worker started it (conn.abandonQueued, as
// Pool.abandonQueued does). The server keeps running and is sent CANCEL,
// which a class server may ignore. onLeft runs with the worker's answer on
// a goroutine the activator owns, and the error's Wait returns after it;
// once the activator is closing onLeft does not run, since the server's
// exit forgets what it would release. leave returns nil if the answer had
// come already.
func (s *server) leave(pd *dispatch.Pending, method string, cause error, onLeft func(answer)) *bulkhead.CanceledError {
	a, w, id := s.a, s.w, pd.ID()
	e := &bulkhead.CanceledError{Method: method, RequestID: id, PID: s.pid, Err: cause, ExitCode: -1}
	a.mu.Lock()
	owned := !a.closed
	if owned {
		a.wg.Add(1)
	}
	a.mu.Unlock()
	var ans answer
	answered := make(chan struct{})
	ok := w.Conn.AbandonQueued(pd, func(typ wire.Type, payload []byte, err error) {
		// On the reader, under conn.mu: record, decide nothing else.
		ans = answer{typ: typ, payload: bytes.Clone(payload), err: err}
		e.Started, e.Reason = leftOutcome(w, id, ans)
		close(answered)
	})
	switch {
	case !ok:
		if owned {
			a.wg.Done()
		}
		return nil
	case !owned:
		e.Stopped = answered
	default:
		reported := make(chan struct{})
		e.Stopped = reported
		go func() {
			defer a.wg.Done()
			<-answered
			onLeft(ans)
			close(reported)
		}()
	}
	s.sendControl(wire.TypeCancel, id)
	return e
}

// leftOutcome says what the worker did with a request left to it.
func leftOutcome(w *serverProc, id uint64, ans answer) (started bool, reason string) {
	const queued = "abandoned while queued on the server, which was left running; "
	if ans.err != nil {
		return w.HasStarted(id), queued + "its connection ended before it answered: " + ans.err.Error()
	}
	if ans.typ == wire.TypeReply {
		return true, queued + "it ran the request anyway; the result was dropped"
	}
	body, err := wire.DecodeError(ans.payload)
	switch {
	case err != nil:
		return true, queued + "it answered with a malformed error: " + err.Error()
	case wire.Skipped(body.Code, body.Details), body.Code == wire.CodeServerStopping, body.Code == wire.CodeUnknownClass:
		return false, queued + "it did not run it: " + body.Message
	}
	return true, queued + "it ran the request anyway, which failed: " + body.Message
}
