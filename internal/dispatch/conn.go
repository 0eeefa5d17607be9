package dispatch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"

	"github.com/bulkhead-go/bulkhead/internal/fdio"
	"github.com/bulkhead-go/bulkhead/internal/shmpipe"
	"github.com/bulkhead-go/bulkhead/internal/wire"
	"golang.org/x/sys/unix"
)

// conn is the dispatcher's end of one worker's socket.
//
// Writes are combined: a caller appends its frame to the outgoing buffer and,
// if nobody is writing, becomes the writer and flushes everything queued,
// swapping buffers so that no lock is held across write(2). Calls queued
// while a write is in progress go out together in the next one.
//
// Reads follow the leader/follower pattern: there is no reader goroutine. A
// waiting caller that finds nobody reading becomes the reader, delivers every
// frame it reads to its owner, and hands the role on when its own reply has
// come. With one call in flight, the caller simply reads its own reply with a
// blocking read(2): two system calls per round trip and no goroutine switch.
type Conn struct {
	fd   fdio.FD                 // the socket: the handshake, and waking blocked callers
	rd   io.Reader               // where frames come from: the socket or a shared-memory pipe
	wr   io.Writer               // where frames go
	shm  atomic.Pointer[shmLink] // nil unless the shared-memory transport is in use
	down atomic.Bool             // shutdown has been called
	// abandonedBy is the id of the call whose ctx ending shut the
	// connection down (abandon), or 0.
	abandonedBy atomic.Uint64
	maxFrame    uint32
	bufs        *Buffers // recycled large reply buffers, or nil (recycle)
	// serialStarted is the start marker of a worker that runs one call
	// at a time, or nil (abandon).
	serialStarted *atomic.Uint64

	wmu     sync.Mutex
	out     *wire.Builder // frames waiting to be written
	spare   *wire.Builder
	writing bool
	nextID  uint64
	sent    atomic.Uint64 // nextID, for the reader: no answer may name a later id
	held    atomic.Bool   // out holds calls for the reader to write (register)
	// holdAfter is how many calls may be pending before register holds
	// the next one back: the worker's concurrency plus one, with
	// Config.Pipeline; 0, never.
	holdAfter int
	// A call with large arguments, which it writes itself (send), waits
	// on roleFree for the writer role; vecWaiting counts such calls.
	roleFree   sync.Cond
	vecWaiting int
	segs       [][]byte // the writer's scratch for a frame with references

	mu       sync.Mutex
	pend     map[uint64]*Pending
	orphans  map[uint64]Orphan   // calls whose callers left them queued (abandonQueued)
	gone     map[uint64]struct{} // calls whose callers left unanswered (release): their answers are dropped
	drainers sync.WaitGroup      // drain, reading for orphans while no caller does
	reading  bool
	broken   error // set once; every later call fails with it
	// follow has callers wait as followers only, while a goroutine of the
	// connection's reads for them (drain): a caller whose ctx ends then
	// returns at once, without shutting the socket down
	// (Config.CancelGrace). Set before the connection is in use.
	follow bool
	// lastAnswered is the highest id answered: a worker whose start
	// marker is beyond it died running a call.
	lastAnswered uint64
	reader       *wire.Reader

	// Object servers only (conn_watch.go): onFrame takes the object-model
	// frames (types 16-31) from whichever goroutine is reading; the idle
	// watcher's state is guarded by mu.
	onFrame   func(h wire.Header, payload []byte) error
	watchWake chan struct{}
	ws        watchState

	closeOnce sync.Once
}

// pending is one call awaiting its reply. Pooled.
type Pending struct {
	id      uint64
	wake    chan struct{} // cap 1: the reply came, or the reader role is free
	done    bool          // guarded by conn.mu
	typ     wire.Type     // REPLY or ERROR
	payload []byte
	large   bool  // payload came from conn.bufs
	err     error // the connection broke before the reply

	// The caller's ctx, watched by one context.AfterFunc from arm to
	// disarm (cancel.go). role says what the caller is doing, so that the
	// callback knows whether only a shutdown can free it; fired says the
	// callback ran, for a caller that takes a role after it did.
	ctx    context.Context
	stop   func() bool
	cbDone chan struct{} // cap 1: the callback has finished
	settle chan struct{} // cap 1: disarm tells a callback waiting on the marker to stop
	// roleDone (cap 1) tells a callback waiting for a write to end that
	// it did.
	roleDone chan struct{}
	role     atomic.Int32
	fired    atomic.Bool
	// rechecks counts the frames read since fired (recheck); the reader's.
	rechecks int
}

