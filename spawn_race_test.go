package bulkhead

import (
	"sync/atomic"
	"syscall"
	"testing"
)

// A worker that exits between its HELLO and the pool's taking it in (its
// onExit finds it unregistered) is a start failure: it is cleaned up, not
// kept as a serving worker with its socket and marker open, and another
// starts in its place.
func TestWorkerExitsBeforeTakenIn(t *testing.T) {
	var n atomic.Int32
	h := hooks{launched: func(w *workerProc) {
		if n.Add(1) == 2 { // the first worker's replacement
			w.Proc.Kill()
			<-w.Proc.Exited()
		}
	}}
	p, _ := testPool(t, Config{Workers: 1}, h)
	first := pidOf(t, p)
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	until(t, "a third worker", func() bool { return n.Load() >= 3 })
	if pid := pidOf(t, p); pid == first {
		t.Fatalf("the killed worker %d still serves", pid)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for w := range p.workers {
		if w.Exited.Load() {
			t.Errorf("worker %d exited but is kept %v", w.PID, w.state)
		}
	}
}
