// Package client reaches `bulkhead serve` from Go: the pools and classes of
// a daemon, with the API of an in-process Pool and Session, so that code
// moves between the two with a one-line change. The protocol is
// docs/CLIENT-PROTOCOL.md; errors come back as the root and activation
// packages' types, so errors.As works as in-process.
package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/internal/clientwire"
	"github.com/bulkhead-go/bulkhead/internal/fdio"
	"github.com/bulkhead-go/bulkhead/internal/wire"
)

// Errors of the daemon's own (CLIENT-PROTOCOL.md section 7).
var (
	// ErrPermission: the peer may not use that pool or class (or anything
	// here, at Dial).
	ErrPermission = clientwire.ErrPermission
	// ErrNotFound: an unknown handle, name, pool or class.
	ErrNotFound = clientwire.ErrNotFound
	// ErrBadRequest: the daemon found a request malformed.
	ErrBadRequest = clientwire.ErrBadRequest
	// ErrLimit: a per-connection limit of the daemon's was reached.
	ErrLimit = clientwire.ErrLimit
	// ErrProtocol: the daemon or this client broke the protocol; the
	// connection is closed.
	ErrProtocol = clientwire.ErrProtocol
	// ErrConnection: the connection to the daemon ended.
	ErrConnection = errors.New("bulkhead: connection to the daemon lost")
)

// Error is an ERROR of a kind this client does not know.
type Error = clientwire.Error

// Options tune a Client. Every field's zero value is usable.
type Options struct {
	// Name names the client in the daemon's logs. Zero value: none.
	Name string
}

// Client is a connection to the daemon. Its methods are safe for
// concurrent use. Every reference it holds is released when it is closed,
// or when its process dies.
type Client struct {
	uc   *net.UnixConn
	opts Options
	max  uint32

	raw  syscall.RawConn
	wake chan struct{} // cap 1: the writer has work
	done chan struct{} // closed when the connection has ended
	wg   sync.WaitGroup

	mu      sync.Mutex
	out     [][]byte // frames for the writer
	writing bool     // a caller or the writer is writing to the socket
	err     error    // why the connection ended
	next    uint64
	pending map[uint64]chan frame
	subs    map[uint64]*Subscription
}

// frame is an answer: a REPLY's payload, or an ERROR's error.
type frame struct {
	t   wire.Type
	p   []byte
	err error
}

// Dial connects to the daemon at socket and says HELLO. ctx bounds the
// connection and the handshake.
func Dial(ctx context.Context, socket string, opts Options) (*Client, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return nil, err
	}
	uc := nc.(*net.UnixConn)
	raw, err := uc.SyscallConn()
	if err != nil {
		uc.Close()
		return nil, err
	}
	c := &Client{uc: uc, raw: raw, opts: opts, wake: make(chan struct{}, 1), done: make(chan struct{}),
		pending: make(map[uint64]chan frame), subs: make(map[uint64]*Subscription)}
	if err := c.handshake(ctx); err != nil {
		uc.Close()
		return nil, err
	}
	c.wg.Add(2)
	go c.reader()
	go c.writer()
	return c, nil
}

// handshake sends HELLO and reads the daemon's, within ctx: its deadline
// is the socket's, and its end cuts the wait short. The callback that cuts
// it is waited for, so that it cannot set a deadline in the past on a
// connection that has just been set up.
func (c *Client) handshake(ctx context.Context) error {
	if dl, ok := ctx.Deadline(); ok {
		c.uc.SetDeadline(dl)
	}
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		c.uc.SetDeadline(time.Unix(1, 0))
		close(fired)
	})
	err := c.hello(ctx)
	if !stop() {
		<-fired
		if err == nil {
			err = ctx.Err() // the socket's deadline is spent: the connection is not usable
		}
	}
	c.uc.SetDeadline(time.Time{})
	return err
}

// hello is the handshake's exchange.
func (c *Client) hello(ctx context.Context) error {
	f, err := clientwire.Frame(nil, clientwire.TypeHello, 0, clientwire.Hello{Protocol: clientwire.Version, Name: c.opts.Name})
	if err != nil {
		return err
	}
	if _, err := c.uc.Write(f); err != nil {
		return ctxOr(ctx, err)
	}
	r := wire.NewReaderSize(c.uc, wire.MaxHelloSize, 1<<10)
	h, p, err := r.Next()
	if err != nil {
		return ctxOr(ctx, err)
	}
	if h.Type == clientwire.TypeError {
		return clientwire.DecodeError(p)
	}
	var hello clientwire.Hello
	if h.Type != clientwire.TypeHello || clientwire.Decode(p, &hello) != nil || hello.Protocol != clientwire.Version {
		return fmt.Errorf("%w: the daemon's HELLO is malformed", ErrProtocol)
	}
	if hello.MaxFrame < 1024 || hello.MaxFrame > wire.MaxMaxFrame {
		return fmt.Errorf("%w: max_frame %d", ErrProtocol, hello.MaxFrame)
	}
	c.max = uint32(hello.MaxFrame)
	return nil
}