var pendingPool = sync.Pool{New: func() any {
	return &Pending{wake: make(chan struct{}, 1), cbDone: make(chan struct{}, 1), settle: make(chan struct{}, 1),
		roleDone: make(chan struct{}, 1)}
}}

func New(fd int, maxFrame uint32) *Conn {
	c := &Conn{
		fd:       fdio.FD(fd),
		rd:       fdio.FD(fd),
		wr:       fdio.FD(fd),
		maxFrame: maxFrame,
		out:      new(wire.Builder),
		spare:    new(wire.Builder),
		pend:     make(map[uint64]*Pending),
		gone:     make(map[uint64]struct{}),
	}
	c.roleFree.L = &c.wmu
	c.reader = wire.NewReader(c.rd, maxFrame)
	return c
}

// Options tune a connection to its worker and its owner. They depend on
// the worker's HELLO, and are given to Launch (Spec.Options), which sets
// them before the connection carries its first call.
type Options struct {
	// Buffers, if not nil, has large frames read into buffers that the
	// owner recycles (bulkhead.Reply.Release); Result.Large says so.
	Buffers *Buffers
	// Serial says that the worker runs one call at a time and keeps the
	// start marker: a cancellation spares a reader whose worker's marker
	// has moved past its call (MovedPast), since its answer is on its way.
	Serial bool
	// HoldAfter is how many calls may be pending before a new one is held
	// back in the buffer for the reader to write (Config.Pipeline: the
	// worker's concurrency plus one); 0, never.
	HoldAfter int
	// Follow has callers wait as followers only, while a goroutine of the
	// connection's reads for them, so that a caller whose ctx ends returns
	// at once without shutting the socket down (Config.CancelGrace).
	Follow bool
}

// configure sets o, with marker the start marker's word for o.Serial,
// after HELLO and before the connection carries a call: nothing else reads
// or writes these fields meanwhile.
func (c *Conn) configure(o Options, marker *atomic.Uint64) {
	if o.Buffers != nil {
		c.bufs = o.Buffers
		c.reader.Alloc = o.Buffers.Get
	}
	if o.Serial {
		c.serialStarted = marker
	}
	c.holdAfter = o.HoldAfter
	c.follow = o.Follow
}

// Result is a call's outcome, as far as it is known.
type Result struct {
	// Done: the answer came (Type and Payload), or the connection broke
	// before it did (Err).
	Done    bool
	Type    wire.Type // REPLY or ERROR
	Payload []byte
	Large   bool // Payload is a buffer from Options.Buffers
	Err     error
	// Shut (from Wait only): this call's ctx ending shut the connection
	// down, and the shutdown is over.
	Shut bool
}

// Wait waits for p's answer, the connection's end, or ctx's end, and
// returns what is known then (see wait for the roles it may take).
func (c *Conn) Wait(ctx context.Context, p *Pending) Result {
	shut := c.wait(p, ctx)
	r := c.Result(p)
	r.Shut = shut
	return r
}

// Result reads p's outcome under the connection's lock.
func (c *Conn) Result(p *Pending) Result {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Result{Done: p.done, Type: p.typ, Payload: p.payload, Large: p.large, Err: p.err}
}

// Done reports whether p's outcome is in.
func (c *Conn) Done(p *Pending) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return p.done
}

// ID is p's request id.
func (p *Pending) ID() uint64 { return p.id }

// AbandonedBy is the id of the call whose ctx ending shut the connection
// down, or 0.
func (c *Conn) AbandonedBy() uint64 { return c.abandonedBy.Load() }

// MarkAbandoned records id as the call whose ending stops the worker,
// unless one is recorded already; it reports whether id was recorded.
func (c *Conn) MarkAbandoned(id uint64) bool { return c.abandonedBy.CompareAndSwap(0, id) }

// MovedPast reports whether the worker runs one call at a time and its
// start marker is past call id, which it has therefore finished: its answer
// is on its way. A marker beyond every id sent is a lie, and not believed.
func (c *Conn) MovedPast(id uint64) bool {
	if m := c.serialStarted; m != nil {
		v := m.Load()
		return v > id && v <= c.sent.Load()
	}
	return false
}

// OnShm reports whether frames go over the shared-memory transport.
func (c *Conn) OnShm() bool { return c.shm.Load() != nil }

// shmLink is the shared-memory transport of one connection (PROTOCOL.md
// section 9): a pipe each way in one mapped region.
type shmLink struct {
	mem     []byte
	in, out *shmpipe.Pipe
	file    *os.File // the region, until it has been handed to the worker
}

