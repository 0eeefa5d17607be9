package daemon

import "sync"

// runners runs requests on goroutines that outlive them: a goroutine that
// has run a call has grown its stack to what a call needs, and the next
// request reuses it instead of a new goroutine that grows its stack again
// (newstack and copystack were a few percent of a null call through the
// daemon: BenchmarkDaemon). At most maxIdle wait for work; the rest end.
// The Server owns them: Shutdown, once every connection has ended, ends
// the idle ones and waits for all of them.
type runners struct {
	wg sync.WaitGroup

	mu     sync.Mutex // guards the fields below
	idle   []chan func()
	closed bool
}

// maxIdle bounds the runners waiting for work (each holds its stack).
const maxIdle = 32

// run runs f on an idle runner, or on a new one.
func (r *runners) run(f func()) {
	r.mu.Lock()
	if n := len(r.idle); n > 0 {
		ch := r.idle[n-1]
		r.idle = r.idle[:n-1]
		r.mu.Unlock()
		ch <- f // buffered: never blocks
		return
	}
	r.wg.Add(1)
	r.mu.Unlock()
	go r.loop(f)
}

// loop runs f, then what run hands it, until it is not needed.
func (r *runners) loop(f func()) {
	defer r.wg.Done()
	ch := make(chan func(), 1)
	for f != nil {
		f()
		r.mu.Lock()
		if r.closed || len(r.idle) >= maxIdle {
			r.mu.Unlock()
			return
		}
		r.idle = append(r.idle, ch)
		r.mu.Unlock()
		f = <-ch
	}
}

// close ends the idle runners and waits for every runner; nothing may be
// run after it.
func (r *runners) close() {
	r.mu.Lock()
	r.closed = true
	idle := r.idle
	r.idle = nil
	r.mu.Unlock()
	for _, ch := range idle {
		close(ch)
	}
	r.wg.Wait()
}
