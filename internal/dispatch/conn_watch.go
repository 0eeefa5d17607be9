package dispatch

import (
	"context"
	"time"

	"github.com/bulkhead-go/bulkhead/internal/wire"
)

// An object server sends frames nobody asked for: REGISTER, RESUME, REVOKE
// and EVENT. With leader/follower reads nobody reads while no call waits, so
// an object server's connection also has an idle watcher. The watcher reads
// only while the reader role is free and data is waiting, and gives the role
// up as soon as a caller waits: a caller still reads its own reply, the fast
// path, whenever it can.

// watchState is the idle watcher's state, guarded by conn.mu.
type watchState struct {
	backoff  time.Duration // how long callers are left to read before the watcher looks
	parked   bool          // waiting on watchWake for the reader role
	activity uint64        // reader roles released by callers
}

// startWatch enables the watcher; call before any goroutine uses c.
func (c *Conn) StartWatch(onFrame func(wire.Header, []byte) error, backoff time.Duration) {
	c.onFrame = onFrame
	c.watchWake = make(chan struct{}, 1)
	c.ws.backoff = backoff
}

// wakeWatcher wakes the watcher whatever it waits for. Called with c.mu held.
func (c *Conn) wakeWatcher() {
	select {
	case c.watchWake <- struct{}{}:
	default:
	}
}

// roleFreed is called, with c.mu held, when a caller lets the reader role go
// and nobody else waits for it. It wakes the watcher only if the watcher is
// parked waiting for the role: while calls keep coming the watcher is on its
// backoff timer instead, and callers pay nothing for it. Frames the caller
// read past its reply (an event another object emitted meanwhile) are in
// the reader's buffer, where a watcher blocked in poll(2) cannot see them:
// the caller handles them before it leaves, which costs nothing when there
// are none.
func (c *Conn) roleFreed() {
	c.ws.activity++
	if !c.ws.parked && c.reader.Buffered() && c.broken == nil {
		c.reading = true
		c.mu.Unlock()
		ok := true
		for ok && c.reader.Buffered() {
			ok = c.readOne()
		}
		c.mu.Lock()
		c.reading = false
		if q := c.oldestWaitingLocked(); q != nil {
			signal(q) // a caller came while the frames were handled
			return
		}
		// The watcher may have parked behind the drain: wake it below.
	}
	if c.ws.parked {
		c.ws.parked = false
		c.wakeWatcher()
	}
}

// kickWatcher wakes a parked watcher from outside the reader role, once the
// connection has been shut down: a caller that was handed the role may have
// given up (its ctx ended) without taking it, and the watcher must still see
// the end of the stream, fail the connection, and return.
func (c *Conn) KickWatcher() {
	if c.watchWake == nil {
		return
	}
	c.mu.Lock()
	if c.ws.parked {
		c.ws.parked = false
		c.wakeWatcher()
	}
	c.mu.Unlock()
}

// parkLocked waits, with c.mu held, until a caller frees the reader role or
// the connection fails.
func (c *Conn) parkLocked() {
	c.ws.parked = true
	c.mu.Unlock()
	<-c.watchWake
	c.mu.Lock()
	c.ws.parked = false
}

// watch is the watcher's loop. It returns once the connection has failed.
//
// While callers come and go, each reads every frame before its reply, so
// the watcher stays off the socket: blocking in poll(2) there would be woken
// by every reply, and waiting for the reader role would be woken by every
// caller. It looks again after a backoff instead. Only when a look finds
// that no caller came since the last one does it block in poll(2) until data
// comes; and only behind one long call does it wait for the role.
func (c *Conn) Watch() {
	var seen uint64
	c.mu.Lock()
	for {
		if c.broken != nil {
			c.mu.Unlock()
			return
		}
		if c.reading {
			if c.ws.activity == seen {
				c.parkLocked() // one long call: its caller wakes the watcher
			} else {
				c.backoffLocked(&seen)
			}
			continue
		}
		c.reading = true
		c.mu.Unlock()

		handed, ok := c.readAvailable()

		c.mu.Lock()
		c.reading = false
		if q := c.oldestWaitingLocked(); q != nil {
			signal(q)
		}
		switch {
		case !ok:
			c.mu.Unlock()
			return
		case handed || c.ws.activity != seen:
			c.backoffLocked(&seen)
			continue
		}
		c.mu.Unlock()
		// Quiet: wait for data. Shutdown wakes the poll too.
		if _, err := c.fd.WaitReadable(-1); err != nil {
			c.Fail(err)
			return
		}
		c.mu.Lock()
	}
}

