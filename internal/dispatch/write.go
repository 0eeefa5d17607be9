package dispatch

import (
	"context"
	"errors"
	"io"

	"github.com/bulkhead-go/bulkhead/internal/fdio"
	"github.com/bulkhead-go/bulkhead/internal/wire"
	"golang.org/x/sys/unix"
)

// The write side of a connection: numbering and queueing frames, the writer
// role, and writes that never block a caller that only cancels.

// send numbers and queues the CALL frame that f holds, registers it and
// has ctx watched (arm). f was encoded by the caller with no lock held, so
// that a panicking MarshalCBOR leaves nothing behind.
//
// Large byte-string arguments (wire.MinRef and up) go to the kernel straight
// from the caller's slices, by one writev, instead of being copied into the
// buffer. Such a caller first waits for the writer role and then writes its
// frame itself (flushLocked, on this goroutine), so that no other goroutine
// ever holds its slices: when send returns, successfully or not (the
// connection broke, or a cancellation shut it down), no write can still be
// reading them. If ctx ends while it waits for the role, nothing is sent
// and send returns errNotSent.
func (c *Conn) Send(ctx context.Context, f *wire.Builder) (*Pending, error) {
	vec := f.HasRefs()
	c.wmu.Lock()
	if vec && c.writing {
		if !c.awaitRoleLocked(ctx) {
			c.wmu.Unlock()
			return nil, errNotSent
		}
	}
	// The id is taken with the role: frames leave in id order.
	c.nextID++
	id := c.nextID
	c.sent.Store(id)
	c.out.AppendFrame(f, id)
	return c.register(id, vec, ctx), nil
}

// errNotSent is send's answer when the caller's ctx ended before its frame
// was queued: the worker never saw it.
var errNotSent = errors.New("bulkhead: ctx ended before the call was sent")

// awaitRoleLocked waits, with wmu held, until no writer is at work, or ctx
// ends (false). A callback wakes the waiters when ctx ends; it is waited for
// before this returns, since it takes wmu.
func (c *Conn) awaitRoleLocked(ctx context.Context) bool {
	var cb chan struct{}
	var stop func() bool
	if ctx.Done() != nil {
		cb = make(chan struct{})
		stop = context.AfterFunc(ctx, func() {
			defer close(cb)
			c.wmu.Lock()
			c.roleFree.Broadcast()
			c.wmu.Unlock()
		})
	}
	for c.writing && ctx.Err() == nil {
		c.vecWaiting++
		c.roleFree.Wait()
		c.vecWaiting--
	}
	if stop != nil && !stop() {
		c.wmu.Unlock()
		<-cb
		c.wmu.Lock()
	}
	if ctx.Err() != nil {
		if !c.writing && c.vecWaiting > 0 {
			c.roleFree.Signal() // pass on a wake-up this waiter may have taken
		}
		return false
	}
	return !c.writing || c.awaitRoleLocked(ctx)
}

// sendControl queues a frame without a reply (QUIT, CANCEL, PONG). It never
// blocks on the worker: with no writer at work, it writes what the socket
// takes now and leaves the rest queued, held for the next writer (the
// reader writes held frames before it blocks). A worker that stops reading
// cannot stall a caller that only cancels, or a reader answering PINGs.
func (c *Conn) SendControl(t wire.Type, id uint64) {
	c.wmu.Lock()
	if t == wire.TypePong && c.out.Len() > maxQueuedPong {
		// A worker that sends PINGs and does not read the PONGs would
		// have them pile up here: they only say we are alive.
		c.wmu.Unlock()
		return
	}
	c.out.Empty(t, id)
	if c.writing {
		c.wmu.Unlock()
		return
	}
	n, err := tryWrite(c.wr, c.out.Bytes())
	if err != nil {
		c.out.Reset()
		c.wmu.Unlock()
		c.Shutdown() // as in flushLocked
		return
	}
	c.out.Discard(n)
	if c.out.Len() > 0 {
		c.held.Store(true)
	}
	c.wmu.Unlock()
}

// maxQueuedPong is how many bytes may wait to be written before a PONG is
// dropped rather than queued.
const maxQueuedPong = 64 << 10

// tryWrite writes what w takes of b without blocking: a socket with
// MSG_DONTWAIT, a shared-memory pipe by its TryWrite. A full socket is not
// an error: it returns 0.
func tryWrite(w io.Writer, b []byte) (int, error) {
	switch w := w.(type) {
	case fdio.FD:
		n, err := unix.SendmsgN(int(w), b, nil, nil, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL)
		if err == unix.EAGAIN || err == unix.EINTR {
			return 0, nil
		}
		return n, err
	case interface{ TryWrite([]byte) (int, error) }:
		return w.TryWrite(b)
	}
	return w.Write(b)
}

// flushLocked writes queued frames unless another caller is already doing
// so. It is called with wmu held and returns with it released. as, if not
// nil, is the call of the goroutine that writes: while it writes, its ctx
// ending shuts the connection down (cancel.go), the only way to free a
// write that the worker does not read.
func (c *Conn) flushLocked(as *Pending) {
	if c.writing {
		c.wmu.Unlock()
		return
	}
	c.writing = true
	var prev int32
	if as != nil {
		prev = as.role.Load()
		as.setWriter(c, c.out.Len())
	}
	for c.out.Len() > 0 {
		buf := c.out
		c.out, c.spare = c.spare, nil
		c.wmu.Unlock()
		err := buf.Flush(c.wr, &c.segs)
		c.wmu.Lock()
		c.spare = buf
		if err != nil {
			// The worker stopped reading: it died or closed its socket.
			// Answers to earlier calls may still wait in the socket, so
			// do not fail the connection here: shut it down, and the
			// reader delivers what was queued, then meets the end of the
			// stream. Calls whose frames are dropped here never reached
			// the worker; they fail then, and the start marker sends them
			// elsewhere.
			c.out.Reset()
			c.Shutdown()
			break
		}
	}
	c.writing = false
	if as != nil {
		as.role.Store(prev)
		if as.fired.Load() {
			select {
			case as.roleDone <- struct{}{}:
			default:
			}
		}
	}
	if c.vecWaiting > 0 {
		c.roleFree.Signal()
	}
	c.wmu.Unlock()
}

// Stacks delivers the worker's STACK frames (PROTOCOL.md section 3), read by
// whichever caller reads the connection. One dump waits there at most; a
// worker's further dumps are dropped until it is taken. To ask for a fresh
// one, drain the channel first, then signal the worker.
func (c *Conn) Stacks() <-chan string { return c.stacks }
