package chaos

import (
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"unsafe"

	"github.com/bulkhead-go/bulkhead/internal/wire"
	"golang.org/x/sys/unix"
)

// Ring faults lie in the shared-memory transport's pipe from the worker to
// the dispatcher (PROTOCOL.md section 9), where the worker is the writer:
// they store indices no honest writer would. Each must be a protocol crash
// of that worker: *CrashError, Killed, wrapping wire.ErrProtocol.
const (
	FaultRingBack Fault = "ringback" // head = tail-1: the writer claims 2^64-1 bytes
	FaultRingOver Fault = "ringover" // head = tail+2*size: more bytes than the ring holds
	FaultRingTorn Fault = "ringtorn" // a frame published before its id was written: the id reads as stale bytes
)

// RingFaults returns the faults injected in the shared-memory rings.
func RingFaults() []Fault { return []Fault{FaultRingBack, FaultRingOver, FaultRingTorn} }

// Offsets in a pipe's header (PROTOCOL.md section 9).
const (
	ringHeader  = 4096
	offHead     = 0
	offTail     = 64
	offDataSeq  = 128
	futexWakeOp = 1 // FUTEX_WAKE, shared: the reader is another process
)

// ring is a worker's own mapping of the pipe it writes (pipe 1).
type ring struct {
	pipe []byte // the pipe's header and ring
	size uint64
}

// openRing maps the shared-memory pipes the dispatcher offered, or returns
// nil if it offered none.
func openRing() (*ring, error) {
	v := os.Getenv("BULKHEAD_SHM_FD")
	if v == "" {
		return nil, nil
	}
	fd, err := strconv.Atoi(v)
	if err != nil {
		return nil, fmt.Errorf("BULKHEAD_SHM_FD=%q: %w", v, err)
	}
	size, err := strconv.Atoi(os.Getenv("BULKHEAD_SHM_SIZE"))
	if err != nil || size < 4096 || size&(size-1) != 0 {
		return nil, fmt.Errorf("BULKHEAD_SHM_SIZE=%q: not a power of two from 4096", os.Getenv("BULKHEAD_SHM_SIZE"))
	}
	mem, err := unix.Mmap(fd, 0, 2*(ringHeader+size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mapping the shared-memory pipes: %w", err)
	}
	return &ring{pipe: mem[ringHeader+size:], size: uint64(size)}, nil
}

func (r *ring) u64(off int) *atomic.Uint64 { return (*atomic.Uint64)(unsafe.Pointer(&r.pipe[off])) }
func (r *ring) u32(off int) *atomic.Uint32 { return (*atomic.Uint32)(unsafe.Pointer(&r.pipe[off])) }

// publish stores head and rings the reader's doorbell.
func (r *ring) publish(head uint64) {
	r.u64(offHead).Store(head)
	seq := r.u32(offDataSeq)
	seq.Add(1)
	_, _, _ = unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(seq)), futexWakeOp, 1<<30, 0, 0, 0)
}

// write appends b to the stream, as an honest writer would: the handler runs
// while the SDK writes nothing, so the pipe is ours. b is small and the
// dispatcher has read every earlier frame, so it fits.
func (r *ring) write(b []byte) {
	head := r.u64(offHead).Load()
	r.put(head, b)
	r.publish(head + uint64(len(b)))
}

// put copies b into the ring at stream position pos.
func (r *ring) put(pos uint64, b []byte) {
	data := r.pipe[ringHeader : ringHeader+r.size]
	for i, c := range b {
		data[(pos+uint64(i))&(r.size-1)] = c
	}
}

// lie stores the indices of ring fault f.
func (r *ring) lie(f Fault) {
	tail := r.u64(offTail).Load()
	switch f {
	case FaultRingBack:
		r.publish(tail - 1)
	case FaultRingOver:
		r.publish(tail + 2*r.size)
	case FaultRingTorn:
		// A REPLY header whose first half (length, type) was written and
		// whose id, like its payload, is still what the ring held: here
		// all ones, an id the dispatcher never sent.
		head := r.u64(offHead).Load()
		frame := make([]byte, wire.HeaderSize+16)
		for i := range frame {
			frame[i] = 0xff
		}
		var h [wire.HeaderSize]byte
		wire.PutHeader(h[:], wire.Header{Length: 16, Type: wire.TypeReply})
		copy(frame, h[:8])
		r.put(head, frame)
		r.publish(head + uint64(len(frame)))
	}
}
