package bulkhead

import (
	"math/bits"
	"sync"
	"sync/atomic"
)

// largeBuffers recycles the buffers of large replies that their callers gave
// back (Reply.Release). Without it a 1 MiB echo allocates, zeroes, faults in
// and later collects a fresh 1 MiB for every reply. Buffers are grouped by
// power-of-two capacity; each Pool has its own.
type largeBuffers struct {
	classes [bits.UintSize]sync.Pool // index k: capacity 1<<k
}

// get returns a buffer of length n, recycled if one of its class is free.
// Its contents are garbage: the reader overwrites all n bytes.
func (b *largeBuffers) get(n int) []byte {
	k := bits.Len(uint(n - 1))
	if v, ok := b.classes[k].Get().(*[]byte); ok {
		return (*v)[:n]
	}
	return make([]byte, n, 1<<k)
}

// put makes buf available to get. Only buffers that get returned belong here.
func (b *largeBuffers) put(buf []byte) {
	c := cap(buf)
	if c == 0 || c&(c-1) != 0 {
		return // not one of ours
	}
	buf = buf[:c]
	b.classes[bits.Len(uint(c-1))].Put(&buf)
}

// replyBuffer is a large reply's recyclable memory, given back at most once.
type replyBuffer struct {
	buf      []byte
	owner    *largeBuffers
	released atomic.Bool
}
