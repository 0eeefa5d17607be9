// Serving objects: the object connection, its reader, the threading models
// that run calls, activation, release and quitting.

package worker

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bulkhead-go/bulkhead/internal/wire"
)

// objConn serves objects on one connection.
type objConn struct {
	c        *conn
	classes  map[string]*classSpec
	stopping atomic.Bool // revoked or suspended: activations are refused
	accepted int         // activations accepted; reader only

	mu      sync.Mutex
	objects map[uint64]*liveObject

	inline  bool           // every class is Single: the reader runs calls itself
	sta     chan func()    // the Single thread's queue, when not inline
	staDone chan struct{}  // closed when the Single thread exits
	sem     chan struct{}  // Free and Apartment calls running
	wg      sync.WaitGroup // goroutines running tasks
	apts    sync.WaitGroup // apartment threads
	done    chan struct{}  // closed when serving ends: idle apartment threads exit

	readerDone chan error // the read loop's end, whichever goroutine runs it
}

// liveObject is an object and, for Apartment, its call queue and its
// thread.
type liveObject struct {
	self  Object
	spec  *classSpec
	state any // set by the constructor; read by calls that follow it

	qmu     sync.Mutex
	queue   []func()
	running bool
	wake    chan struct{} // Apartment: the thread has work (capacity 1)
	ended   bool          // Apartment: the thread's last task ran; the thread only
}

// current returns the state its constructor made. A Free object's calls run
// on other goroutines than its constructor: the lock orders them.
func (obj *liveObject) current() any {
	obj.qmu.Lock()
	defer obj.qmu.Unlock()
	return obj.state
}

func (o *objConn) revoke() error {
	if !o.stopping.CompareAndSwap(false, true) {
		return nil
	}
	c := o.c
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.outb.Empty(wire.TypeRevoke, 0)
	return c.flush()
}

// checkObject enforces, for a class server, the rules of PROTOCOL.md section
// 10 that the frame header alone cannot: ACTIVATE and OBJCALL ids continue
// the CALL sequence; RELEASE and SUSPEND carry no payload.
func (c *conn) checkObject(h wire.Header, p []byte) error {
	if len(c.s.objsrv.classes) == 0 {
		return fmt.Errorf("%w: %v frame to a worker that serves no class", wire.ErrProtocol, h.Type)
	}
	switch h.Type {
	case wire.TypeActivate, wire.TypeObjCall:
		if h.ID == 0 || h.ID <= c.lastID {
			return fmt.Errorf("%w: %v id %d after %d", wire.ErrProtocol, h.Type, h.ID, c.lastID)
		}
		c.lastID = h.ID
	case wire.TypeRelease, wire.TypeSuspend:
		if len(p) != 0 {
			return fmt.Errorf("%w: %v frame with a payload", wire.ErrProtocol, h.Type)
		}
	default:
		return fmt.Errorf("%w: unexpected %v frame from the dispatcher", wire.ErrProtocol, h.Type)
	}
	return nil
}

// serveObjects registers the classes, resumes them, and serves objects,
// object calls and stateless calls until QUIT or end of stream.
func (c *conn) serveObjects(ctx context.Context) error {
	s := c.s
	o := &objConn{
		c:       c,
		classes: make(map[string]*classSpec),
		objects: make(map[uint64]*liveObject),
		sem:     make(chan struct{}, orDefault(s.Objects.MaxCalls, 1024)),
		inline:  s.Concurrency <= 1,
		done:    make(chan struct{}),
	}
	// Idle apartment threads end with the connection, whatever ended it.
	defer close(o.done)
	for _, cl := range s.objsrv.classes {
		o.classes[cl.name] = cl
		if cl.threading != Single {
			o.inline = false
		}
	}
	s.objsrv.active.Store(o)
	defer s.objsrv.active.Store(nil)

	c.wmu.Lock()
	for _, cl := range s.objsrv.classes {
		methods := make([]string, 0, len(cl.methods))
		for m := range cl.methods {
			methods = append(methods, m)
		}
		slices.Sort(methods)
		reg := wire.Register{Class: cl.name, Threading: uint64(cl.threading), Methods: methods}
		if err := c.outb.Value(wire.TypeRegister, 0, reg, c.env.maxFrame); err != nil {
			c.wmu.Unlock()
			return fmt.Errorf("worker: registering class %s: %w", cl.name, err)
		}
	}
	c.outb.Empty(wire.TypeResume, 0)
	err := c.flush()
	c.wmu.Unlock()
	if err != nil {
		return fmt.Errorf("worker: resuming classes: %w", err)
	}

	if o.inline {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
	} else {
		o.sta = make(chan func(), 1024)
		o.staDone = make(chan struct{})
		go o.singleThread()
	}
	if o.inline {
		_, err = o.read(ctx)
	} else {
		o.readerDone = make(chan error, 1)
		go o.readLoop(ctx)
		err = <-o.readerDone
	}
	if err == nil && !c.panicked() {
		o.quit()
	}
	if o.sta != nil {
		close(o.sta)
		<-o.staDone
	}
	if err == nil && c.panic != nil {
		return c.panic
	}
	return err
}

