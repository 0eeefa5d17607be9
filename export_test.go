package bulkhead

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/bulkhead-go/bulkhead/internal/proc"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

// This file is shared by the package's internal and external tests: the
// helper-process names, the leak checks and the log capture. The external
// package reaches it through the exported names below.

// HelperEnv names the helper process this test binary runs instead of its
// tests (see TestMain in helper_test.go, which holds the registry). A worker
// started without it runs the default helper worker.
const HelperEnv = "BULKHEAD_TEST_HELPER"

// HelperEnviron returns this process's environment with HelperEnv set to
// name, and env after it. Any HelperEnv already set is dropped rather than
// overridden: a Go program reads the first of two entries, os/exec keeps
// the last, and a helper's own children must not inherit its name.
func HelperEnviron(name string, env ...string) []string {
	e := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, HelperEnv+"=") })
	e = append(e, HelperEnv+"="+name)
	return append(e, env...)
}

// RunPolicyWorker and RunClassHelper are the internal package's helper
// processes, for the registry.
func RunPolicyWorker() { runPolicyWorker() }

// RunClassHelper runs a class server for the activation tests.
func RunClassHelper() { runClassHelper(os.Getenv(actClassesEnv)) }

// CheckLeaks is checkLeaks, for the external tests.
func CheckLeaks(t testing.TB) { checkLeaks(t) }

// Children is children, for the external tests.
func Children() []string { return children() }

// BlockForever is blockForever, for the external tests' helpers.
func BlockForever() { blockForever() }

// LogRecords is records, for the external tests.
type LogRecords = records

// First returns the first record with message msg, waiting for it.
func (l *records) First(t *testing.T, msg string) map[string]any {
	t.Helper()
	return l.wait(t, msg, 1)[0]
}

// All returns the records so far.
func (l *records) All() []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.recs)
}

// checkLeaks registers a cleanup that checks that the test left no child
// process (zombies included), descriptor or goroutine behind. Cleanups run
// last registered first, so a pool or activator closed by a cleanup
// registered after this one is closed before the check.
func checkLeaks(t testing.TB) {
	fds := countFDs(t)
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		if kids := children(); len(kids) > 0 {
			t.Errorf("child processes left behind: %v", kids)
		}
		if n := countFDs(t); n > fds {
			t.Errorf("descriptors leaked: %d before, %d after", fds, n)
		}
		goleak.VerifyNone(t, opt)
	})
}

func countFDs(t testing.TB) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// children lists this process's children, zombies included.
func children() []string {
	var out []string
	for _, c := range proc.Children(os.Getpid()) {
		out = append(out, c.String())
	}
	return out
}

// blockForever blocks in a system call, as a hung native library would; a
// bare select{} could trip the Go runtime's deadlock detector instead.
func blockForever() {
	var p [2]int
	unix.Pipe(p[:])
	unix.Read(p[0], make([]byte, 1))
}
