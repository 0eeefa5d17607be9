// Package shmpipe is a byte pipe between two processes over shared memory:
// a single-producer single-consumer ring with futex doorbells.
//
// It exists for callers who will spend CPU to cut latency: a reader spins
// briefly before it sleeps in futex(2), so when both sides are busy a
// message crosses without any system call. It carries the same framed
// protocol as the Unix socket; only the byte transport changes.
//
// Layout of a pipe region (all fields little-endian, 64-byte aligned so the
// two sides do not share cache lines):
//
//	0    u64 head      bytes written so far (only the writer stores)
//	64   u64 tail      bytes read so far (only the reader stores)
//	128  u32 dataSeq   bumped by the writer after publishing; the reader's futex word
//	132  u32 readerWaits  1 while the reader sleeps or is about to
//	192  u32 spaceSeq  bumped by the reader after consuming; the writer's futex word
//	196  u32 writerWaits
//	256  u32 closed    1 once either side has shut the pipe
//	4096 ...           the ring, Size bytes (a power of two)
//
// # The peer is not trusted
//
// The region is shared with another process that may be broken or hostile
// and may store anything anywhere in it at any time. So each side keeps its
// own copy of the index it owns (the writer its head, the reader its tail),
// stores it into the region for the peer and never loads it back; every
// index it loads from the peer is checked before use (a reader requires
// seen head <= head <= tail+size, a writer seen tail <= tail <= head). A
// violation makes every later Read, Write, TryWrite of that side return an
// error matching ErrCorrupt. The closed flag, once seen, is remembered: a
// peer that clears it again changes nothing. The sequence and waits words
// are only hints: a peer that scribbles them can cost us a wake-up or delay
// one, never make us spin, and a side's own Shut wakes it within
// MaxSleep even if the peer undoes the doorbell.
package shmpipe

