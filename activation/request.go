package activation

import (
	"bytes"
	"context"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/internal/dispatch"
	"github.com/bulkhead-go/bulkhead/internal/proc"

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
		c.MarkAbandoned(id) // the server's end is this request's doing
		s.kill()
		return answer{}, s.killed(method, id, ctx.Err()), false
	case !done: // wait returns with pd done unless ctx ended
		ans.err = dispatch.ErrBroken
	}
	return ans, nil, false
}

// killed is the error of request id, whose ctx ended while s had it and
// which kill stopped. A request still in the server's socket could start
// until the server is dead, so Started is read only then, on a goroutine
// the activator owns, and the error's Wait returns after it. Once the
// activator is closing nobody reads it: Started is then true, the safe
// direction.
func (s *server) killed(method string, id uint64, cause error) *bulkhead.CanceledError {
	e := &bulkhead.CanceledError{Method: method, RequestID: id, PID: s.pid, Err: cause, ExitCode: -1, Started: true,
		Reason: "its server was killed, as it may have been stuck in the request"}
	if !s.own() {
		return e
	}
	reported := make(chan struct{})
	e.Stopped = reported
	go func() {
		defer s.disown()
		<-s.w.Proc.Exited()
		ex := proc.ExitOf(s.w.Proc.State())
		e.Started = s.w.HasStarted(id)
		e.ExitCode, e.Signal = ex.Code, ex.Signal
		close(reported)
	}()
	return e
}

// own makes the caller a goroutine the activator waits for (Close), which
// may use s's connection and marker until disown; false once the activator
// is closing. The caller must hold the connection itself (acquireConn).
func (s *server) own() bool {
	a := s.a
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed || !s.acquireConn() {
		return false
	}
	a.wg.Add(1)
	return true
}

// disown ends what own began.
func (s *server) disown() {
	s.releaseConn()
	s.a.wg.Done()
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
	w, id := s.w, pd.ID()
	e := &bulkhead.CanceledError{Method: method, RequestID: id, PID: s.pid, Err: cause, ExitCode: -1}
	owned := s.own()
	var ans answer
	answered := make(chan struct{})
	ok := w.Conn.AbandonQueued(pd, func(typ wire.Type, payload []byte, err error) {
		// On the reader, under conn.mu: record, decide nothing else.
		ans = answer{typ: typ, payload: bytes.Clone(payload), err: err}
		e.Started, e.Reason = leftOutcome(ans)
		close(answered)
	})
	switch {
	case !ok:
		if owned {
			s.disown()
		}
		return nil
	case !owned:
		e.Stopped = answered
	default:
		reported := make(chan struct{})
		e.Stopped = reported
		go func() {
			defer s.disown()
			<-answered
			if ans.err != nil {
				// The connection broke: the server is finished. A request
				// still in its socket could start until it is dead, so the
				// marker is read only then (leftOutcome said "started",
				// the safe answer, until now).
				if !w.Proc.Exiting() {
					w.kill()
				}
				<-w.Proc.Exited()
				e.Started = w.HasStarted(id)
			}
			onLeft(ans)
			close(reported)
		}()
	}
	s.sendControl(wire.TypeCancel, id)
	return e
}

// leftOutcome says what the worker did with a request left to it. If the
// connection broke first, only the start marker of a dead server can say,
// so it says "started" (the safe direction) and leave's goroutine reads the
// marker once the server is dead.
func leftOutcome(ans answer) (started bool, reason string) {
	const queued = "abandoned while queued on the server, which was left running; "
	if ans.err != nil {
		return true, queued + "its connection ended before it answered: " + ans.err.Error()
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
