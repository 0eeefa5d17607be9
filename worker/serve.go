// Running calls: the serial and concurrent serving loops, the start mark,
// the deadline check, and encoding the answer.

package worker

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/bulkhead-go/bulkhead/internal/wire"
)

// serveSerial runs every call on this goroutine, locked to its thread.
func (c *conn) serveSerial(ctx context.Context, idle time.Duration) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var call wire.Call
	for !c.quit.Load() {
		h, p, ok, err := c.next(ctx, idle)
		if !ok {
			return err
		}
		switch h.Type {
		case wire.TypeCall:
			var m *meter
			if c.env.callUsage {
				m = &meter{f: c.usage}
				m.start() // on this goroutine's locked thread, like the call
			}
			res, rerr := c.run(ctx, h.ID, p, &call)
			var u wire.Usage
			if m != nil {
				u = m.stop()
			}
			c.wmu.Lock() // a STACK may be being written (stack.go)
			c.putUsage(h.ID, m, u)
			c.encodeResult(h.ID, call.Method, res, rerr)
			err := c.flush()
			c.wmu.Unlock()
			if err != nil {
				return fmt.Errorf("worker: writing reply: %w", err)
			}
			if c.panic != nil && !c.s.ContinueAfterPanic {
				return nil
			}
		case wire.TypeQuit:
			return nil
		case wire.TypePing:
			c.wmu.Lock()
			c.outb.Empty(wire.TypePong, h.ID)
			err := c.flush()
			c.wmu.Unlock()
			if err != nil {
				return err
			}
		case wire.TypeCancel, wire.TypePong:
			// A serial worker reads CANCEL only after the call ended.
		}
	}
	return nil
}

// serveConcurrent reads frames on this goroutine and runs up to n calls at
// once. Calls are marked started in id order, as the protocol requires,
// because the reader marks each one before handing it to a handler.
func (c *conn) serveConcurrent(ctx context.Context, idle time.Duration, n int) error {
	slots := make(chan struct{}, n)
	var wg sync.WaitGroup
	defer wg.Wait()
	var cmu sync.Mutex
	cancels := make(map[uint64]context.CancelFunc)
	for !c.quit.Load() {
		h, p, ok, err := c.next(ctx, idleIfNone(idle, slots))
		if !ok {
			return err
		}
		switch h.Type {
		case wire.TypeCall:
			slots <- struct{}{}
			payload := slices.Clone(p)
			cctx, cancel := context.WithCancel(ctx)
			cmu.Lock()
			cancels[h.ID] = cancel
			cmu.Unlock()
			c.started.Store(h.ID)
			wg.Add(1)
			go func(id uint64) {
				defer wg.Done()
				var call wire.Call
				var m *meter
				if c.env.callUsage {
					// The call's own thread, for its CPU time.
					runtime.LockOSThread()
					m = &meter{f: c.usage}
					m.start()
				}
				res, rerr := c.runMarked(cctx, id, payload, &call)
				var u wire.Usage
				if m != nil {
					u = m.stop()
					runtime.UnlockOSThread()
				}
				cmu.Lock()
				delete(cancels, id)
				cmu.Unlock()
				cancel()
				c.wmu.Lock()
				c.putUsage(id, m, u)
				c.encodeResult(id, call.Method, res, rerr)
				werr := c.flush()
				c.wmu.Unlock()
				<-slots
				if werr != nil || (c.panicked() && !c.s.ContinueAfterPanic) {
					c.quit.Store(true)
					c.wakeReader()
				}
			}(h.ID)
		case wire.TypeCancel:
			cmu.Lock()
			if cancel := cancels[h.ID]; cancel != nil {
				cancel()
			}
			cmu.Unlock()
		case wire.TypeQuit:
			return nil
		case wire.TypePing:
			c.wmu.Lock()
			c.outb.Empty(wire.TypePong, h.ID)
			err := c.flush()
			c.wmu.Unlock()
			if err != nil {
				return err
			}
		case wire.TypePong:
		}
	}
	return nil
}

// idleIfNone applies the idle timeout only while no call is in flight.
func idleIfNone(idle time.Duration, slots chan struct{}) time.Duration {
	if len(slots) > 0 {
		return 0
	}
	return idle
}

// run marks the call started, then runs it.
// run marks call id started and runs it, unless its deadline has passed:
// its caller has given up already, perhaps while the call waited behind
// others (a pipelining dispatcher), and it is skipped, unmarked, so that the
// start marker still tells exactly which calls had any effect.
func (c *conn) run(ctx context.Context, id uint64, p []byte, call *wire.Call) (any, error) {
	derr := wire.DecodeCall(p, call)
	if derr == nil && call.Deadline > 0 && time.Now().UnixNano() >= call.Deadline {
		return nil, skippedError()
	}
	c.started.Store(id)
	return c.runDecoded(ctx, id, call, derr)
}

// skippedError answers a call whose deadline passed before it could start
// (PROTOCOL.md section 3).
func skippedError() *Error {
	return &Error{Code: wire.CodeCanceled, Message: "deadline passed before the call started",
		Details: map[string]any{"started": false}}
}

