package testutil

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/bulkhead-go/bulkhead/internal/proc"
	"go.uber.org/goleak"
)

// HelperEnv names the helper process a test binary runs instead of its
// tests: every test binary of the module that starts itself as a worker
// has a TestMain that calls Main with its registry, as os/exec's tests do.
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

// Runner runs a test binary's tests and returns its exit code: a
// *testing.M, or one wrapped by VerifyLeaks.
type Runner interface{ Run() int }

// Main is a test binary's one entry point: it runs the helper that
// HelperEnv names from helpers, or def when HelperEnv is unset and
// isWorker says the process was started as a worker, and exits; or else
// the tests.
func Main(m Runner, helpers map[string]func(), def string, isWorker func() bool) {
	name := os.Getenv(HelperEnv)
	if name == "" && isWorker() {
		name = def
	}
	if name == "" {
		os.Exit(m.Run())
	}
	run := helpers[name]
	if run == nil {
		fmt.Fprintf(os.Stderr, "no helper process %q\n", name)
		os.Exit(2)
	}
	run()
	os.Exit(0)
}

// CheckLeaks registers a cleanup that checks that the test left no child
// process (zombies included), descriptor or goroutine behind. Cleanups run
// last registered first, so a pool or activator closed by a cleanup
// registered after this one is closed before the check.
func CheckLeaks(t testing.TB) {
	fds := countFDs(t)
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		if kids := Children(); len(kids) > 0 {
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

// Children lists this process's children, zombies included.
func Children() []string {
	var out []string
	for _, c := range proc.Children(os.Getpid()) {
		out = append(out, c.String())
	}
	return out
}

// VerifyLeaks wraps m so that a run whose tests all passed fails if
// goroutines outlive them, as goleak.VerifyTestMain does, for a package that
// checks goroutines once for the whole binary rather than in each test's
// CheckLeaks. Helper processes are not checked: Main runs them instead of m.
func VerifyLeaks(m Runner) Runner { return leakChecked{m} }

type leakChecked struct{ m Runner }

func (l leakChecked) Run() int {
	code := l.m.Run()
	if code != 0 {
		return code
	}
	if err := goleak.Find(); err != nil {
		fmt.Fprintf(os.Stderr, "goleak: errors on successful test run: %v\n", err)
		return 1
	}
	return 0
}
