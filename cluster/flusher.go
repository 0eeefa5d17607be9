package cluster

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// flusher makes the start markers of concurrent calls share flushes: a
// call that published its "started" waits for one PING/PONG written after
// it, and a PING in flight serves every call that registered before it
// was written. One round trip per batch instead of one per call.
type flusher struct {
	nc *nats.Conn
	wg sync.WaitGroup // the flushing goroutine; its owner waits

	mu      sync.Mutex
	waiting []chan error
	running bool
}

// flush returns once the NATS server has had everything this node
// published before the call, or ctx ended. With no flush in flight, the
// caller flushes itself (no goroutine hop); calls that come meanwhile
// wait, and a goroutine flushes for them, batch by batch.
func (f *flusher) flush(ctx context.Context) error {
	f.mu.Lock()
	if !f.running {
		f.running = true
		f.mu.Unlock()
		err := flush(ctx, f.nc)
		f.mu.Lock()
		if len(f.waiting) == 0 {
			f.running = false
		} else {
			f.wg.Add(1)
			go f.loop()
		}
		f.mu.Unlock()
		return err
	}
	ch := make(chan error, 1)
	f.waiting = append(f.waiting, ch)
	f.mu.Unlock()
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// loop flushes for the waiting calls, batch by batch, until none waits.
func (f *flusher) loop() {
	defer f.wg.Done()
	for {
		f.mu.Lock()
		batch := f.waiting
		f.waiting = nil
		if len(batch) == 0 {
			f.running = false
			f.mu.Unlock()
			return
		}
		f.mu.Unlock()
		err := f.nc.FlushTimeout(5 * time.Second)
		for _, ch := range batch {
			ch <- err
		}
	}
}