import (
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// HeaderSize is the bytes before each ring.
const HeaderSize = 4096

// Region returns the bytes one pipe of a ring of size bytes occupies.
func Region(size int) int { return HeaderSize + size }

// ErrClosed is returned by Write after the pipe was shut.
var ErrClosed = errors.New("shmpipe: closed")

// ErrCorrupt is matched (errors.Is) by the error of every Read, Write and
// TryWrite after the peer stored an index that no correct peer could have:
// the pipe is unusable from then on.
var ErrCorrupt = errors.New("shmpipe: ring state corrupted by the peer")

// CorruptError describes the first violation seen. It matches ErrCorrupt.
type CorruptError struct {
	Field string // "head" (seen by the reader) or "tail" (seen by the writer)
	Value uint64 // what the peer stored
	Min   uint64 // the smallest value a correct peer could have stored then
	Max   uint64 // the largest
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("shmpipe: ring state corrupted by the peer: %s = %d, want %d to %d", e.Field, e.Value, e.Min, e.Max)
}

// Is makes errors.Is(err, ErrCorrupt) true.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

// MaxSleep bounds one sleep in futex(2). A peer that restores a doorbell
// word to the value we sleep on, just after our own Shut changed it, could
// otherwise make that wake-up be lost; we look at our own state again at
// least this often. It costs an idle side one wake-up per MaxSleep.
const MaxSleep = 200 * time.Millisecond

type header struct {
	head        atomic.Uint64
	_           [56]byte
	tail        atomic.Uint64
	_           [56]byte
	dataSeq     atomic.Uint32
	readerWaits atomic.Uint32
	_           [56]byte
	spaceSeq    atomic.Uint32
	writerWaits atomic.Uint32
	_           [56]byte
	closed      atomic.Uint32
}

// Pipe is one direction of a shared-memory channel. A Pipe is used by one
// reader and one writer, each in its own process; neither side may read (or
// write) from two goroutines at once. Shut may be called from any goroutine.
type Pipe struct {
	h    *header
	ring []byte
	mask uint64
	size uint64
	spin int

	// shut is set once this side shut the pipe or saw it shut: a peer
	// that clears the shared flag again cannot reopen it.
	shut atomic.Bool

	// The writer's side: only Write, TryWrite and WaitWritable use these.
	head     uint64 // authoritative: bytes written
	seenTail uint64 // the largest tail the reader has shown us
	werr     error  // sticky: the reader broke the ring

	// The reader's side: only Read and WaitReadable use these.
	tail     uint64 // authoritative: bytes read
	seenHead uint64 // the largest head the writer has shown us
	rerr     error  // sticky: the writer broke the ring
}

// New views mem (at least Region(size) bytes, shared) as a pipe. size must
// be a power of two. spin is how many times a blocked side polls before it
// sleeps in futex(2); 0 never spins.
//
// New takes the head and tail it finds in mem (zero in a fresh region) as
// its own, so it must be called before the peer can write to mem; it fails
// if they are not a state a correct pipe can be in.
func New(mem []byte, size, spin int) (*Pipe, error) {
	if size <= 0 || size&(size-1) != 0 || len(mem) < Region(size) {
		return nil, errors.New("shmpipe: size must be a power of two and fit the region")
	}
	if uintptr(unsafe.Pointer(&mem[0]))%64 != 0 {
		return nil, errors.New("shmpipe: region not 64-byte aligned")
	}
	p := &Pipe{
		h:    (*header)(unsafe.Pointer(&mem[0])),
		ring: mem[HeaderSize : HeaderSize+size],
		mask: uint64(size - 1),
		size: uint64(size),
		spin: spin,
	}
	head, tail := p.h.head.Load(), p.h.tail.Load()
	if head-tail > p.size {
		return nil, &CorruptError{Field: "head", Value: head, Min: tail, Max: tail + p.size}
	}
	p.head, p.seenTail = head, tail
	p.tail, p.seenHead = tail, head
	if p.h.closed.Load() != 0 {
		p.shut.Store(true)
	}
	return p, nil
}

// closed reports whether the pipe has been shut, by either side; once true
// it stays true.
func (pp *Pipe) closed() bool {
	if pp.shut.Load() {
		return true
	}
	if pp.h.closed.Load() != 0 {
		pp.shut.Store(true)
		return true
	}
	return false
}

// loadTail returns the reader's tail, checked: it may only grow, and never
// past what we wrote. A violation is sticky.
func (pp *Pipe) loadTail() (uint64, error) {
	if pp.werr != nil {
		return 0, pp.werr
	}
	tail := pp.h.tail.Load()
	// seenTail <= tail <= head, in modular arithmetic: both distances
	// from seenTail are at most size (the invariant head-seenTail <= size).
	if tail-pp.seenTail > pp.head-pp.seenTail {
		pp.werr = &CorruptError{Field: "tail", Value: tail, Min: pp.seenTail, Max: pp.head}
		return 0, pp.werr
	}
	pp.seenTail = tail
	return tail, nil
}

// loadHead returns the writer's head, checked: it may only grow, and never
// more than size past what we read. A violation is sticky.
func (pp *Pipe) loadHead() (uint64, error) {
	if pp.rerr != nil {
		return 0, pp.rerr
	}
	head := pp.h.head.Load()
	// seenHead <= head <= tail+size (seenHead is in [tail, tail+size]).
	if head-pp.seenHead > pp.tail+pp.size-pp.seenHead {
		pp.rerr = &CorruptError{Field: "head", Value: head, Min: pp.seenHead, Max: pp.tail + pp.size}
		return 0, pp.rerr
	}
	pp.seenHead = head
	return head, nil
}

// free returns the bytes that can be written now.
func (pp *Pipe) free() (int, error) {
	tail, err := pp.loadTail()
	if err != nil {
		return 0, err
	}
	return int(pp.size - (pp.head - tail)), nil
}

// Write copies all of p into the pipe, blocking while it is full. It
// returns early with ErrClosed once the pipe is shut (by Shut, from any
// goroutine, or by the peer), or with an error matching ErrCorrupt.
func (pp *Pipe) Write(p []byte) (int, error) {
	done := 0
	for {
		n, err := pp.TryWrite(p[done:])
		done += n
		if err != nil || done == len(p) {
			return done, err
		}
		pp.waitSpace(-1)
	}
}

// TryWrite copies as much of p as fits now into the pipe, without
// blocking, and returns how much: possibly 0 with a nil error when the
// ring is full. The error is ErrClosed or matches ErrCorrupt.
func (pp *Pipe) TryWrite(p []byte) (int, error) {
	if pp.werr != nil {
		return 0, pp.werr
	}
	if len(p) == 0 {
		return 0, nil
	}
	if pp.closed() {
		return 0, ErrClosed
	}
	free, err := pp.free()
	if err != nil || free == 0 {
		return 0, err
	}
	n := min(free, len(p))
	off := int(pp.head & pp.mask)
	c := copy(pp.ring[off:], p[:n])
	if c < n {
		copy(pp.ring, p[c:n])
	}
	pp.head += uint64(n)
	h := pp.h
	h.head.Store(pp.head)
	h.dataSeq.Add(1)
	if h.readerWaits.Load() != 0 {
		futexWake(&h.dataSeq)
	}
	return n, nil
}

// WaitWritable blocks until at least one byte can be written, the pipe is
// shut or corrupt (a write would then fail at once), or timeout passes (a
// negative timeout waits for ever). It reports whether a write would not
// block.
func (pp *Pipe) WaitWritable(timeout time.Duration) bool {
	return pp.waitSpace(timeout)
}

// writableNow reports whether a write would not block.
func (pp *Pipe) writableNow() bool {
	if pp.closed() {
		return true
	}
	free, err := pp.free()
	return err != nil || free > 0
}

// waitSpace blocks until writableNow, or timeout (negative: none).
func (pp *Pipe) waitSpace(timeout time.Duration) bool {
	h := pp.h
	for i := 0; i < pp.spin; i++ {
		if pp.writableNow() {
			return true
		}
	}
	return pp.sleep(timeout, &h.spaceSeq, &h.writerWaits, pp.writableNow)
}

// Read copies what is available into p, blocking until at least one byte
// is. It returns io.EOF once the pipe is shut and drained, and an error
// matching ErrCorrupt once the writer stored an impossible head.
func (pp *Pipe) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	h := pp.h
	for {
		head, err := pp.loadHead()
		if err != nil {
			return 0, err
		}
		if avail := head - pp.tail; avail > 0 {
			n := int(min(avail, uint64(len(p)))) // avail <= size: checked
			off := int(pp.tail & pp.mask)
			c := copy(p[:n], pp.ring[off:])
			if c < n {
				copy(p[c:n], pp.ring)
			}
			pp.tail += uint64(n)
			h.tail.Store(pp.tail)
			h.spaceSeq.Add(1)
			if h.writerWaits.Load() != 0 {
				futexWake(&h.spaceSeq)
			}
			return n, nil
		}
		if pp.closed() {
			return 0, io.EOF
		}
		pp.waitData(-1)
	}
}

