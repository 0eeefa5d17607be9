package bulkhead

import (
	"slices"
	"sync"
	"time"
)

// waiter is a caller waiting for a worker. Pooled.
type waiter struct {
	ch         chan grant // cap 1
	prev, next *waiter
	queued     bool
	// whole: the call's frame is too large to wait in a busy worker's
	// socket (Config.Pipeline): it takes only a worker with room to run it.
	whole bool
}

var waiterPool = sync.Pool{New: func() any { return &waiter{ch: make(chan grant, 1)} }}

func getWaiter() *waiter  { return waiterPool.Get().(*waiter) }
func putWaiter(w *waiter) { waiterPool.Put(w) }

// waitQueue is a FIFO of waiters with O(1) removal of a caller that gives up.
type waitQueue struct {
	head, tail *waiter
	n          int
}

func (q *waitQueue) empty() bool { return q.head == nil }

func (q *waitQueue) push(w *waiter) {
	w.prev, w.next, w.queued = q.tail, nil, true
	if q.tail != nil {
		q.tail.next = w
	} else {
		q.head = w
	}
	q.tail = w
	q.n++
}

func (q *waitQueue) pop() *waiter {
	w := q.head
	if w != nil {
		q.remove(w)
	}
	return w
}

// remove takes w out of the queue; it reports false if w was not queued
// (it has been popped and granted already).
func (q *waitQueue) remove(w *waiter) bool {
	if !w.queued {
		return false
	}
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		q.head = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	} else {
		q.tail = w.prev
	}
	w.prev, w.next, w.queued = nil, nil, false
	q.n--
	return true
}

// ring keeps the most recent durations, for a median.
type ring struct {
	d    [256]time.Duration
	n    int
	next int
}

func (r *ring) add(d time.Duration) {
	r.d[r.next] = d
	r.next = (r.next + 1) % len(r.d)
	r.n = min(r.n+1, len(r.d))
}

func (r *ring) median() (time.Duration, int) {
	if r.n == 0 {
		return 0, 0
	}
	s := slices.Clone(r.d[:r.n])
	slices.Sort(s)
	return s[len(s)/2], r.n
}