// useShm moves the connection onto shared-memory pipes after a HELLO that
// accepted them. Nothing else may be using the connection yet.
func (c *Conn) useShm(l *shmLink) {
	c.rd, c.wr = l.in, l.out
	c.reader = wire.NewReader(c.rd, c.maxFrame)
	if c.bufs != nil {
		c.reader.Alloc = c.bufs.Get
	}
	c.shm.Store(l)
	// A shutdown racing with this switch either sees l, or set down
	// before we look here: either way the pipes get shut.
	if c.down.Load() {
		l.in.Shut()
		l.out.Shut()
	}
	c.drainers.Add(1)
	go c.watchSocket()
}

// watchSocket shuts the pipes when the worker hangs up its socket or writes
// to it: after HELLO the socket carries nothing (PROTOCOL.md section 9), so
// either means that the worker is gone or broken, and a reader waiting on
// the ring would not know. It blocks a thread in poll(2) for the life of the
// connection, and ends when the socket is shut down (close waits for it).
func (c *Conn) watchSocket() {
	defer c.drainers.Done()
	fds := []unix.PollFd{{Fd: int32(c.fd), Events: unix.POLLIN | unix.POLLRDHUP}}
	for {
		if _, err := unix.Poll(fds, -1); err != unix.EINTR {
			break
		}
	}
	c.Shutdown()
}

// ErrBroken wraps the cause when a worker's connection fails.
var ErrBroken = errors.New("worker connection broken")

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
		as.setRole(roleWriter, c)
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

// wait blocks until p has its reply, the connection breaks, or ctx ends,
// and reports whether ctx ending shut the connection down: then, and only
// then, the worker has lost its connection on this call's account and must
// be stopped. When wait returns, the ctx callback (cancel.go) has finished.
//
// Only the oldest call in flight reads from the socket. A reader blocked in
// read(2) cannot select on ctx: its ctx ending shuts the socket down, unless
// an answer is already waiting to be read. A call queued behind it
// (Config.Pipeline) waits on its channel instead, and its ctx ending returns
// from wait with p not done, for the caller to abandon p alone.
func (c *Conn) wait(p *Pending, ctx context.Context) (shut bool) {
	c.arm(p, ctx)
	for {
		c.mu.Lock()
		if p.done {
			c.mu.Unlock()
			break
		}
		if c.follow && !c.reading {
			c.startDrainLocked()
		}
		if !c.follow && !c.reading && c.oldestLocked(p) {
			c.reading = true
			c.mu.Unlock()
			p.setRole(roleReader, c)
			c.readUntil(p)
			p.role.Store(roleFollower)
			c.mu.Lock()
			c.reading = false
			c.handOffLocked()
			c.mu.Unlock()
			break
		}
		c.mu.Unlock()
		if !p.sleep() {
			break
		}
	}
	c.disarm(p)
	return c.abandonedBy.Load() == p.id
}

// abandon shuts the connection down under a call whose ctx ended while it
// was reading or writing (cancel.go): the shutdown costs every other call on
// the worker its connection, so it is the last resort. It does nothing if
// the call's answer has come meanwhile, or, for a reader, is waiting to be
// read (buffered: the reader's own buffer holds a frame; the reader calls
// abandon again after each frame). abandonedBy says which call it was.
func (c *Conn) abandon(id uint64, role int32, buffered bool, trustMarker bool) (spared bool) {
	if m := c.serialStarted; trustMarker && m != nil {
		// A worker that runs one call at a time and has moved on to a
		// later call finished this one: its answer is in the socket. A
		// shutdown now would cost the later call, and gain nothing. Its
		// caller shuts down later if the answer does not come (arm): the
		// marker is the worker's word, and may lie, but never beyond the
		// ids sent.
		if v := m.Load(); v > id && v <= c.sent.Load() {
			return true
		}
	}
	c.mu.Lock()
	_, waiting := c.pend[id] // delivery removes it
	c.mu.Unlock()
	if !waiting || role == roleReader && (buffered || c.readable()) {
		return false
	}
	c.abandonedBy.CompareAndSwap(0, id)
	c.Shutdown()
	return false
}

// readable reports, without blocking, whether the worker has sent data not
// yet read.
func (c *Conn) readable() bool {
	if l := c.shm.Load(); l != nil {
		return l.in.Unread()
	}
	ok, _ := c.fd.WaitReadable(0)
	return ok
}

// answered is the highest request id answered on the connection.
func (c *Conn) Answered() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastAnswered
}

// oldestLocked reports whether p is the oldest call still waiting.
func (c *Conn) oldestLocked(p *Pending) bool {
	if len(c.pend) > 1 {
		for id, q := range c.pend {
			if id < p.id && !q.done {
				return false
			}
		}
	}
	return true
}

