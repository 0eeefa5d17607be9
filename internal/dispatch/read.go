package dispatch

import (
	"errors"
	"fmt"
	"io"

	"github.com/bulkhead-go/bulkhead/internal/shmpipe"
	"github.com/bulkhead-go/bulkhead/internal/wire"
)

// The read side of a connection: the reader role and its hand-off, the
// drain goroutine, and delivering each answer to the call it is for.

// handOffLocked gives the free reader role to the oldest waiting call, or,
// on an object server, to its watcher.
func (c *Conn) handOffLocked() {
	next := c.oldestWaitingLocked()
	switch {
	case next != nil && c.follow:
		c.startDrainLocked()
	case next != nil:
		signal(next)
	case len(c.orphans) > 0:
		// Nobody waits, but calls left queued will still be answered, and
		// CanceledError.Wait waits for that: read on their behalf.
		c.startDrainLocked()
	case c.watchWake != nil:
		c.roleFreed()
	}
}

// oldestWaitingLocked returns the oldest call still waiting for its answer,
// or nil: the only one that takes the reader role when woken (wait), so the
// one to wake when the role is free.
func (c *Conn) oldestWaitingLocked() *Pending {
	var next *Pending
	for q := range c.pend.all {
		if !q.done && (next == nil || q.id < next.id) {
			next = q
		}
	}
	return next
}

// startDrainLocked gives the reader role to a new drain goroutine.
func (c *Conn) startDrainLocked() {
	c.reading = true
	c.drainers.Add(1)
	go c.drain()
}

// drain reads for the calls left queued (abandonQueued) while no caller
// is waiting, and for every caller with follow. It stops once they are
// answered, or (without follow) a caller waits and can read for itself, or
// the connection fails; close waits for it.
func (c *Conn) drain() {
	defer c.drainers.Done()
	c.readUntil(nil)
	c.mu.Lock()
	c.reading = false
	c.handOffLocked()
	c.mu.Unlock()
}

