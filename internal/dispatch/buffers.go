package dispatch

import (
	"math/bits"
	"sync"
	"sync/atomic"
)

// Buffers recycles the buffers of large replies that their callers gave
// back (bulkhead.Reply.Release). Without it a 1 MiB echo allocates, zeroes, faults in
// and later collects a fresh 1 MiB for every reply. Buffers are grouped by
// power-of-two capacity; each pool has its own.
type Buffers struct {
	classes [bits.UintSize]sync.Pool // index k: capacity 1<<k
	small   sync.Pool                // *Small
	// A caller that never releases its replies should not pay for a
	// Small (more than 256 bytes) where a copy of a few bytes does: after
	// the first smallSeed misses, a miss allocates a Small only once one
	// has been released.
	smallMisses atomic.Int32
	smallUsed   atomic.Bool
}

// smallSeed is how many Smalls a pool hands out before it knows whether
// its caller releases them.
const smallSeed = 64

// Get returns a buffer of length n, recycled if one of its class is free.
// Its contents are garbage: the reader overwrites all n bytes.
func (b *Buffers) Get(n int) []byte {
	k := bits.Len(uint(n - 1))
	if v, ok := b.classes[k].Get().(*[]byte); ok {
		return (*v)[:n]
	}
	return make([]byte, n, 1<<k)
}

// Put makes buf available to Get. Only buffers that Get returned belong here.
func (b *Buffers) Put(buf []byte) {
	c := cap(buf)
	if c == 0 || c&(c-1) != 0 {
		return // not one of ours
	}
	buf = buf[:c]
	b.classes[bits.Len(uint(c-1))].Put(&buf)
}

// SmallMax is the largest reply that a Small buffer holds.
const SmallMax = 256

// Small is a recycled buffer for a small reply, so that a caller that gives
// its replies back (bulkhead.Reply.Release) allocates nothing per call. Its
// generation count makes a second release, or a release through a stale copy
// of a reply whose buffer has since been reused, do nothing.
type Small struct {
	B     []byte // the reply: a prefix of arr
	arr   [SmallMax]byte
	gen   atomic.Uint64
	owner *Buffers
}

// getSmall returns a free Small holding a copy of p (len(p) <= SmallMax), or
// nil if the caller has not been releasing them.
func (b *Buffers) getSmall(p []byte) *Small {
	s, ok := b.small.Get().(*Small)
	if !ok {
		if !b.smallUsed.Load() && b.smallMisses.Add(1) > smallSeed {
			return nil
		}
		s = &Small{owner: b}
	}
	s.B = append(s.arr[:0], p...)
	return s
}

// Gen is s's generation: what its holder passes to Release.
func (s *Small) Gen() uint64 { return s.gen.Load() }

// Release gives s back for reuse if gen is still its generation; otherwise
// (released already, and perhaps reused) it does nothing.
func (s *Small) Release(gen uint64) {
	if s.gen.CompareAndSwap(gen, gen+1) {
		if !s.owner.smallUsed.Load() {
			s.owner.smallUsed.Store(true)
		}
		s.B = nil
		s.owner.small.Put(s)
	}
}
