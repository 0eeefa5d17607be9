package client

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/activation"
	"github.com/bulkhead-go/bulkhead/internal/clientwire"
	"github.com/bulkhead-go/bulkhead/internal/wire"
	"github.com/fxamacker/cbor/v2"
)

// Object is a reference to an object in one of the daemon's class
// servers, as activation.Object is in-process.
type Object struct {
	c        *Client
	h        uint64
	pid      int
	class    string
	released atomic.Bool
}

// ClassObject is a class handle (activation.ClassObject).
type ClassObject struct {
	c        *Client
	h        uint64
	pid      int
	class    string
	released atomic.Bool
}

// CreateInstance creates an object of class in one of the daemon's class
// servers.
func (c *Client) CreateInstance(ctx context.Context, class string, args ...any) (*Object, error) {
	rep, err := c.reply(ctx, &clientwire.Request{Op: clientwire.OpCreateInstance, Class: class}, args)
	if err != nil {
		return nil, err
	}
	return &Object{c: c, h: rep.Object, pid: rep.PID, class: class}, nil
}

// GetClassObject returns a handle to class in a running server.
func (c *Client) GetClassObject(ctx context.Context, class string) (*ClassObject, error) {
	rep, err := c.reply(ctx, &clientwire.Request{Op: clientwire.OpGetClassObject, Class: class}, nil)
	if err != nil {
		return nil, err
	}
	return &ClassObject{c: c, h: rep.ClassObject, pid: rep.PID, class: class}, nil
}

// Lookup finds an object in the daemon's running object table.
func (c *Client) Lookup(ctx context.Context, name string) (*Object, error) {
	rep, err := c.reply(ctx, &clientwire.Request{Op: clientwire.OpROTLookup, Name: name}, nil)
	if err != nil {
		return nil, err
	}
	return &Object{c: c, h: rep.Object, pid: rep.PID}, nil
}

// Register enters o in the running object table under name; the entry
// ends with the connection unless keepAlive.
func (c *Client) Register(ctx context.Context, name string, o *Object, keepAlive bool) error {
	_, err := c.reply(ctx, &clientwire.Request{Op: clientwire.OpROTRegister, Name: name, Object: o.h, KeepAlive: keepAlive}, nil)
	return err
}

// Revoke removes name from the running object table.
func (c *Client) Revoke(ctx context.Context, name string) error {
	_, err := c.reply(ctx, &clientwire.Request{Op: clientwire.OpROTRevoke, Name: name}, nil)
	return err
}

// Call calls a method of the object; ctx's traceparent
// (bulkhead.WithTraceparent) goes with it.
func (o *Object) Call(ctx context.Context, method string, args ...any) (bulkhead.Reply, error) {
	if o.released.Load() {
		return bulkhead.Reply{}, activation.ErrReleased
	}
	return o.c.callResult(ctx, &clientwire.Request{Op: clientwire.OpObjectCall, Object: o.h, Method: method,
		Traceparent: bulkhead.Traceparent(ctx)}, args)
}

// PID is the object's server process.
func (o *Object) PID() int { return o.pid }

// Class is the object's class, as it was asked for ("" after Lookup).
func (o *Object) Class() string { return o.class }

// Clone returns a second reference to the same object.
func (o *Object) Clone(ctx context.Context) (*Object, error) {
	if o.released.Load() {
		return nil, activation.ErrReleased
	}
	rep, err := o.c.reply(ctx, &clientwire.Request{Op: clientwire.OpClone, Object: o.h}, nil)
	if err != nil {
		return nil, err
	}
	return &Object{c: o.c, h: rep.Object, pid: o.pid, class: o.class}, nil
}

// Release gives up the reference. It does not wait for the daemon, which
// releases in order: every request made after it sees the reference gone.
// A second Release returns activation.ErrReleased, as in-process.
func (o *Object) Release() error { return o.c.release(o.h, &o.released) }

// CreateInstance creates an object in the class handle's server.
func (co *ClassObject) CreateInstance(ctx context.Context, args ...any) (*Object, error) {
	rep, err := co.c.reply(ctx, &clientwire.Request{Op: clientwire.OpClassCreateInstance, ClassObject: co.h}, args)
	if err != nil {
		return nil, err
	}
	return &Object{c: co.c, h: rep.Object, pid: rep.PID, class: co.class}, nil
}

// LockServer adds or removes an explicit lock on the handle's server.
func (co *ClassObject) LockServer(ctx context.Context, lock bool) error {
	_, err := co.c.reply(ctx, &clientwire.Request{Op: clientwire.OpLockServer, ClassObject: co.h, Lock: lock}, nil)
	return err
}

// PID is the handle's server process.
func (co *ClassObject) PID() int { return co.pid }

// Release gives up the class handle (and its locks), as Object.Release
// does.
func (co *ClassObject) Release() error { return co.c.release(co.h, &co.released) }

// Event is an event an object emitted, the same type as in-process.
type Event = activation.Event

// Subscription delivers an object's events. A subscriber that lets buffer
// events pile up is cut off, by the daemon or here.
type Subscription struct {
	c  *Client
	id uint64
	ch chan Event

	mu   sync.Mutex
	err  error
	done bool
}

// Subscribe subscribes to the object's events with a queue of buffer
// events (0: 64).
func (o *Object) Subscribe(ctx context.Context, buffer int) (*Subscription, error) {
	if buffer <= 0 {
		buffer = 64
	}
	s := &Subscription{c: o.c, ch: make(chan Event, buffer)}
	_, err := o.c.do(ctx, &clientwire.Request{Op: clientwire.OpSubscribe, Object: o.h, Buffer: uint64(buffer)}, nil, s)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Events delivers the events; it is closed when the subscription ends.
func (s *Subscription) Events() <-chan Event { return s.ch }

// Err says why the subscription ended, once Events is closed.
func (s *Subscription) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Close ends the subscription.
func (s *Subscription) Close() {
	s.c.enqueue(clientwire.RawFrame(nil, clientwire.TypeCancel, s.id, nil))
}

// event queues an event, cutting the subscriber off if its queue is full.
func (s *Subscription) event(p []byte) {
	var raw []cbor.RawMessage
	if err := wire.Unmarshal(p, &raw); err != nil || len(raw) != 2 {
		return
	}
	var name string
	var args []cbor.RawMessage
	if wire.Unmarshal(raw[0], &name) != nil || wire.Unmarshal(raw[1], &args) != nil {
		return
	}
	ev := activation.NewEvent(name, args)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return
	}
	select {
	case s.ch <- ev:
	default:
		s.done, s.err = true, fmt.Errorf("%w: the subscriber's queue of %d events was full", ErrLimit, cap(s.ch))
		close(s.ch)
		s.c.enqueue(clientwire.RawFrame(nil, clientwire.TypeCancel, s.id, nil))
	}
}

// end ends the subscription with why.
func (s *Subscription) end(why error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.done {
		s.done, s.err = true, why
		close(s.ch)
	}
}
