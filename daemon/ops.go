package daemon

import (
	"context"
	"errors"
	"fmt"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/activation"
	"github.com/bulkhead-go/bulkhead/internal/clientwire"
	"github.com/bulkhead-go/bulkhead/internal/wire"
	"github.com/fxamacker/cbor/v2"
)

// Operations (CLIENT-PROTOCOL.md section 5), each on its request's
// goroutine.

// errBadRequest is a request that lacks a field its op needs.
func errBadRequest(format string, args ...any) error {
	return fmt.Errorf("%w: %s", clientwire.ErrBadRequest, fmt.Sprintf(format, args...))
}

// run carries out request id and answers it.
func (c *conn) run(ctx context.Context, id uint64, req *clientwire.Request) {
	var (
		rep any
		err error
	)
	switch req.Op {
	case clientwire.OpCall:
		err = c.call(ctx, id, req)
		if err == nil {
			return // call answers with its own frame
		}
	case clientwire.OpObjectCall:
		err = c.objectCall(ctx, id, req)
		if err == nil {
			return
		}
	case clientwire.OpSubscribe:
		err = c.subscribe(id, req)
		if err == nil {
			return
		}
	case clientwire.OpStatus:
		rep = c.s.status(c.peer)
	case clientwire.OpStats:
		rep = c.s.stats(c.peer)
	default:
		rep, err = c.objectOp(ctx, req)
	}
	if err != nil {
		// A canceled call's report (Started, how its worker was
		// stopped) is complete only once the worker is; the client has
		// returned at its own deadline already, and reads this if it
		// waits on: the daemon's max_deadline was the shorter.
		var ce *bulkhead.CanceledError
		if errors.As(err, &ce) {
			ce.Wait()
		}
		c.fail(id, err, "")
		return
	}
	c.send(clientwire.TypeReply, id, rep)
}

// call is a pool call: Pool.Call with the request's ctx.
func (c *conn) call(ctx context.Context, id uint64, req *clientwire.Request) error {
	if req.Pool == "" || req.Method == "" {
		return errBadRequest("call needs pool and method")
	}
	e, err := c.s.pool(req.Pool, c.peer)
	if err != nil {
		return err
	}
	defer e.calls.Done()
	if ctx, err = traced(ctx, req); err != nil {
		return err
	}
	r, err := e.pool.Call(ctx, req.Method, rawArgs(req.Args)...)
	if err != nil {
		return err
	}
	return c.sendResult(id, r)
}

// traced is ctx with req's traceparent, if it has one
// (CLIENT-PROTOCOL.md 5.1); one that is not valid is a bad request.
func traced(ctx context.Context, req *clientwire.Request) (context.Context, error) {
	if req.Traceparent == "" {
		return ctx, nil
	}
	ctx, err := bulkhead.WithTraceparent(ctx, req.Traceparent)
	if err != nil {
		return ctx, errBadRequest("%s: %v", req.Op, err)
	}
	return ctx, nil
}

// sendResult answers with {"result": r}, r's CBOR as it is.
func (c *conn) sendResult(id uint64, r bulkhead.Reply) error {
	raw := r.Raw()
	if raw == nil {
		raw = []byte{0xf6}
	}
	p := make([]byte, 0, 8+len(raw))
	p = append(p, 0xa1, 0x66)
	p = append(p, "result"...)
	p = append(p, raw...)
	r.Release()
	return c.sendRaw(clientwire.TypeReply, id, p)
}

// rawArgs passes a client's arguments on as they came.
func rawArgs(args []cbor.RawMessage) []any {
	out := make([]any, len(args))
	for i, a := range args {
		out[i] = a
	}
	return out
}

