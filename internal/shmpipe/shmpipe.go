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
package shmpipe

import (
	"errors"
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
// write) from two goroutines at once.
type Pipe struct {
	h    *header
	ring []byte
	mask uint64
	spin int
}

// New views mem (at least Region(size) bytes, shared and zeroed by the side
// that created it) as a pipe. size must be a power of two. spin is how many
// times a blocked side polls before it sleeps in futex(2); 0 never spins.
func New(mem []byte, size, spin int) (*Pipe, error) {
	if size <= 0 || size&(size-1) != 0 || len(mem) < Region(size) {
		return nil, errors.New("shmpipe: size must be a power of two and fit the region")
	}
	if uintptr(unsafe.Pointer(&mem[0]))%64 != 0 {
		return nil, errors.New("shmpipe: region not 64-byte aligned")
	}
	return &Pipe{
		h:    (*header)(unsafe.Pointer(&mem[0])),
		ring: mem[HeaderSize : HeaderSize+size],
		mask: uint64(size - 1),
		spin: spin,
	}, nil
}

// Write copies all of p into the pipe, blocking while it is full.
func (pp *Pipe) Write(p []byte) (int, error) {
	h := pp.h
	done := 0
	for done < len(p) {
		if h.closed.Load() != 0 {
			return done, ErrClosed
		}
		head, tail := h.head.Load(), h.tail.Load()
		free := uint64(len(pp.ring)) - (head - tail)
		if free == 0 {
			if err := pp.waitSpace(head); err != nil {
				return done, err
			}
			continue
		}
		n := min(int(free), len(p)-done)
		off := int(head & pp.mask)
		c := copy(pp.ring[off:], p[done:done+n])
		if c < n {
			copy(pp.ring, p[done+c:done+n])
		}
		h.head.Store(head + uint64(n))
		h.dataSeq.Add(1)
		if h.readerWaits.Load() != 0 {
			futexWake(&h.dataSeq)
		}
		done += n
	}
	return done, nil
}

// Read copies what is available into p, blocking until at least one byte
// is. It returns io.EOF once the pipe is shut and drained.
func (pp *Pipe) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	h := pp.h
	for {
		head, tail := h.head.Load(), h.tail.Load()
		if avail := head - tail; avail > 0 {
			n := min(int(avail), len(p))
			off := int(tail & pp.mask)
			c := copy(p[:n], pp.ring[off:])
			if c < n {
				copy(p[c:n], pp.ring)
			}
			h.tail.Store(tail + uint64(n))
			h.spaceSeq.Add(1)
			if h.writerWaits.Load() != 0 {
				futexWake(&h.spaceSeq)
			}
			return n, nil
		}
		if h.closed.Load() != 0 {
			return 0, io.EOF
		}
		pp.waitData(tail)
	}
}

// waitData blocks until head moves past tail or the pipe is shut.
func (pp *Pipe) waitData(tail uint64) {
	h := pp.h
	// A plain spin: no runtime.Gosched, which on a goroutine locked to
	// its thread (as a serial worker is) hands the thread off and parks it,
	// a round trip through another thread. Async preemption keeps the loop
	// from starving the scheduler.
	for i := 0; i < pp.spin; i++ {
		if h.head.Load() != tail || h.closed.Load() != 0 {
			return
		}
	}
	seq := h.dataSeq.Load()
	h.readerWaits.Store(1)
	if h.head.Load() == tail && h.closed.Load() == 0 {
		futexWait(&h.dataSeq, seq)
	}
	h.readerWaits.Store(0)
}

func (pp *Pipe) waitSpace(head uint64) error {
	h := pp.h
	full := func() bool { return head-h.tail.Load() == uint64(len(pp.ring)) }
	for i := 0; i < pp.spin; i++ {
		if !full() || h.closed.Load() != 0 {
			return nil
		}
	}
	seq := h.spaceSeq.Load()
	h.writerWaits.Store(1)
	if full() && h.closed.Load() == 0 {
		futexWait(&h.spaceSeq, seq)
	}
	h.writerWaits.Store(0)
	return nil
}

// Shut closes the pipe for both sides and wakes whoever sleeps on it. Data
// already written can still be read.
func (pp *Pipe) Shut() {
	h := pp.h
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

func futexWait(addr *atomic.Uint32, val uint32) {
	// EAGAIN (the value changed) and EINTR both mean "look again".
	_, _, _ = unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), futexWaitOp, uintptr(val), 0, 0, 0)
}

func futexWake(addr *atomic.Uint32) {
	_, _, _ = unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), futexWakeOp, 1<<30, 0, 0, 0)
}

// WaitReadable blocks until data is available, the pipe is shut, or timeout
// passes (a negative timeout waits for ever). It reports whether the pipe is
// readable (data, or end of stream).
func (pp *Pipe) WaitReadable(timeout time.Duration) bool {
	h := pp.h
	var deadline time.Time
	if timeout >= 0 {
		deadline = time.Now().Add(timeout)
	}
	for {
		tail := h.tail.Load()
		if h.head.Load() != tail || h.closed.Load() != 0 {
			return true
		}
		var ts *unix.Timespec
		if timeout >= 0 {
			left := time.Until(deadline)
			if left <= 0 {
				return false
			}
			t := unix.NsecToTimespec(left.Nanoseconds())
			ts = &t
		}
		seq := h.dataSeq.Load()
		h.readerWaits.Store(1)
		if h.head.Load() == tail && h.closed.Load() == 0 {
			_, _, _ = unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(&h.dataSeq)), futexWaitOp, uintptr(seq), uintptr(unsafe.Pointer(ts)), 0, 0)
		}
		h.readerWaits.Store(0)
	}
}
