package worker

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/bulkhead-go/bulkhead/internal/wire"
)

// Threading is a class's threading model (COM's apartments), declared when the class
// is registered and enforced by this package.
type Threading int

const (
	// Apartment runs the calls on one object one at a time, in arrival
	// order; different objects run concurrently. The object's state needs
	// no lock. Each object has its own OS thread for its whole life
	// (COM's single-threaded apartment): its constructor, calls and
	// Destroy all run on it, so a native library that keeps per-thread
	// state per object (thread-locals, a current context) sees one thread.
	// The thread ends with the object. The hop to that thread costs the
	// warm object call (docs/DESIGN.md, "Threading models").
	Apartment Threading = wire.ThreadingApartment
	// Free runs every call as soon as it arrives, concurrently with any
	// other, on the same object too. The object must lock its own state.
	Free Threading = wire.ThreadingFree
	// Single runs one call at a time in the whole process, every call of
	// every Single object on the same locked OS thread: for native
	// libraries that are not thread-safe at all, or whose thread-local
	// state is global (one per process, not one per object).
	Single Threading = wire.ThreadingSingle
)

func (t Threading) String() string {
	switch t {
	case Apartment:
		return "apartment"
	case Free:
		return "free"
	case Single:
		return "single"
	}
	return fmt.Sprintf("Threading(%d)", int(t))
}

// Object is a live object's identity inside the worker. Its constructor gets
// it, to keep for emitting events.
type Object struct {
	id    uint64
	class string
	c     *conn
}

// ID returns the object's id, unique within this worker process.
func (o *Object) ID() uint64 { return o.id }

// Class returns the object's class name.
func (o *Object) Class() string { return o.class }

// Emit sends an event to the clients subscribed to this object. It never
// waits for them: delivery is asynchronous and a client that falls behind is
// cut off by the dispatcher, not waited for.
func (o *Object) Emit(event string, args ...any) error {
	if !wire.ValidName(event) {
		return fmt.Errorf("worker: event name %q is invalid", event)
	}
	c := o.c
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.outb.Event(o.id, event, args, c.env.maxFrame); err != nil {
		return fmt.Errorf("worker: event %q: %w", event, err)
	}
	return c.flush()
}

// Class is an object type served by a worker: a constructor and methods on
// the object's state T. Register it with Server.Register.
type Class[T any] struct {
	// Name identifies the class to the activator: 1 to 256 bytes of UTF-8
	// without control characters. Required.
	Name string

	// Threading is the class's threading model.
	// Zero value: Apartment.
	Threading Threading

	// New creates an object's state from the activation's arguments. self
	// is the object's identity, for Emit. Required.
	New func(ctx context.Context, self *Object, args Args) (T, error)

	// Destroy, if set, runs when the last reference to an object has been
	// released, after the calls queued on it; and for the objects still
	// alive when the worker is told to quit.
	// Zero value: nothing runs.
	Destroy func(obj T)

	methods map[string]func(context.Context, T, Args) (any, error)
}

// Method registers fn as method name of the class. It panics on an empty,
// overlong or duplicate name, like Server.Handle.
func (c *Class[T]) Method(name string, fn func(ctx context.Context, obj T, args Args) (any, error)) {
	if len(name) == 0 || len(name) > wire.MaxMethodBytes {
		panic(fmt.Sprintf("worker: method name of %d bytes", len(name)))
	}
	if fn == nil {
		panic("worker: nil method " + name)
	}
	if c.methods == nil {
		c.methods = make(map[string]func(context.Context, T, Args) (any, error))
	}
	if _, dup := c.methods[name]; dup {
		panic("worker: duplicate method " + name + " in class " + c.Name)
	}
	c.methods[name] = fn
}

// ClassRegistration is what Server.Register accepts: a *Class[T].
type ClassRegistration interface {
	spec() *classSpec
}

// classSpec is a class with its state type erased.
type classSpec struct {
	name      string
	threading Threading
	newFn     func(context.Context, *Object, Args) (any, error)
	destroy   func(any)
	methods   map[string]func(context.Context, any, Args) (any, error)
}

func (c *Class[T]) spec() *classSpec {
	s := &classSpec{
		name:      c.Name,
		threading: c.Threading,
		newFn: func(ctx context.Context, self *Object, a Args) (any, error) {
			return c.New(ctx, self, a)
		},
		methods: make(map[string]func(context.Context, any, Args) (any, error), len(c.methods)),
	}
	if c.Destroy != nil {
		s.destroy = func(v any) { c.Destroy(v.(T)) }
	}
	for name, fn := range c.methods {
		s.methods[name] = func(ctx context.Context, v any, a Args) (any, error) { return fn(ctx, v.(T), a) }
	}
	return s
}

// ObjectOptions configure how a Server serves objects.
type ObjectOptions struct {
	// MaxActivations makes the worker revoke its classes once it has
	// accepted this many activations: it goes on serving the objects it
	// has, answers later activations "server stopping", and the activator
	// starts a fresh server. For native libraries that leak.
	// Zero value: no limit.
	MaxActivations int

	// MaxCalls bounds the Free and Apartment calls running at once; the
	// worker stops reading new frames while at the bound.
	// Zero value: 1024.
	MaxCalls int
}

// objectServer is a Server's class table and its serving session.
type objectServer struct {
	classes []*classSpec
	active  atomic.Pointer[objConn]
}

// Register adds a class. Classes are registered with the dispatcher
// suspended, all of them, and resumed at once when Serve starts, so that no
// activation reaches a half-initialised worker (REGCLS_SUSPENDED, then
// CoResumeClassObjects). It panics on an invalid or duplicate class, or
// during Serve.
func (s *Server) Register(c ClassRegistration) {
	spec := c.spec()
	switch {
	case !wire.ValidName(spec.name):
		panic(fmt.Sprintf("worker: invalid class name %q", spec.name))
	case spec.threading < Apartment || spec.threading > Single:
		panic(fmt.Sprintf("worker: class %s: unknown threading model %d", spec.name, spec.threading))
	case spec.newFn == nil:
		panic("worker: class " + spec.name + " has no New")
	case s.serving.Load():
		panic("worker: Register called during Serve")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.objsrv.classes) >= wire.MaxClasses {
		panic(fmt.Sprintf("worker: more than %d classes", wire.MaxClasses))
	}
	for _, o := range s.objsrv.classes {
		if o.name == spec.name {
			panic("worker: duplicate class " + spec.name)
		}
	}
	s.objsrv.classes = append(s.objsrv.classes, spec)
}

// ErrNotServing is returned by RevokeClasses outside Serve.
var ErrNotServing = errors.New("worker: not serving objects")

// RevokeClasses is the worker's own decision to shut down: from now on it
// answers every activation "server stopping", so the activator starts a fresh
// server and retries there, invisibly to its clients. The objects it has keep
// working until they are released; then the activator tells it to quit.
// Activations already on their way when it decides are answered "server
// stopping" too, which is what makes the decision race-free.
func (s *Server) RevokeClasses() error {
	o := s.objsrv.active.Load()
	if o == nil {
		return ErrNotServing
	}
	return o.revoke()
}