func ctxOr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// Close ends the connection: the daemon releases every reference, lock and
// registration the client held. Requests in flight fail with
// ErrConnection.
func (c *Client) Close() error {
	c.end(ErrConnection)
	c.wg.Wait()
	return nil
}

// end records why the connection ended, once, and shuts it.
func (c *Client) end(why error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = why
	pending, subs := c.pending, c.subs
	c.pending, c.subs = nil, nil
	close(c.done)
	c.mu.Unlock()
	c.uc.Close()
	for _, ch := range pending {
		ch <- frame{err: why}
	}
	for _, s := range subs {
		s.end(why)
	}
}

// reader delivers the daemon's frames until the connection ends.
func (c *Client) reader() {
	defer c.wg.Done()
	r := wire.NewReaderSize(c.uc, c.max, 8<<10)
	for {
		h, p, err := r.Next()
		if err != nil {
			if errors.Is(err, wire.ErrProtocol) {
				err = fmt.Errorf("%w: %v", ErrProtocol, err)
			} else {
				err = fmt.Errorf("%w: %v", ErrConnection, err)
			}
			c.end(err)
			return
		}
		if err := c.deliver(h, p); err != nil {
			c.end(err)
			return
		}
	}
}

// deliver routes one frame.
func (c *Client) deliver(h wire.Header, p []byte) error {
	switch h.Type {
	case clientwire.TypeReply, clientwire.TypeError:
		f := frame{t: h.Type, p: append([]byte(nil), p...)}
		if h.Type == clientwire.TypeError {
			f.err = clientwire.DecodeError(f.p)
			if h.ID == 0 {
				return f.err
			}
		}
		c.mu.Lock()
		ch := c.pending[h.ID]
		delete(c.pending, h.ID)
		sub := c.subs[h.ID]
		if sub != nil && h.Type == clientwire.TypeError {
			delete(c.subs, h.ID)
		}
		c.mu.Unlock()
		switch {
		case ch != nil:
			ch <- f
		case sub != nil && f.err != nil:
			sub.end(f.err)
		}
		return nil // an answer nobody waits for any more is late, not wrong
	case clientwire.TypeEvent:
		c.mu.Lock()
		sub := c.subs[h.ID]
		c.mu.Unlock()
		if sub != nil {
			sub.event(p)
		}
		return nil
	case clientwire.TypePing:
		c.enqueue(clientwire.RawFrame(nil, clientwire.TypePong, h.ID, nil))
		return nil
	case clientwire.TypePong:
		return nil
	}
	return fmt.Errorf("%w: a daemon does not send %v", ErrProtocol, h.Type)
}

// writer writes queued frames until the connection ends.
func (c *Client) writer() {
	defer c.wg.Done()
	for {
		select {
		case <-c.wake:
		case <-c.done:
			return
		}
		c.mu.Lock()
		if c.writing || len(c.out) == 0 {
			c.mu.Unlock() // a caller writes; it wakes us if it leaves some
			continue
		}
		batch := c.out
		c.out, c.writing = nil, true
		c.mu.Unlock()
		for _, f := range batch {
			if _, err := c.uc.Write(f); err != nil {
				c.end(fmt.Errorf("%w: %v", ErrConnection, err))
				return
			}
		}
		c.mu.Lock()
		c.writing = false
		more := len(c.out) > 0
		c.mu.Unlock()
		if more {
			c.kick()
		}
	}
}

func (c *Client) kick() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// enqueue sends frame f without waiting: written from here if nobody else
// is writing and the socket takes it now, else by the writer. It never
// blocks, so no caller waits past its deadline on a write; a frame queued
// when the connection ends is dropped.
func (c *Client) enqueue(f []byte) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	if !c.writing && len(c.out) == 0 {
		c.writing = true
		c.mu.Unlock()
		n := fdio.TryWrite(c.raw, f)
		c.mu.Lock()
		c.writing = false
		if n == len(f) {
			more := len(c.out) > 0
			c.mu.Unlock()
			if more {
				c.kick()
			}
			return
		}
		c.out = append([][]byte{f[n:]}, c.out...)
	} else {
		c.out = append(c.out, f)
	}
	c.mu.Unlock()
	c.kick()
}

// Caller is the bulkhead.Caller of one of the daemon's pools.
func (c *Client) Pool(name string) bulkhead.Caller { return &pool{c: c, name: name} }

type pool struct {
	c    *Client
	name string
}

// Call calls method on the daemon's pool, as Pool.Call does in-process;
// ctx's traceparent (bulkhead.WithTraceparent) goes with it.
func (p *pool) Call(ctx context.Context, method string, args ...any) (bulkhead.Reply, error) {
	return p.c.callResult(ctx, &clientwire.Request{Op: clientwire.OpCall, Pool: p.name, Method: method,
		Traceparent: bulkhead.Traceparent(ctx)}, args)
}