// handOffLocked gives the free reader role to the oldest waiting call, or,
// on an object server, to its watcher.
func (c *Conn) handOffLocked() {
	var next *Pending
	for _, q := range c.pend {
		if !q.done && (next == nil || q.id < next.id) {
			next = q
		}
	}
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
		c.mu.Lock()
		defer c.mu.Unlock()
		q, err = c.deliverLocked(h, payload, self)
		drained = self == nil && (len(c.orphans) == 0 && len(c.pend) == 0 || len(c.pend) > 0 && !c.follow)
		return q, drained, err
	case h.Type == wire.TypePing || h.Type == wire.TypePong:
		if len(payload) != 0 {
			return nil, false, &wire.FrameError{Header: h, Reason: "control frame with a payload"}
		}
		if h.Type == wire.TypePing && !c.down.Load() {
			c.SendControl(wire.TypePong, h.ID)
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
	q, o := c.pend[h.ID], c.orphans[h.ID]
	_, left := c.gone[h.ID]
	switch {
	case q != nil:
		delete(c.pend, h.ID)
		q.typ = h.Type
		if c.reader.Owned() {
			q.payload = payload // a large frame: already its own allocation
			q.large = c.bufs != nil
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

// fail breaks the connection: every pending call, now and later, fails with err.
func (c *Conn) Fail(err error) {
	c.mu.Lock()
	if c.broken == nil {
		c.broken = err
	}
	for id, q := range c.pend {
		delete(c.pend, id)
		q.done, q.err = true, c.broken
		signal(q)
	}
	c.endOrphansLocked(c.broken)
	if c.watchWake != nil {
		c.wakeWatcher()
	}
	c.mu.Unlock()
	c.Shutdown()
}

// orphan is told how a call whose caller left it queued ended: the
// worker's answer (typ REPLY or ERROR, and its payload), or err if the
// connection broke first. It runs under conn.mu and must not block.
type Orphan func(typ wire.Type, payload []byte, err error)

// abandonQueued gives p, whose caller stops waiting before the worker
// answered, to done; the caller must still release p. It reports false if
// the answer had already come, when p is simply done.
func (c *Conn) AbandonQueued(p *Pending, done Orphan) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p.done {
		return false
	}
	if c.broken != nil {
		done(0, nil, c.broken)
		return true
	}
	if c.orphans == nil {
		c.orphans = make(map[uint64]Orphan)
	}
	// One move under one lock: its answer must find either p or done.
	delete(c.pend, p.id)
	c.orphans[p.id] = done
	if !c.reading {
		c.handOffLocked()
	}
	return true
}

// ErrWorkerExited ends the calls left queued on a worker that has exited.
var ErrWorkerExited = errors.New("worker exited")

// dropOrphans tells the calls left queued (abandonQueued) that the worker
// is gone: with nobody else waiting, nobody may read their answers.
func (c *Conn) DropOrphans(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.endOrphansLocked(err)
}

// endOrphansLocked tells every call left queued that it ended with err.
func (c *Conn) endOrphansLocked(err error) {
	for id, o := range c.orphans {
		delete(c.orphans, id)
		o(0, nil, err)
	}
}

// release returns p to the pool once its caller is done with it. A pending
// still registered (its caller gave up) is left to the connection; if it
// was given the reader role, the role passes on.
func (c *Conn) Release(p *Pending) {
	c.mu.Lock()
	if !p.done {
		delete(c.pend, p.id)
		c.gone[p.id] = struct{}{} // its answer may still come
		if !c.reading {
			c.handOffLocked()
		}
		c.mu.Unlock()
		return // a late signal may still arrive on p.wake; do not reuse
	}
	c.mu.Unlock()
	*p = Pending{wake: p.wake, cbDone: p.cbDone, settle: p.settle, roleDone: p.roleDone}
	select {
	case <-p.wake:
	default:
	}
	select {
	case <-p.settle:
	default:
	}
	select {
	case <-p.roleDone:
	default:
	}
	pendingPool.Put(p)
}

// shutdown wakes any reader or writer blocked on the socket. The descriptor
// stays open until close, so its number cannot be reused under them.
func (c *Conn) Shutdown() {
	c.down.Store(true)
	_ = unix.Shutdown(int(c.fd), unix.SHUT_RDWR)
	if l := c.shm.Load(); l != nil {
		l.in.Shut()
		l.out.Shut()
	}
}

// close releases the descriptor; call only when no goroutine can use it.
func (c *Conn) Close() {
	c.closeOnce.Do(func() {
		c.Shutdown()
		c.drainers.Wait() // it may be reading the descriptor
		_ = unix.Close(int(c.fd))
		if l := c.shm.Load(); l != nil {
			_ = unix.Munmap(l.mem)
		}
	})
}
