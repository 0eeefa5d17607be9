package bulkhead

import "time"

// hooks let tests drive the time-based policies and force interleavings.
// The zero value is production behaviour.
type hooks struct {
	now        func() time.Time             // the policies' clock
	noMonitor  bool                         // tests call sweep themselves
	rss        func(pid int) (int64, error) // resident memory, instead of /proc
	overMemory func(pid int)                // after a worker is found over MaxMemory, before the pool acts
	queueTimer func() <-chan time.Time      // the QueueTimeout timer, instead of a real one
	timedOut   func()                       // after QueueTimeout fired, before the waiter is removed
	spawning   func(spare bool)             // a spawn goroutine is about to launch a worker
	launched   func(w *workerProc)          // a worker said HELLO; the pool has not taken it in yet
	noMetrics  bool                         // Call counts nothing (to measure what counting costs)
}
