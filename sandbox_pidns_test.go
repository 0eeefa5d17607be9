package bulkhead_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/bulkhead-go/bulkhead"
)

// In a PID namespace of its own the worker is PID 2 (PID 1 is bulkhead's
// init), so that its crashes are reported as without one: SIGSEGV, and an
// abort(3) that a PID 1 would survive. Every process it started, a setsid
// child too, dies with it: none is left in its namespace.
func TestSandboxPIDNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("as root; TestSandboxUnprivileged checks that it fails closed")
	}
	for _, tc := range []struct {
		name string
		sb   bulkhead.Sandbox
	}{{"alone", bulkhead.Sandbox{IsolatePID: true}}, {"with a cgroup", bulkhead.Sandbox{IsolatePID: true, PidsMax: 256}}} {
		t.Run(tc.name, func(t *testing.T) { testPIDNamespace(t, tc.sb) })
	}
}

func testPIDNamespace(t *testing.T, sb bulkhead.Sandbox) {
	p := cgroupPool(t, sb)
	in := callWithin[[]string](t, p, "pidns")
	if in[0] != "2" || in[1] == nsOf(t, "pid") {
		t.Fatalf("worker's pid %s in %s (the dispatcher's: %s): want pid 2 in a PID namespace of its own", in[0], in[1], nsOf(t, "pid"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := p.Call(ctx, "setsid", filepath.Join(t.TempDir(), "pid"))
	var ce *bulkhead.CrashError
	if !errors.As(err, &ce) || ce.Signal != syscall.SIGSEGV {
		t.Fatalf("setsid then segv: %v, want a *CrashError for SIGSEGV", err)
	}
	if left := inPidNamespace(t, in[1]); len(left) > 0 {
		t.Fatalf("processes left in the dead worker's namespace %s: %v", in[1], left)
	}
	if in2 := callWithin[[]string](t, p, "pidns"); in2[0] != "2" || in2[1] == in[1] {
		t.Fatalf("the replacement: pid %s in %s, want pid 2 in a namespace of its own", in2[0], in2[1])
	}
	_, err = p.Call(ctx, "abort")
	if !errors.As(err, &ce) || ce.Signal != syscall.SIGABRT {
		t.Fatalf("abort: %v, want a *CrashError for SIGABRT", err)
	}
}

// inPidNamespace lists the live processes in the PID namespace ns.
func inPidNamespace(t *testing.T, ns string) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if l, err := os.Readlink("/proc/" + e.Name() + "/ns/pid"); err == nil && l == ns && !gone(e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out
}