func orDefault(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

// singleThread runs Single tasks on one locked OS thread.
func (o *objConn) singleThread() {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer close(o.staDone)
	for task := range o.sta {
		task()
	}
}

// readLoop runs the read loop on a goroutine of its own; whichever
// goroutine is reading when the loop ends reports it.
func (o *objConn) readLoop(ctx context.Context) {
	if ended, err := o.read(ctx); ended {
		o.readerDone <- err
	}
}

// read is the frame loop. It returns ended and an error (nil on QUIT or end
// of stream), or, without ended, after this goroutine handed the reading to
// another one and ran a task itself: leader/follower, so that a call that
// can start at once starts on the goroutine that read it, with no wait for a
// goroutine to be scheduled.
func (o *objConn) read(ctx context.Context) (ended bool, err error) {
	c := o.c
	for !c.quit.Load() {
		h, p, ok, err := c.next(ctx, 0)
		if !ok {
			if err != nil && c.quit.Load() {
				return true, nil // woken by a handler panic
			}
			return true, err
		}
		var now func()
		switch h.Type {
		case wire.TypeCall:
			if late(p) {
				// Skipped, unmarked, as a plain worker does (PROTOCOL.md
				// section 3): its caller has given up, and it had no effect.
				o.reply(h.ID, nil, skippedError())
				continue
			}
			c.started.Store(h.ID)
			now = o.call(ctx, h.ID, slices.Clone(p))
		case wire.TypeActivate:
			c.started.Store(h.ID)
			now = o.activate(ctx, h.ID, p)
		case wire.TypeObjCall:
			c.started.Store(h.ID)
			now = o.objCall(ctx, h.ID, p)
		case wire.TypeRelease:
			o.release(h.ID)
		case wire.TypeSuspend:
			o.stopping.Store(true)
		case wire.TypeQuit:
			return true, nil
		case wire.TypePing:
			c.wmu.Lock()
			c.outb.Empty(wire.TypePong, h.ID)
			err := c.flush()
			c.wmu.Unlock()
			if err != nil {
				return true, err
			}
		case wire.TypeCancel, wire.TypePong:
			// CANCEL is best effort (PROTOCOL.md); object calls ignore it.
		default:
			return true, fmt.Errorf("worker: unexpected %v frame from dispatcher", h.Type)
		}
		if now != nil {
			// Tasks own decoded copies: the next reader may reuse p.
			o.wg.Add(1)
			go o.readLoop(ctx)
			now()
			o.wg.Done()
			return false, nil
		}
	}
	return true, nil
}

// reply sends a call's result; after a handler panic it stops the worker
// unless ContinueAfterPanic is set.
func (o *objConn) reply(id uint64, res any, err error) {
	c := o.c
	c.wmu.Lock()
	c.encodeResult(id, "", res, err)
	werr := c.flush()
	c.wmu.Unlock()
	if werr != nil || (c.panicked() && !c.s.ContinueAfterPanic) {
		c.quit.Store(true)
		if !o.inline {
			c.wakeReader()
		}
	}
}

// invoke runs fn, turning a panic into a CodePanic error as Handle does.
func (o *objConn) invoke(ctx context.Context, name string, id uint64, deadline int64, fn func(context.Context) (any, error)) (res any, err error) {
	c := o.c
	if c.s.BeforeCall != nil {
		c.s.BeforeCall(name, id)
	}
	if deadline > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, time.Unix(0, deadline))
		defer cancel()
	}
	defer func() {
		if v := recover(); v != nil {
			pe := &PanicError{Method: name, Value: v, Stack: string(debug.Stack())}
			c.panicMu.Lock()
			if c.panic == nil {
				c.panic = pe
			}
			c.panicMu.Unlock()
			res, err = nil, &Error{Code: wire.CodePanic, Message: fmt.Sprint("panic: ", v),
				Details: map[string]any{"stack": pe.Stack}}
		}
	}()
	return fn(ctx)
}

