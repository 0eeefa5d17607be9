package dispatch

import (
	"context"
	"errors"
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
	// panicked: the worker answered a call with ERROR panic (Panicked).
	panicked atomic.Bool
	maxFrame uint32
	bufs     *Buffers // recycled large reply buffers, or nil (recycle)
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
	pend     pendTable
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

	// stacks receives the worker's STACK dumps (Stacks); cap 1, and a
	// dump that finds it full is dropped.
	stacks chan string

	closeOnce sync.Once
}

// pending is one call awaiting its reply. Pooled.
type Pending struct {
	id      uint64
	wake    chan struct{} // cap 1: the reply came, or the reader role is free
	done    bool          // guarded by conn.mu
	typ     wire.Type     // REPLY or ERROR
	payload []byte
	usage   wire.Usage // the worker's USAGE for the call, if it sent one (hasUse)
	hasUse  bool
	large   bool   // payload came from conn.bufs
	small   *Small // payload is small.B, from conn.bufs
	err     error  // the connection broke before the reply

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
		gone:     make(map[uint64]struct{}),
		stacks:   make(chan string, 1),
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
	// owner recycles (bulkhead.Reply.Release); Result.Large says so. Small
	// answers are copied into its Small buffers (Result.Small).
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
	// Small, if not nil, holds Payload: a small reply's buffer from
	// Options.Buffers, which the owner may give back (Small.Release).
	Small *Small
	Err   error
	// Usage is the worker's USAGE for the call, when HasUsage: it sends
	// one before its answer if the dispatcher asked (BULKHEAD_CALL_USAGE).
	Usage    wire.Usage
	HasUsage bool
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
	return Result{Done: p.done, Type: p.typ, Payload: p.payload, Large: p.large, Small: p.small, Err: p.err, Usage: p.usage, HasUsage: p.hasUse}
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
	waiting := c.pend.get(id) != nil // delivery removes it
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

// Panicked reports whether the worker has answered a call with ERROR panic
// (PROTOCOL.md section 3). A worker exits after that unless it continues
// after panics, so a call it had not started when it died is a bystander of
// the panic, whichever caller reads the end of the stream first: the
// panicking call's caller may not yet have retired the worker.
func (c *Conn) Panicked() bool { return c.panicked.Load() }

// answered is the highest request id answered on the connection.
func (c *Conn) Answered() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastAnswered
}

// oldestLocked reports whether p is the oldest call still waiting.
func (c *Conn) oldestLocked(p *Pending) bool {
	if c.pend.len() > 1 {
		for q := range c.pend.all {
			if q.id < p.id && !q.done {
				return false
			}
		}
	}
	return true
}

// fail breaks the connection: every pending call, now and later, fails with err.
func (c *Conn) Fail(err error) {
	c.mu.Lock()
	if c.broken == nil {
		c.broken = err
	}
	for q := range c.pend.all {
		c.pend.del(q.id)
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
	c.pend.del(p.id)
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
		c.pend.del(p.id)
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
