package client

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/activation"
	"github.com/bulkhead-go/bulkhead/internal/clientwire"
	"github.com/bulkhead-go/bulkhead/internal/wire"
	"github.com/fxamacker/cbor/v2"
)

// do sends req and waits for its answer, or for ctx to end: then the
// daemon is sent CANCEL and do returns a *bulkhead.CanceledError at once.
// sub, if not nil, takes the request's events until its ERROR.
func (c *Client) do(ctx context.Context, req *clientwire.Request, args []any, sub *Subscription) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, &bulkhead.CanceledError{Method: req.Method, Err: err, ExitCode: -1, Reason: "its ctx had ended before it was sent"}
	}
	if dl, ok := ctx.Deadline(); ok {
		req.Deadline = uint64(dl.UnixNano())
	}
	for _, a := range args {
		p, err := wire.Marshal(a)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", bulkhead.ErrEncoding, err)
		}
		req.Args = append(req.Args, cbor.RawMessage(p))
	}
	ch := make(chan frame, 1)
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return nil, err
	}
	c.next++
	id := c.next
	c.pending[id] = ch
	if sub != nil {
		sub.id = id
		c.subs[id] = sub
	}
	c.mu.Unlock()
	f, err := clientwire.Frame(nil, clientwire.TypeRequest, id, req)
	if err == nil && len(f)-wire.HeaderSize > int(c.max) {
		err = fmt.Errorf("%w: a request of %d bytes, over the daemon's max_frame", bulkhead.ErrEncoding, len(f)-wire.HeaderSize)
	}
	if err != nil {
		c.forget(id)
		return nil, err
	}
	c.enqueue(f)
	select {
	case ans := <-ch:
		return ans.p, ans.err
	case <-ctx.Done():
		c.forget(id)
		c.enqueue(clientwire.RawFrame(nil, clientwire.TypeCancel, id, nil))
		return nil, &bulkhead.CanceledError{Method: req.Method, Err: ctx.Err(), ExitCode: -1, Started: true,
			Reason: "its ctx ended while the daemon had it; the daemon was sent CANCEL"}
	}
}

// release gives up handle h without waiting: the daemon releases as it
// reads, before the connection's next request, and answers only a release
// that fails (CLIENT-PROTOCOL.md section 5.2). That answer, which released
// makes impossible but for a daemon that has lost the handle already, is
// dropped: nobody waits for it.
func (c *Client) release(h uint64, released *atomic.Bool) error {
	if !released.CompareAndSwap(false, true) {
		return activation.ErrReleased
	}
	p, err := wire.Marshal(&clientwire.Request{Op: clientwire.OpRelease, Handle: h})
	if err != nil {
		return err
	}
	c.mu.Lock()
	if err := c.err; err != nil {
		c.mu.Unlock()
		return err
	}
	c.next++
	id := c.next
	c.mu.Unlock()
	c.enqueue(clientwire.RawFrame(nil, clientwire.TypeRequest, id, p))
	return nil
}

// forget drops request id's waiter.
func (c *Client) forget(id uint64) {
	c.mu.Lock()
	if c.pending != nil {
		delete(c.pending, id)
		delete(c.subs, id)
	}
	c.mu.Unlock()
}

func (c *Client) connErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// callResult runs a request that answers {"result": item}.
func (c *Client) callResult(ctx context.Context, req *clientwire.Request, args []any) (bulkhead.Reply, error) {
	p, err := c.do(ctx, req, args, nil)
	if err != nil {
		return bulkhead.Reply{}, err
	}
	var rep clientwire.Reply
	if err := clientwire.Decode(p, &rep); err != nil || rep.Result == nil {
		return bulkhead.Reply{}, fmt.Errorf("%w: REPLY of %s without a result", ErrProtocol, req.Op)
	}
	return bulkhead.NewReply(rep.Result), nil
}

// reply runs a request that answers with a clientwire.Reply.
func (c *Client) reply(ctx context.Context, req *clientwire.Request, args []any) (clientwire.Reply, error) {
	var rep clientwire.Reply
	p, err := c.do(ctx, req, args, nil)
	if err != nil {
		return rep, err
	}
	if err := clientwire.Decode(p, &rep); err != nil {
		return rep, fmt.Errorf("%w: REPLY of %s: %v", ErrProtocol, req.Op, err)
	}
	return rep, nil
}

// Status is the daemon's status: the pools and class servers this client
// may use, then their workers (CLIENT-PROTOCOL.md section 5.5).
func (c *Client) Status(ctx context.Context) (map[string]any, error) {
	return c.mapOp(ctx, clientwire.OpStatus)
}

// Stats is the daemon's counters for the pools and the activator this
// client may use.
func (c *Client) Stats(ctx context.Context) (map[string]any, error) {
	return c.mapOp(ctx, clientwire.OpStats)
}

func (c *Client) mapOp(ctx context.Context, op string) (map[string]any, error) {
	p, err := c.do(ctx, &clientwire.Request{Op: op}, nil, nil)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := wire.Unmarshal(p, &m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrProtocol, err)
	}
	return m, nil
}
