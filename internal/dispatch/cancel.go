package dispatch

import (
	"context"
	"errors"
	"time"

	"golang.org/x/sys/unix"
)

// A call's ctx is watched by one context.AfterFunc from the moment its frame
// is queued (arm) until wait returns (disarm). What the callback may do
// depends on what the caller is doing, its role:
//
//   - a follower waits on its channel and selects on ctx itself: the
//     callback only marks the call fired;
//   - a reader blocked in read(2), or a writer blocked in write(2), can be
//     freed only by shutting the connection down (conn.abandon), which
//     costs the worker. A reader is spared that if the answer is already
//     waiting to be read.
//
// The callback marks fired before it looks at the role, and a caller marks
// its role before it looks at fired (setRole): whichever comes second sees
// the other, so a caller that takes the reader role just after its ctx
// ended does not block for ever. disarm waits for a callback that has
// started: it reads the start marker and shuts down the socket, which must
// stay mapped and open until it is done.
const (
	roleFollower int32 = iota
	roleReader
	roleWriter
)

// arm starts watching ctx for p; it does nothing if p is watched already or
// ctx can never end.
func (c *Conn) arm(p *Pending, ctx context.Context) {
	if p.ctx != nil {
		return
	}
	p.ctx = ctx
	if ctx.Done() == nil {
		return
	}
	id := p.id
	p.stop = context.AfterFunc(ctx, func() {
		defer func() { p.cbDone <- struct{}{} }()
		p.fired.Store(true)
		r := p.role.Load()
		if r == roleWriter && !c.writeBlocked() {
			// A write in progress with room to go on is most often about
			// to end: give it writeGrace, again and again while the socket
			// still has room (the writer is slow to be scheduled, not
			// stalled), up to maxWriteGrace, before the shutdown that
			// would free a stalled one.
			t := time.NewTimer(writeGrace)
			defer t.Stop()
			limit := time.Now().Add(maxWriteGrace)
		grace:
			for {
				select {
				case <-p.roleDone:
					r = p.role.Load()
					break grace
				case <-p.settle:
					return
				case <-t.C:
					if c.writeBlocked() || time.Now().After(limit) {
						break grace
					}
					t.Reset(writeGrace)
				}
			}
		}
		if r == roleFollower || !c.abandon(id, r, false, true) {
			return
		}
		// Spared by the start marker: the answer should be readable at
		// once. If it is not within markerGrace, the marker lied.
		t := time.NewTimer(markerGrace)
		defer t.Stop()
		select {
		case <-t.C:
			c.abandon(id, roleWriter, false, false)
		case <-p.settle:
		}
	})
}

// writeBlocked reports whether the worker's side has no room for more: a
// writer is then blocked until the worker reads.
func (c *Conn) writeBlocked() bool {
	if l := c.shm.Load(); l != nil {
		return l.out.Full()
	}
	fds := []unix.PollFd{{Fd: int32(c.fd), Events: unix.POLLOUT}}
	n, err := unix.Poll(fds, 0)
	return err == nil && n == 0
}

// writeGrace is how long a caller whose ctx ended may go on writing before
// the connection is shut down under it, once the worker's side is full: a
// bound on how far past its deadline a write to a worker that does not read
// can keep it. maxWriteGrace bounds a write that goes on with room to
// spare, slowly (a machine short of CPU): shutting it down would cost the
// worker and every call on it, for a write that was about to end (a
// cancel racing a pipelined call's write did, under load).
const (
	writeGrace    = 50 * time.Millisecond
	maxWriteGrace = time.Second
)

// markerGrace is how long an answer that the start marker says is in the
// socket may take to be read before the connection is shut down anyway.
const markerGrace = 100 * time.Millisecond

// disarm stops watching p's ctx, and waits for the callback if it started.
func (c *Conn) disarm(p *Pending) {
	if p.stop != nil && !p.stop() {
		select {
		case p.settle <- struct{}{}:
		default:
		}
		<-p.cbDone
	}
	p.stop = nil
}

// setRole records what p's caller is about to do, and acts on a ctx that
// ended before it did.
func (p *Pending) setRole(r int32, c *Conn) {
	p.role.Store(r)
	if p.fired.Load() {
		c.abandon(p.id, r, r == roleReader && c.reader.Buffered(), false)
	}
}

// setWriter is setRole(roleWriter) for a caller about to write n bytes. If
// its ctx ended before, a write that cannot block (a small one, into a
// socket with room) goes on: a shutdown would cost the worker and every
// call on it, to spare a caller a write that ends at once (a cancel that
// came just before a pipelined call's write did). A large write, or one
// into a full socket, is abandoned as setRole does.
func (p *Pending) setWriter(c *Conn, n int) {
	p.role.Store(roleWriter)
	if p.fired.Load() && (n > smallWrite || c.writeBlocked()) {
		c.abandon(p.id, roleWriter, false, false)
	}
}

// smallWrite is the most a writer whose ctx has ended writes anyway: a
// stream socket that polls writable has a quarter of its buffer used at
// most (Linux's unix_writable), and the buffers asked for are 4 MiB
// (socketBuffer), so it takes this without blocking.
const smallWrite = 64 << 10

// recheck is called by the reader after each frame that was not its own
// answer: if its ctx ended meanwhile and nothing more is buffered, it is
// time to shut down after all. A worker that keeps sending other frames
// (a flood of PINGs) gets maxRechecks frames of grace, no more. It reports
// whether the reader should stop: it shut the connection down, and what is
// still buffered (a flood) is not worth reading.
func (c *Conn) recheck(p *Pending) bool {
	if p == nil || !p.fired.Load() {
		return false
	}
	p.rechecks++
	if p.rechecks > maxRechecks {
		c.abandon(p.id, roleWriter, false, false) // a writer is never spared
	} else {
		c.abandon(p.id, roleReader, c.reader.Buffered(), false)
	}
	return c.abandonedBy.Load() == p.id
}

// errAbandoned breaks a connection that a call's ctx ending shut down.
var errAbandoned = errors.New("connection shut down by an abandoned call")

// maxRechecks bounds the frames a reader whose ctx ended reads, looking for
// its answer, before it shuts the connection down.
const maxRechecks = 64

// sleep waits as a follower for a wake-up; false if p's ctx ended.
func (p *Pending) sleep() bool {
	if p.ctx == nil || p.ctx.Done() == nil {
		<-p.wake
		return true
	}
	select {
	case <-p.wake:
		return true
	case <-p.ctx.Done():
		return false
	}
}
