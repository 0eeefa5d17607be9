package bulkhead

import (
	"io"

	"github.com/bulkhead-go/bulkhead/internal/wire"
)

// An object server sends frames nobody asked for: REGISTER, RESUME, REVOKE
// and EVENT. With leader/follower reads nobody reads while no call waits, so
// an object server's connection also has an idle watcher. The watcher reads
// only while the reader role is free and data is waiting, and gives the role
// up as soon as a caller waits: a caller still reads its own reply, the fast
// path, whenever it can.

// startWatch enables the watcher; call before any goroutine uses c.
func (c *conn) startWatch(onFrame func(wire.Header, []byte) error) {
	c.onFrame = onFrame
	c.watchWake = make(chan struct{}, 1)
}

// wakeWatcher tells the watcher the reader role may be free. Called with c.mu
// held.
func (c *conn) wakeWatcher() {
	select {
	case c.watchWake <- struct{}{}:
	default:
	}
}

// watch is the watcher's loop. It returns once the connection has failed.
func (c *conn) watch() {
	for {
		c.mu.Lock()
		for c.reading && c.broken == nil {
			c.mu.Unlock()
			<-c.watchWake
			c.mu.Lock()
		}
		if c.broken != nil {
			c.mu.Unlock()
			return
		}
		c.reading = true
		c.mu.Unlock()

		idle, ok := c.readAvailable()

		c.mu.Lock()
		c.reading = false
		for _, q := range c.pend {
			if !q.done {
				signal(q)
				break
			}
		}
		c.mu.Unlock()
		if !ok {
			return
		}
		if idle {
			// Nothing to read: wait for data without holding the role,
			// so that a caller can take it. Shutdown wakes this too.
			if _, err := c.fd.WaitReadable(-1); err != nil {
				c.fail(err)
				return
			}
		}
	}
}

// readAvailable reads the frames already waiting, without blocking between
// frames. It stops early when a caller waits for the reader role. idle is
// true when nothing was left to read; ok is false when the connection failed.
func (c *conn) readAvailable() (idle, ok bool) {
	for {
		c.mu.Lock()
		waiter := false
		for _, q := range c.pend {
			if !q.done {
				waiter = true
				break
			}
		}
		c.mu.Unlock()
		if waiter {
			return false, true
		}
		if !c.reader.Buffered() {
			readable, err := c.fd.WaitReadable(0)
			if err != nil {
				c.fail(err)
				return false, false
			}
			if !readable {
				return true, true
			}
		}
		h, payload, err := c.reader.Next()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			c.fail(err)
			return false, false
		}
		switch {
		case h.Type == wire.TypeReply || h.Type == wire.TypeError:
			// As in readUntil: the owner may be waiting as a follower.
			c.mu.Lock()
			if q := c.pend[h.ID]; q != nil {
				delete(c.pend, h.ID)
				q.typ = h.Type
				q.payload = append([]byte(nil), payload...)
				q.done = true
				signal(q)
			}
			c.mu.Unlock()
		case h.Type == wire.TypePing:
			c.sendControl(wire.TypePong, h.ID)
		case h.Type == wire.TypePong:
		case wire.IsObjectType(h.Type) && c.onFrame != nil:
			if err := c.onFrame(h, payload); err != nil {
				c.fail(err)
				return false, false
			}
		default:
			c.fail(&wire.FrameError{Header: h, Reason: "unexpected frame from worker"})
			return false, false
		}
	}
}

// sendActivate queues an ACTIVATE request and registers it, like send.
func (c *conn) sendActivate(class string, oid uint64, args []any) (*pending, error) {
	c.wmu.Lock()
	c.nextID++
	id := c.nextID
	if err := c.out.Activate(id, class, oid, args, c.maxFrame); err != nil {
		c.wmu.Unlock()
		return nil, err
	}
	return c.register(id), nil
}

// sendObjCall queues an OBJCALL request and registers it, like send.
func (c *conn) sendObjCall(oid uint64, method string, deadline int64, args []any) (*pending, error) {
	c.wmu.Lock()
	c.nextID++
	id := c.nextID
	if err := c.out.ObjCall(id, oid, method, deadline, args, c.maxFrame); err != nil {
		c.wmu.Unlock()
		return nil, err
	}
	return c.register(id), nil
}

// register records request id as pending and flushes. Called with wmu held;
// returns with it released.
func (c *conn) register(id uint64) *pending {
	p := pendingPool.Get().(*pending)
	p.id = id
	c.mu.Lock()
	if c.broken != nil {
		p.done, p.err = true, c.broken
	} else {
		c.pend[id] = p
	}
	c.mu.Unlock()
	c.flushLocked()
	return p
}
