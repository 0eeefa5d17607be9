package chaos

import (
	"os"
	"runtime"
	"time"

	"github.com/bulkhead-go/bulkhead/internal/proc"
)

func countFDs() int {
	ents, _ := os.ReadDir("/proc/self/fd")
	return len(ents)
}

// settle waits, briefly, for descriptors and goroutines to return to their
// baseline (exiting goroutines take a moment to be gone) and reports what
// is left above it.
func settle(fds, gs int) (int, int) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		df, dg := countFDs()-fds, runtime.NumGoroutine()-gs
		if (df <= 0 && dg <= 0) || time.Now().After(deadline) {
			return max(df, 0), max(dg, 0)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// children counts this process's live children and zombies.
func children() (live, zombies int) {
	for _, c := range proc.Children(os.Getpid()) {
		if c.Zombie() {
			zombies++
		} else {
			live++
		}
	}
	return live, zombies
}
