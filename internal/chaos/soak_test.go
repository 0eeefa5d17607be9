package chaos

import (
	"context"
	"os"
	"strconv"
	"testing"
)

// The test binary doubles as the chaos worker.
func TestMain(m *testing.M) {
	switch {
	case IsWorker():
		RunWorker()
	case IsDriver():
		fakeDriverFailure() // for TestRunIsolatedReportsDispatcherFailures
		RunDriver()
	}
	os.Exit(m.Run())
}

// TestSoak runs a short soak and requires every invariant. CI sets
// BULKHEAD_CHAOS_CALLS for a longer run (about 20,000 calls).
func TestSoak(t *testing.T) {
	calls := 600
	if v := os.Getenv("BULKHEAD_CHAOS_CALLS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxCalls {
			t.Fatalf("BULKHEAD_CHAOS_CALLS=%q: want 1 to %d", v, MaxCalls)
		}
		calls = n
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// A high fault rate, so that a short run still meets every fault.
	res, err := Run(context.Background(), Options{Calls: calls, Workers: 2, FaultRate: 0.5, Seed: 7, Command: exe})
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK || res.AnsweredOnce != res.Calls {
		t.Fatalf("soak failed: %+v", res)
	}
	for _, f := range Faults() {
		if res.Faults[string(f)] == 0 {
			t.Errorf("fault %s never injected", f)
		}
	}
	if res.Quarantined == 0 || res.MemoryKills == 0 || res.Hung == 0 || res.Replayed == 0 {
		t.Errorf("a policy never acted: %+v", res)
	}
	t.Logf("%d calls in %.1fs: %v", res.Calls, res.Seconds, res.Outcomes)
}

// TestSandboxSoak runs a short sandboxed soak: every sandbox fault is
// stopped with its typed error, and nothing is left behind.
func TestSandboxSoak(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the sandboxed soak gives each worker a cgroup, which needs root here")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(context.Background(), Options{Calls: 400, Workers: 2, FaultRate: 0.5, Seed: 3, Command: exe, Sandbox: true})
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK || res.AnsweredOnce != res.Calls || res.Misclassified != 0 || res.LeakedProcesses != 0 || res.Zombies != 0 {
		t.Fatalf("sandboxed soak failed: %+v", res)
	}
	for _, f := range SandboxFaults() {
		if res.Faults[string(f)] == 0 {
			t.Errorf("fault %s never injected", f)
		}
	}
}

func TestOptionsValidation(t *testing.T) {
	tests := []Options{
		{Calls: -1, Command: "x"},
		{Calls: MaxCalls + 1, Command: "x"},
		{Workers: 1000, Command: "x"},
		{FaultRate: 1.5, Command: "x"},
		{Callers: -1, Command: "x"},
		{Sandbox: true, Race: Race{Enabled: true}, Command: "x"},
		{},
	}
	for i, o := range tests {
		if _, err := Run(context.Background(), o); err == nil {
			t.Errorf("options %d (%+v) accepted", i, o)
		}
	}
}
