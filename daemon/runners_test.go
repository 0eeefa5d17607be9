package daemon

import (
	"sync"
	"testing"

	"github.com/bulkhead-go/bulkhead/internal/testutil"
)

// Runners run every request handed to them, more than maxIdle at once too;
// close waits for a busy one and ends the idle ones (CheckLeaks: no
// goroutine is left).
func TestRunners(t *testing.T) {
	testutil.CheckLeaks(t)
	var r runners
	const n = 3 * maxIdle
	var started, ran sync.WaitGroup
	started.Add(n)
	ran.Add(n)
	release := make(chan struct{})
	for range n {
		r.run(func() {
			defer ran.Done()
			started.Done()
			<-release // all n at once
		})
	}
	started.Wait()
	close(release)
	ran.Wait()
	for range 2 * n { // on idle runners, or new ones
		done := make(chan struct{})
		r.run(func() { close(done) })
		<-done
	}
	busy, finished, closed := make(chan struct{}), make(chan struct{}), make(chan struct{})
	r.run(func() { <-busy; close(finished) })
	go func() { r.close(); close(closed) }()
	close(busy)
	<-closed
	select {
	case <-finished:
	default:
		t.Fatal("close returned before the busy runner had finished")
	}
}