func signal(p *Pending) {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// readUntil reads and delivers frames until p is done or the connection
// fails. With p nil (drain) it reads until no call left queued awaits its
// answer, or a caller waits.
func (c *Conn) readUntil(p *Pending) {
	for {
		if c.held.Load() && !c.reader.Buffered() {
			// About to block: write the calls held back first (register).
			c.flushHeld(p)
		}
		h, payload, err := c.reader.Next()
		if err != nil {
			c.Fail(readError(err))
			return
		}
		q, drained, err := c.handleFrame(h, payload, p)
		if err != nil {
			c.Fail(err)
			return
		}
		if (q == p && p != nil) || drained {
			return
		}
		// A frame not for this reader, a reply nobody waits for among
		// them, belongs to an abandoned call.
		if c.recheck(p) {
			c.Fail(errAbandoned)
			return
		}
	}
}

// handleFrame handles one frame read by whoever has the reader role: a
// caller (readUntil, self is its call, or nil for drain) or the idle
// watcher (readOne, self nil). An answer goes to its call (deliverLocked),
// PING gets PONG, an object-model frame goes to onFrame. It returns the
// waiting call an answer was for, whether a reader without a call of its
// own (drain) has nothing left to read for, and the error that fails the
// connection.
func (c *Conn) handleFrame(h wire.Header, payload []byte, self *Pending) (q *Pending, drained bool, err error) {
	switch {
	case h.Type == wire.TypeReply || h.Type == wire.TypeError:
		if h.Type == wire.TypeError && !c.panicked.Load() {
			// Before the answer is delivered, so that whoever reads the
			// end of the stream next knows (Panicked). Rare: ERROR only.
			if b, err := wire.DecodeError(payload); err == nil && b.Code == wire.CodePanic {
				c.panicked.Store(true)
			}
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		q, err = c.deliverLocked(h, payload, self)
		drained = self == nil && (len(c.orphans) == 0 && c.pend.len() == 0 || c.pend.len() > 0 && !c.follow)
		return q, drained, err
	case h.Type == wire.TypePing || h.Type == wire.TypePong:
		if len(payload) != 0 {
			return nil, false, &wire.FrameError{Header: h, Reason: "control frame with a payload"}
		}
		if h.Type == wire.TypePing && !c.down.Load() {
			c.SendControl(wire.TypePong, h.ID)
		}
	case h.Type == wire.TypeUsage:
		return nil, false, c.usageOf(h, payload)
	case h.Type == wire.TypeStack:
		if h.ID != 0 {
			return nil, false, &wire.FrameError{Header: h, Reason: "STACK with an id (it takes 0)"}
		}
		dump, err := wire.DecodeStack(payload)
		if err != nil {
			return nil, false, err
		}
		select {
		case c.stacks <- dump: // for whoever asked (Stacks)
		default: // nobody took the last one: this one is not wanted
		}
	case wire.IsObjectType(h.Type) && c.onFrame != nil:
		if err := c.onFrame(h, payload); err != nil {
			return nil, false, err
		}
	default:
		return nil, false, &wire.FrameError{Header: h, Reason: "unexpected frame from worker"}
	}
	return nil, false, nil
}

// deliverLocked hands an answer (REPLY or ERROR) to the call it is for,
// with c.mu held: to its waiting caller (signalled unless it is self, the
// reader), or to the call's Orphan function, or nowhere for a call whose
// caller left it. It returns the waiting call, if any. An answer to id 0, to
// an id never sent, or to a call answered already, is a protocol violation.
func (c *Conn) deliverLocked(h wire.Header, payload []byte, self *Pending) (*Pending, error) {
	if h.ID == 0 || h.ID > c.sent.Load() {
		return nil, &wire.FrameError{Header: h, Reason: "answer to a request never sent"}
	}
	q, o := c.pend.get(h.ID), c.orphans[h.ID]
	_, left := c.gone[h.ID]
	switch {
	case q != nil:
		c.pend.del(h.ID)
		q.typ = h.Type
		if c.reader.Owned() {
			q.payload = payload // a large frame: already its own allocation
			q.large = c.bufs != nil
		} else if s := c.smallCopy(payload); s != nil {
			q.small, q.payload = s, s.B
		} else {
			q.payload = append([]byte(nil), payload...)
		}
		q.done = true
		if q != self {
			// Under the lock: once q's owner sees done it may
			// recycle q, and must not be signalled after that.
			signal(q)
		}
	case o != nil:
		delete(c.orphans, h.ID)
		o(h.Type, payload, nil)
	case left:
		delete(c.gone, h.ID)
	default:
		return nil, &wire.FrameError{Header: h, Reason: "a second answer to one request"}
	}
	c.lastAnswered = max(c.lastAnswered, h.ID)
	return q, nil
}

// readError describes a failed read: the end of the stream is unexpected
// (a worker does not hang up), and a lying ring is a protocol violation.
func readError(err error) error {
	switch {
	case err == io.EOF:
		return io.ErrUnexpectedEOF
	case errors.Is(err, shmpipe.ErrCorrupt):
		return fmt.Errorf("%w: shared-memory ring: %w", wire.ErrProtocol, err)
	}
	return err
}

// usageOf gives a call the USAGE its worker sent before the answer. One for
// a call never sent is a protocol violation; one for a call no longer
// waited for is dropped, as its answer will be.
func (c *Conn) usageOf(h wire.Header, payload []byte) error {
	u, err := wire.DecodeUsage(payload)
	if err != nil {
		return err
	}
	if h.ID == 0 || h.ID > c.sent.Load() {
		return &wire.FrameError{Header: h, Reason: "USAGE for a request never sent"}
	}
	c.mu.Lock()
	if q := c.pend.get(h.ID); q != nil {
		q.usage, q.hasUse = u, true
	}
	c.mu.Unlock()
	return nil
}

// smallCopy copies a small answer into a recycled buffer, or returns nil.
func (c *Conn) smallCopy(payload []byte) *Small {
	if c.bufs == nil || len(payload) > SmallMax {
		return nil
	}
	return c.bufs.getSmall(payload)
}