// readableNow reports whether a Read would not block: data, end of
// stream, or a corrupt ring.
func (pp *Pipe) readableNow() bool {
	head, err := pp.loadHead()
	return err != nil || head != pp.tail || pp.closed()
}

// waitData blocks until readableNow, or timeout (negative: none).
func (pp *Pipe) waitData(timeout time.Duration) bool {
	h := pp.h
	// A plain spin: no runtime.Gosched, which on a goroutine locked to
	// its thread (as a serial worker is) hands the thread off and parks it,
	// a round trip through another thread. Async preemption keeps the loop
	// from starving the scheduler.
	// Each poll is one load of the writer's head (the C floor's loop,
	// c_shm_floor in bench/); the full, checked readableNow runs when it
	// moved, and every 64 polls for a shutdown.
	for i := 0; i < pp.spin; i++ {
		if (h.head.Load() != pp.seenHead || i&63 == 0) && pp.readableNow() {
			return true
		}
	}
	return pp.sleep(timeout, &h.dataSeq, &h.readerWaits, pp.readableNow)
}

// WaitReadable blocks until data is available, the pipe is shut, or timeout
// passes (a negative timeout waits for ever). It reports whether the pipe is
// readable (data, end of stream, or a corrupt ring: a Read would not block).
// Only the reader may call it.
func (pp *Pipe) WaitReadable(timeout time.Duration) bool {
	return pp.waitData(timeout)
}

// sleep waits on the futex word seq, announcing it in waits, until ready
// reports true or timeout passes (negative: none). Each futex sleep lasts at
// most MaxSleep, so that no value the peer stores can keep us asleep after
// our own Shut. It reports ready().
func (pp *Pipe) sleep(timeout time.Duration, seq, waits *atomic.Uint32, ready func() bool) bool {
	var deadline time.Time
	if timeout >= 0 {
		deadline = time.Now().Add(timeout)
	}
	for {
		if ready() {
			return true
		}
		d := MaxSleep
		if timeout >= 0 {
			left := time.Until(deadline)
			if left <= 0 {
				return false
			}
			d = min(d, left)
		}
		v := seq.Load()
		waits.Store(1)
		if !ready() {
			futexWait(seq, v, d)
		}
		waits.Store(0)
	}
}

// Shut closes the pipe for both sides and wakes whoever sleeps on it. Data
// already written can still be read.
func (pp *Pipe) Shut() {
	h := pp.h
	pp.shut.Store(true)
	h.closed.Store(1)
	h.dataSeq.Add(1)
	h.spaceSeq.Add(1)
	futexWake(&h.dataSeq)
	futexWake(&h.spaceSeq)
}

// Shared (not FUTEX_PRIVATE) operations: the two sides are different processes.
const (
	futexWaitOp = 0 // FUTEX_WAIT
	futexWakeOp = 1 // FUTEX_WAKE
)

// futexWait sleeps while *addr is val, for at most d.
func futexWait(addr *atomic.Uint32, val uint32, d time.Duration) {
	ts := unix.NsecToTimespec(d.Nanoseconds())
	// EAGAIN (the value changed), EINTR and ETIMEDOUT all mean "look again".
	_, _, _ = unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), futexWaitOp, uintptr(val), uintptr(unsafe.Pointer(&ts)), 0, 0)
}

func futexWake(addr *atomic.Uint32) {
	_, _, _ = unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), futexWakeOp, 1<<30, 0, 0, 0)
}

// Unread reports whether the writer has published bytes that the reader
// has not consumed, or the pipe is shut. Unlike WaitReadable it reads only
// shared words, so any goroutine may ask while the reader reads; a lying
// peer can only make it wrong, never unsafe.
func (pp *Pipe) Unread() bool {
	return pp.h.head.Load() != pp.h.tail.Load() || pp.shut.Load() || pp.h.closed.Load() != 0
}

// Full reports whether the ring has no room, from the shared words alone,
// so that any goroutine may ask while the writer writes. A lying peer can
// only make it wrong, never unsafe.
func (pp *Pipe) Full() bool {
	return pp.h.head.Load()-pp.h.tail.Load() >= pp.size
}
