package bulkhead

import (
	"slices"
	"testing"

	"github.com/bulkhead-go/bulkhead/internal/testutil"
	"golang.org/x/sys/unix"
)

// This file is shared by the package's internal and external tests: the
// helper-process names, the leak checks and the log capture. The external
// package reaches it through the exported names below.

// HelperEnv names the helper process this test binary runs instead of its
// tests (testutil.Main; helper_test.go holds this binary's registry).
const HelperEnv = testutil.HelperEnv

// HelperEnviron is testutil.HelperEnviron, for the external tests.
func HelperEnviron(name string, env ...string) []string { return testutil.HelperEnviron(name, env...) }

// RunPolicyWorker is the internal package's helper process, for the
// registry.
func RunPolicyWorker() { runPolicyWorker() }

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

func checkLeaks(t testing.TB) { testutil.CheckLeaks(t) }

func children() []string { return testutil.Children() }

// blockForever blocks in a system call, as a hung native library would; a
// bare select{} could trip the Go runtime's deadlock detector instead.
func blockForever() {
	var p [2]int
	unix.Pipe(p[:])
	unix.Read(p[0], make([]byte, 1))
}
