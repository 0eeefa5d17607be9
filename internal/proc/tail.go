package proc

import (
	"strconv"
	"sync"
)

// Tail is an io.Writer that keeps the first and the last bytes written to
// it, within a budget: a worker's stderr, for crash reports. Safe for
// concurrent use.
//
// Both ends matter. A Go runtime crash report starts with what killed the
// process (the signal, its PC, "signal arrived during cgo execution", the
// goroutine that was in C) and then goes on for kilobytes of other
// goroutines and threads; a program that dies by log.Fatal says why in its
// last line. A tail alone loses the first kind, a head alone the second. So
// half the budget keeps the first bytes ever written and the other half the
// latest ones, and String says how much was dropped between them.
type Tail struct {
	mu    sync.Mutex
	hmax  int    // budget of head
	tmax  int    // budget of tail
	head  []byte // the first bytes, up to hmax
	tail  []byte // the latest bytes after head: its last tmax bytes count
	total int64
}

// NewTail returns a Tail keeping at most n bytes: the first n/2 and the last
// n-n/2.
func NewTail(n int) *Tail {
	n = max(n, 0)
	return &Tail{hmax: n / 2, tmax: n - n/2}
}

func (t *Tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(p)
	t.total += int64(n)
	if room := t.hmax - len(t.head); room > 0 {
		k := min(room, len(p))
		t.head = append(t.head, p[:k]...)
		p = p[k:]
	}
	if t.tmax == 0 || len(p) == 0 {
		return n, nil
	}
	if len(p) >= t.tmax {
		t.tail = append(t.tail[:0], p[len(p)-t.tmax:]...)
		return n, nil
	}
	// Compact only once the buffer holds twice the budget, so that many
	// small writes cost amortised O(len(p)), not a copy of the tail each.
	if len(t.tail)+len(p) > 2*t.tmax {
		keep := t.tail[len(t.tail)-(t.tmax-len(p)):]
		t.tail = append(t.tail[:0], keep...)
	}
	t.tail = append(t.tail, p...)
	return n, nil
}

// String returns the kept bytes: everything written, if it fits the budget;
// otherwise the head, a line "... [N bytes elided] ...", and the tail.
func (t *Tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	tail := t.tail
	if len(tail) > t.tmax {
		tail = tail[len(tail)-t.tmax:]
	}
	elided := t.total - int64(len(t.head)) - int64(len(tail))
	if elided == 0 {
		return string(t.head) + string(tail)
	}
	return string(t.head) + "\n... [" + strconv.FormatInt(elided, 10) + " bytes elided] ...\n" + string(tail)
}

// Total returns how many bytes were written in all.
func (t *Tail) Total() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.total
}
