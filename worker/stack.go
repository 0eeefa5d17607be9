package worker

import (
	"os"
	"os/signal"
	"runtime"
	"sync"
	"syscall"

	"github.com/bulkhead-go/bulkhead/internal/wire"
)

// answerStacks has SIGUSR2 answered with a STACK frame, a dump of every
// goroutine's stack, by a goroutine of its own: the goroutine running a
// call may be blocked in C, and runtime.Stack shows it there, down to the
// cgo call (the C function's name). It returns the function that stops
// answering; SIGUSR2 is ignored from then on, so that a request that comes
// as the worker exits does not kill it.
func (c *conn) answerStacks() (stop func()) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGUSR2)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var b wire.Builder
		for {
			select {
			case <-done:
				return
			case <-sigs:
				c.sendStack(&b)
			}
		}
	}()
	return func() {
		signal.Ignore(syscall.SIGUSR2)
		signal.Stop(sigs)
		close(done)
		wg.Wait()
	}
}

// sendStack writes one STACK frame, under the write lock, so that it never
// falls between the bytes of another frame. A write error is left to the
// serving loop, which sees the connection fail.
func (c *conn) sendStack(b *wire.Builder) {
	buf := make([]byte, wire.MaxStackDump)
	n := runtime.Stack(buf, true)
	if err := b.Value(wire.TypeStack, 0, string(buf[:n]), c.env.maxFrame); err != nil {
		return // over a tiny frame limit: there is no STACK to send
	}
	c.wmu.Lock()
	var segs [][]byte
	_ = b.Flush(c.wr, &segs)
	c.wmu.Unlock()
	b.Reset()
}
