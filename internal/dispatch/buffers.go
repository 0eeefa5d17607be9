package dispatch

import (
	"math/bits"
	"sync"
)

// Buffers recycles the buffers of large replies that their callers gave
// back (bulkhead.Reply.Release). Without it a 1 MiB echo allocates, zeroes, faults in
// and later collects a fresh 1 MiB for every reply. Buffers are grouped by
// power-of-two capacity; each pool has its own.
type Buffers struct {
	classes [bits.UintSize]sync.Pool // index k: capacity 1<<k
}

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