// backoffLocked leaves the reading to callers for a while. Called and
// returns with c.mu held.
func (c *Conn) backoffLocked(seen *uint64) {
	*seen = c.ws.activity
	c.mu.Unlock()
	t := time.NewTimer(c.ws.backoff)
	select {
	case <-t.C:
	case <-c.watchWake: // the connection failed
		t.Stop()
	}
	c.mu.Lock()
}

// readAvailable reads the frames already waiting, without blocking between
// frames. It stops early, with handed true, when a caller waits for the
// reader role; ok is false when the connection failed.
func (c *Conn) readAvailable() (handed, ok bool) {
	for {
		c.mu.Lock()
		waiter := false
		for q := range c.pend.all {
			if !q.done {
				waiter = true
				break
			}
		}
		c.mu.Unlock()
		if waiter {
			return true, true
		}
		if !c.reader.Buffered() {
			readable, err := c.fd.WaitReadable(0)
			if err != nil {
				c.Fail(err)
				return false, false
			}
			if !readable {
				return false, true
			}
		}
		if !c.readOne() {
			return false, false
		}
	}
}

// readOne reads and handles one frame for the role holder (handleFrame, as
// readUntil does); false if the connection failed.
func (c *Conn) readOne() bool {
	h, payload, err := c.reader.Next()
	if err != nil {
		c.Fail(readError(err))
		return false
	}
	if _, _, err := c.handleFrame(h, payload, nil); err != nil {
		c.Fail(err)
		return false
	}
	return true
}

// sendActivate queues an ACTIVATE request and registers it, like send.
func (c *Conn) SendActivate(class string, oid uint64, args []any) (*Pending, error) {
	c.wmu.Lock()
	c.nextID++
	id := c.nextID
	c.sent.Store(id)
	if err := c.out.Activate(id, class, oid, args, c.maxFrame); err != nil {
		c.wmu.Unlock()
		return nil, err
	}
	return c.register(id, false, nil), nil
}

// SendObjCall queues an OBJCALL request and registers it, like send;
// with traceparent tp unless it is "" (the caller checked that the worker
// takes one: HELLO's trace).
func (c *Conn) SendObjCall(oid uint64, method string, deadline int64, args []any, tp string) (*Pending, error) {
	c.wmu.Lock()
	c.nextID++
	id := c.nextID
	c.sent.Store(id)
	err := c.out.ObjCall(id, oid, method, deadline, args, c.maxFrame)
	if err == nil && tp != "" {
		err = c.out.Trace(tp, c.maxFrame)
	}
	if err != nil {
		c.wmu.Unlock()
		return nil, err
	}
	return c.register(id, false, nil), nil
}

// register records request id as pending, has ctx watched (arm; a nil ctx
// is armed later, by wait) and flushes. Called with wmu held; returns with
// it released.
//
// A frame that references its caller's slices (refs, see send) is never
// held: it is written now, on this goroutine.
func (c *Conn) register(id uint64, refs bool, ctx context.Context) *Pending {
	p := pendingPool.Get().(*Pending)
	p.id = id
	c.mu.Lock()
	hold := false
	if c.broken != nil {
		p.done, p.err = true, c.broken
	} else {
		c.pend.put(p)
		// With more calls ahead of it on the worker than the worker runs at
		// once, plus one (Config.Pipeline), this one cannot be needed before
		// the next answer comes back: leave it for the reader to write, with
		// the others queued by then, as soon as that answer arrives
		// (readUntil). One write then carries many calls. The oldest of
		// those ahead is reading, or will be; they were written, since the
		// first call held had none held ahead of it. An object server's
		// watcher does not read through readUntil.
		hold = !refs && c.holdAfter > 0 && c.watchWake == nil && c.pend.len() > c.holdAfter
	}
	c.mu.Unlock()
	if ctx != nil {
		c.arm(p, ctx)
	}
	if hold {
		c.held.Store(true)
		c.wmu.Unlock()
		return p
	}
	c.flushLocked(p)
	return p
}

// flushHeld writes the calls register held back.
func (c *Conn) flushHeld(as *Pending) {
	c.wmu.Lock()
	c.held.Store(false)
	c.flushLocked(as)
}