// session is the connection's activation session, made on first use.
func (c *conn) session() (*activation.Session, error) {
	if c.s.act == nil {
		return nil, errPermission
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sess != nil {
		return c.sess, nil
	}
	if c.closed {
		return nil, bulkhead.ErrClosed
	}
	sess, err := c.s.act.NewSession(activation.SessionConfig{PID: c.peer.PID})
	if err != nil {
		return nil, err
	}
	c.sess = sess
	return sess, nil
}

// objectOp carries out the object and ROT ops that answer with a map.
func (c *conn) objectOp(ctx context.Context, req *clientwire.Request) (any, error) {
	switch req.Op {
	case clientwire.OpCreateInstance, clientwire.OpGetClassObject:
		return c.activate(ctx, req)
	case clientwire.OpClassCreateInstance:
		co, err := handle[*activation.ClassObject](c, req.ClassObject)
		if err != nil {
			return nil, err
		}
		return c.newObject(co.CreateInstance(ctx, rawArgs(req.Args)...))
	case clientwire.OpLockServer:
		co, err := handle[*activation.ClassObject](c, req.ClassObject)
		if err != nil {
			return nil, err
		}
		return struct{}{}, co.LockServer(req.Lock)
	case clientwire.OpClone:
		o, err := handle[*activation.Object](c, req.Object)
		if err != nil {
			return nil, err
		}
		return c.newObject(o.Clone())
	case clientwire.OpROTRegister, clientwire.OpROTLookup, clientwire.OpROTRevoke:
		return c.rot(req)
	}
	return nil, errBadRequest("unknown op %q", req.Op)
}

// activate is create_instance and get_class_object.
func (c *conn) activate(ctx context.Context, req *clientwire.Request) (any, error) {
	if !c.s.classAllowed(req.Class, c.peer) {
		return nil, errPermission
	}
	sess, err := c.session()
	if err != nil {
		return nil, err
	}
	if req.Op == clientwire.OpCreateInstance {
		return c.newObject(sess.CreateInstance(ctx, req.Class, rawArgs(req.Args)...))
	}
	co, err := sess.GetClassObject(ctx, req.Class)
	if err != nil {
		return nil, err
	}
	h, err := c.hold(co)
	if err != nil {
		co.Release()
		return nil, err
	}
	return clientwire.Reply{ClassObject: h, PID: co.PID()}, nil
}

// newObject hands out a handle to o.
func (c *conn) newObject(o *activation.Object, err error) (any, error) {
	if err != nil {
		return nil, err
	}
	h, err := c.hold(o)
	if err != nil {
		o.Release()
		return nil, err
	}
	return clientwire.Reply{Object: h, PID: o.PID()}, nil
}

// hold gives x a handle, within max_handles.
func (c *conn) hold(x any) (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.handles == nil {
		return 0, bulkhead.ErrClosed
	}
	if len(c.handles) >= c.limits.MaxHandles {
		return 0, fmt.Errorf("%w: max_handles (%d) references held", clientwire.ErrLimit, c.limits.MaxHandles)
	}
	c.next++
	c.handles[c.next] = x
	return c.next, nil
}

// handle looks up a handle of type T.
func handle[T any](c *conn, h uint64) (T, error) {
	c.mu.Lock()
	x, ok := c.handles[h].(T)
	c.mu.Unlock()
	if !ok {
		var zero T
		return zero, fmt.Errorf("%w: no such handle %d on this connection", clientwire.ErrNotFound, h)
	}
	return x, nil
}

// release gives up handle h.
func (c *conn) release(h uint64) error {
	c.mu.Lock()
	x, ok := c.handles[h]
	delete(c.handles, h)
	c.mu.Unlock()
	switch x := x.(type) {
	case *activation.Object:
		return x.Release()
	case *activation.ClassObject:
		return x.Release()
	}
	if !ok {
		return fmt.Errorf("%w: no such handle %d on this connection", clientwire.ErrNotFound, h)
	}
	return nil
}

// rot is the running object table's ops.
func (c *conn) rot(req *clientwire.Request) (any, error) {
	if req.Name == "" {
		return nil, errBadRequest("%s needs name", req.Op)
	}
	sess, err := c.session()
	if err != nil {
		return nil, err
	}
	switch req.Op {
	case clientwire.OpROTRegister:
		o, err := handle[*activation.Object](c, req.Object)
		if err != nil {
			return nil, err
		}
		return struct{}{}, sess.Register(req.Name, o, req.KeepAlive)
	case clientwire.OpROTRevoke:
		return struct{}{}, sess.Revoke(req.Name)
	}
	o, err := sess.Lookup(req.Name)
	if errors.Is(err, activation.ErrNotRegistered) {
		// The same answer as for a name of a class the peer may not use
		// (below): otherwise the difference tells a refused peer the name
		// is registered (CLIENT-PROTOCOL.md sections 6 and 7).
		return nil, fmt.Errorf("%w: %q is not registered", clientwire.ErrNotFound, req.Name)
	}
	if err != nil {
		return nil, err
	}
	if !c.s.classAllowed(o.Class(), c.peer) {
		o.Release()
		return nil, fmt.Errorf("%w: %q is not registered", clientwire.ErrNotFound, req.Name)
	}
	return c.newObject(o, nil)
}

// objectCall is a call on an object.
func (c *conn) objectCall(ctx context.Context, id uint64, req *clientwire.Request) error {
	o, err := handle[*activation.Object](c, req.Object)
	if err != nil {
		return err
	}
	if req.Method == "" {
		return errBadRequest("object_call needs method")
	}
	if ctx, err = traced(ctx, req); err != nil {
		return err
	}
	r, err := o.Call(ctx, req.Method, rawArgs(req.Args)...)
	if err != nil {
		return err
	}
	return c.sendResult(id, r)
}

// subscribe forwards an object's events as EVENT frames with id, until the
// subscription ends (CANCEL ends it), then answers ERROR.
func (c *conn) subscribe(id uint64, req *clientwire.Request) error {
	o, err := handle[*activation.Object](c, req.Object)
	if err != nil {
		return err
	}
	buf := int(req.Buffer)
	if req.Buffer == 0 {
		buf = 64
	}
	if req.Buffer > activation.MaxSubscriptionBuffer {
		return errBadRequest("buffer %d: want 1 to %d", req.Buffer, activation.MaxSubscriptionBuffer)
	}
	c.mu.Lock()
	full := c.subs >= c.limits.MaxSubscriptions
	if !full {
		c.subs++
	}
	c.mu.Unlock()
	if full {
		return fmt.Errorf("%w: max_subscriptions (%d)", clientwire.ErrLimit, c.limits.MaxSubscriptions)
	}
	defer func() {
		c.mu.Lock()
		c.subs--
		c.mu.Unlock()
	}()
	sub, err := o.Subscribe(buf)
	if err != nil {
		return err
	}
	c.mu.Lock()
	cancel := c.pending[id]
	c.pending[id] = func() { cancel(); sub.Close() }
	c.subsByID[id] = sub
	draining := c.draining
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.subsByID, id)
		c.mu.Unlock()
	}()
	if draining {
		sub.Close()
	}
	c.send(clientwire.TypeReply, id, clientwire.Reply{Subscribed: true})
	for ev := range sub.Events() {
		c.sendEvent(id, ev)
	}
	end := sub.Err()
	if end == nil || errors.Is(end, activation.ErrReleased) {
		end = context.Canceled
	}
	if errors.Is(end, context.Canceled) {
		c.fail(id, &bulkhead.CanceledError{Method: "subscribe", Err: context.Canceled}, "subscription ended")
		return nil
	}
	c.fail(id, end, "")
	return nil
}

// sendEvent sends one event as [name, args].
func (c *conn) sendEvent(id uint64, ev activation.Event) {
	args := make([]cbor.RawMessage, ev.Len())
	for i := range args {
		if err := ev.Decode(i, &args[i]); err != nil {
			return
		}
	}
	p, err := wire.Marshal([]any{ev.Name, args})
	if err == nil {
		c.sendRaw(clientwire.TypeEvent, id, p)
	}
}