// run schedules task by threading model. obj is the object for Apartment.
// It returns what must run now on a goroutine of its own (the reader hands
// off and runs it, see read), or nil when the task was run, queued, or sent
// to the Single thread.
func (o *objConn) run(t Threading, obj *liveObject, task func()) func() {
	switch {
	case t == Single && o.inline:
		task()
		return nil
	case t == Single:
		o.sta <- task
		return nil
	case t == Apartment && obj != nil:
		obj.qmu.Lock()
		obj.queue = append(obj.queue, task)
		if obj.running {
			obj.qmu.Unlock()
			return nil
		}
		obj.running = true
		obj.qmu.Unlock()
		o.sem <- struct{}{}
		obj.wake <- struct{}{}
		return nil
	default:
		o.sem <- struct{}{}
		return func() {
			task()
			<-o.sem
		}
	}
}

// spawn runs a task that must start now on a new goroutine, for callers
// that are not the reader.
func (o *objConn) spawn(now func()) {
	if now == nil {
		return
	}
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		now()
	}()
}

// startApartment gives an Apartment object its thread: a goroutine locked
// to an OS thread that runs the object's constructor, calls and Destroy, in
// arrival order, for the object's whole life (COM's single-threaded
// apartment). A C library that keeps per-thread state (thread-locals, a
// current context) sees one thread per object. The goroutine never unlocks:
// when the object ends, so does its thread, with its thread-locals.
func (o *objConn) startApartment(obj *liveObject) {
	obj.wake = make(chan struct{}, 1)
	o.apts.Add(1)
	go func() {
		defer o.apts.Done()
		runtime.LockOSThread()
		for {
			select {
			case <-obj.wake:
			case <-o.done:
				return
			}
			if o.drain(obj) {
				return
			}
		}
	}()
}

// endApartment queues the last task of an Apartment object's thread.
func (o *objConn) endApartment(obj *liveObject) {
	o.run(Apartment, obj, func() { obj.ended = true })
}

// drain runs an Apartment object's queued calls in order on its thread,
// then lets the object go idle. It reports whether the thread's last task
// ran.
func (o *objConn) drain(obj *liveObject) (ended bool) {
	for {
		obj.qmu.Lock()
		if len(obj.queue) == 0 {
			obj.running = false
			obj.qmu.Unlock()
			<-o.sem
			return obj.ended
		}
		task := obj.queue[0]
		obj.queue[0] = nil
		obj.queue = obj.queue[1:]
		obj.qmu.Unlock()
		task()
	}
}

// call serves a stateless CALL: on the Single thread when the Server's
// Concurrency is 1, concurrently otherwise.
func (o *objConn) call(ctx context.Context, id uint64, p []byte) func() {
	t := Single
	if o.c.s.Concurrency > 1 {
		t = Free
	}
	return o.run(t, nil, func() {
		var call wire.Call
		res, err := o.c.runMarked(ctx, id, p, &call)
		o.reply(id, res, err)
	})
}