func (c *conn) runMarked(ctx context.Context, id uint64, p []byte, call *wire.Call) (res any, err error) {
	return c.runDecoded(ctx, id, call, wire.DecodeCall(p, call))
}

func (c *conn) runDecoded(ctx context.Context, id uint64, call *wire.Call, derr error) (res any, err error) {
	if derr != nil {
		return nil, &Error{Code: wire.CodeBadArguments, Message: derr.Error()}
	}
	h := c.handlers[call.Method]
	if h == nil {
		return nil, &Error{Code: wire.CodeUnknownMethod, Message: fmt.Sprintf("unknown method %q", call.Method)}
	}
	if c.s.BeforeCall != nil {
		c.s.BeforeCall(call.Method, id)
	}
	if call.Deadline > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, time.Unix(0, call.Deadline))
		defer cancel()
	}
	if call.Traceparent != "" {
		ctx = context.WithValue(ctx, traceparentKey{}, call.Traceparent)
	}
	defer func() {
		if v := recover(); v != nil {
			pe := &PanicError{Method: call.Method, Value: v, Stack: string(debug.Stack())}
			c.panicMu.Lock()
			if c.panic == nil {
				c.panic = pe
			}
			c.panicMu.Unlock()
			res, err = nil, &Error{Code: wire.CodePanic, Message: fmt.Sprint("panic: ", v),
				Details: map[string]any{"stack": pe.Stack}}
		}
	}()
	res, err = h(ctx, Args{raw: call.Args})
	if err == nil && ctx.Err() != nil && call.Deadline > 0 && time.Now().UnixNano() > call.Deadline {
		// The caller has given up; the result is still sent, the
		// dispatcher drops it.
		return res, nil
	}
	return res, err
}

func (c *conn) panicked() bool {
	c.panicMu.Lock()
	defer c.panicMu.Unlock()
	return c.panic != nil
}

// encodeResult builds the REPLY or ERROR frame of a call. A []byte result
// of wire.MinRef bytes or more is referenced, not copied (it may be a view
// of the call's own frame, from Args.Bytes): the caller flushes before the
// handler's memory is reused.
//
// Encoding runs the user's code too (a MarshalCBOR method, an error's Error
// method), after the handler's recover has gone. A panic there is the call's
// panic like any other: it is answered ERROR panic naming the encoding, with
// the stack, and ends the worker unless ContinueAfterPanic, as a handler's
// panic does. Unrecovered, it would kill the worker with its reply half
// built, and the caller would learn only that the connection closed.
func (c *conn) encodeResult(id uint64, method string, res any, err error) {
	if perr := c.encodeGuarded(method, res, err, func() { c.encodeAnswer(id, res, err) }); perr != nil {
		c.encodeAnswer(id, nil, perr) // only strings: cannot panic
	}
}

// encodeGuarded runs encode, and turns a panic in it into the call's panic:
// recorded for Serve, and returned as the ERROR to send instead. The Builder
// has dropped the partial frame by then (wire.Builder).
func (c *conn) encodeGuarded(method string, res any, err error, encode func()) (perr *Error) {
	defer func() {
		v := recover()
		if v == nil {
			return
		}
		what := any(res)
		if err != nil {
			what = err
		}
		pe := &PanicError{Method: method, Value: v, Stack: string(debug.Stack()), Encoding: true}
		c.panicMu.Lock()
		if c.panic == nil {
			c.panic = pe
		}
		c.panicMu.Unlock()
		perr = &Error{Code: wire.CodePanic, Message: fmt.Sprintf("panic while encoding the answer (%T): %v", what, v),
			Details: map[string]any{"stack": pe.Stack}}
	}()
	encode()
	return nil
}

// encodeAnswer builds the REPLY, or the ERROR for err.
func (c *conn) encodeAnswer(id uint64, res any, err error) {
	if err == nil {
		if eerr := c.outb.ValueVec(wire.TypeReply, id, res, c.env.maxFrame); eerr == nil {
			return
		} else {
			err = &Error{Code: wire.CodeApplication, Message: "encoding result: " + eerr.Error()}
		}
	}
	body := wire.ErrorBody{Code: wire.CodeApplication}
	var we *Error
	if errors.As(err, &we) {
		body = wire.ErrorBody{Code: we.Code, Message: we.Message, Details: we.Details}
	} else {
		body.Message = err.Error()
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			body.Code = wire.CodeCanceled
		}
	}
	if eerr := c.outb.Value(wire.TypeError, id, body, c.env.maxFrame); eerr != nil {
		// Details too large to send: send the message alone.
		body.Details = nil
		if len(body.Message) > 4096 {
			body.Message = body.Message[:4096]
		}
		_ = c.outb.Value(wire.TypeError, id, body, c.env.maxFrame)
	}
}

// The start-marker page header (PROTOCOL.md section 6).
const (
	markerMagic   = 0x4b4d4842
	markerVersion = 1
)

// putUsage appends u, call id's USAGE, if m measured it, so that it goes
// out just before the call's answer.
func (c *conn) putUsage(id uint64, m *meter, u wire.Usage) {
	if m != nil {
		_ = c.outb.Usage(id, u, c.env.maxFrame) // a few bytes: under any frame limit
	}
}
