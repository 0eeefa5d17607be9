// Package hostile holds the hostile-worker suite (hostile_test.go): a worker
// in C (hostile.c) that lies to the dispatcher in every way PROTOCOL.md
// allows it to be checked, run against a real pool over both transports.
//
// This file is the reusable part: leak checks for tests that start worker
// processes.
package hostile

import (
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/bulkhead-go/bulkhead/internal/proc"
	"go.uber.org/goleak"
)

// Snapshot is what a test that starts processes must leave as it found:
// descriptors, goroutines, child processes (zombies included), and heap.
type Snapshot struct {
	fds        int
	goroutines goleak.Option
	heap       runtime.MemStats
}

// Take records the current state. Take it before starting anything.
func Take(t testing.TB) *Snapshot {
	t.Helper()
	s := &Snapshot{fds: countFDs(t), goroutines: goleak.IgnoreCurrent()}
	runtime.GC()
	runtime.ReadMemStats(&s.heap)
	return s
}

// Leaks reports, as test errors, descriptors, goroutines and child processes
// left behind since s was taken. Goroutines and processes are given until
// grace has passed to go away.
func (s *Snapshot) Leaks(t testing.TB, grace time.Duration) {
	t.Helper()
	deadline := time.Now().Add(grace)
	for {
		kids := proc.Children(os.Getpid())
		if len(kids) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("child processes left behind (pid:state): %v", kids)
			break
		}
		time.Sleep(5 * time.Millisecond) // polling /proc: nothing to wait on
	}
	if err := goleak.Find(s.goroutines); err != nil {
		t.Errorf("goroutines left behind: %v", err)
	}
	if n := countFDs(t); n > s.fds {
		t.Errorf("descriptors leaked: %d before, %d after", s.fds, n)
	}
}

// HeapGrowth returns how much the live heap grew since s was taken, after a
// collection, and how much was allocated in all.
func (s *Snapshot) HeapGrowth() (live int64, allocated uint64) {
	// Twice: what sync.Pools held survives the first collection.
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc) - int64(s.heap.HeapAlloc), m.TotalAlloc - s.heap.TotalAlloc
}

// ProcessGone waits until pid has exited (or is a zombie, which is not ours
// to reap) for up to grace, and reports whether it did.
func ProcessGone(pid int, grace time.Duration) bool {
	deadline := time.Now().Add(grace)
	for {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return true
		}
		var state string
		for i := len(b) - 1; i >= 0; i-- {
			if b[i] == ')' && i+2 < len(b) {
				state = string(b[i+2])
				break
			}
		}
		if state == "Z" || state == "X" {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond) // polling /proc: nothing to wait on
	}
}

func countFDs(t testing.TB) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