func (o *objConn) activate(ctx context.Context, id uint64, p []byte) func() {
	var a wire.Activate
	if err := wire.DecodeActivate(p, &a); err != nil {
		o.reply(id, nil, &Error{Code: wire.CodeBadArguments, Message: err.Error()})
		return nil
	}
	if o.stopping.Load() {
		// Activations that cross the shutdown decision on the wire are
		// refused here; the activator retries on a fresh server.
		o.reply(id, nil, &Error{Code: wire.CodeServerStopping, Message: "server stopping"})
		return nil
	}
	spec := o.classes[a.Class]
	if spec == nil {
		o.reply(id, nil, &Error{Code: wire.CodeUnknownClass, Message: fmt.Sprintf("class %q is not registered", a.Class)})
		return nil
	}
	obj := &liveObject{self: Object{id: a.Object, class: a.Class, c: o.c}, spec: spec}
	o.mu.Lock()
	if _, dup := o.objects[a.Object]; dup {
		o.mu.Unlock()
		o.reply(id, nil, &Error{Code: wire.CodeBadArguments, Message: fmt.Sprintf("object %d exists", a.Object)})
		return nil
	}
	o.objects[a.Object] = obj
	o.mu.Unlock()
	if spec.threading == Apartment {
		o.startApartment(obj)
	}
	o.accepted++
	if m := o.c.s.Objects.MaxActivations; m > 0 && o.accepted >= m {
		_ = o.revoke()
	}
	args := Args{raw: slices.Clone(a.Args)}
	return o.run(spec.threading, obj, func() {
		state, err := o.invoke(ctx, spec.name, id, 0, func(ctx context.Context) (any, error) {
			return spec.newFn(ctx, &obj.self, args)
		})
		if err != nil {
			o.mu.Lock()
			delete(o.objects, a.Object)
			o.mu.Unlock()
			o.reply(id, nil, err)
			if obj.wake != nil {
				obj.ended = true // on the apartment's own thread: it ends
			}
			return
		}
		obj.qmu.Lock()
		obj.state = state
		obj.qmu.Unlock()
		o.reply(id, nil, nil)
	})
}

func (o *objConn) objCall(ctx context.Context, id uint64, p []byte) func() {
	var oc wire.ObjCall
	if err := wire.DecodeObjCall(p, &oc); err != nil {
		o.reply(id, nil, &Error{Code: wire.CodeBadArguments, Message: err.Error()})
		return nil
	}
	o.mu.Lock()
	obj := o.objects[oc.Object]
	o.mu.Unlock()
	if obj == nil {
		o.reply(id, nil, &Error{Code: wire.CodeUnknownObject, Message: fmt.Sprintf("no object %d", oc.Object)})
		return nil
	}
	fn := obj.spec.methods[oc.Method]
	if fn == nil {
		o.reply(id, nil, &Error{Code: wire.CodeUnknownMethod,
			Message: fmt.Sprintf("class %s has no method %q", obj.spec.name, oc.Method)})
		return nil
	}
	method, deadline, args := oc.Method, oc.Deadline, Args{raw: slices.Clone(oc.Args)}
	if oc.Traceparent != "" {
		ctx = context.WithValue(ctx, traceparentKey{}, oc.Traceparent)
	}
	return o.run(obj.spec.threading, obj, func() {
		res, err := o.invoke(ctx, method, id, deadline, func(ctx context.Context) (any, error) {
			return fn(ctx, obj.current(), args)
		})
		o.reply(id, res, err)
	})
}

// release forgets an object and runs its Destroy after its queued calls.
func (o *objConn) release(oid uint64) {
	o.mu.Lock()
	obj := o.objects[oid]
	delete(o.objects, oid)
	o.mu.Unlock()
	if obj != nil {
		o.destroy(obj)
	}
}

func (o *objConn) destroy(obj *liveObject) {
	if obj.spec.destroy != nil {
		o.spawn(o.run(obj.spec.threading, obj, func() {
			if st := obj.current(); st != nil {
				obj.spec.destroy(st)
			}
		}))
	}
	if obj.wake != nil {
		o.endApartment(obj)
	}
}

// quit finishes the calls in flight, then destroys the objects still alive.
func (o *objConn) quit() {
	o.wg.Wait()
	o.mu.Lock()
	left := make([]*liveObject, 0, len(o.objects))
	for id, obj := range o.objects {
		left = append(left, obj)
		delete(o.objects, id)
	}
	o.mu.Unlock()
	for _, obj := range left {
		o.destroy(obj)
	}
	o.wg.Wait()
	o.apts.Wait()
}

// late reports whether a CALL's deadline has passed: a CALL that does not
// decode is not late (its handler answers bad_arguments, marked).
func late(p []byte) bool {
	var call wire.Call
	return wire.DecodeCall(p, &call) == nil && call.Deadline > 0 && time.Now().UnixNano() >= call.Deadline
}
