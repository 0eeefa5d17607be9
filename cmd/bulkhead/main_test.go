package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bulkhead-go/bulkhead/internal/proc"
	"github.com/bulkhead-go/bulkhead/internal/testutil"
	"github.com/bulkhead-go/bulkhead/worker"
)

// The test binary's helper processes (internal/testutil's registry): "cli"
// runs the CLI on its arguments, for tests that need a dispatcher, a node
// or a storm client of their own. It is also the default, for processes
// started as workers: the demo re-executes os.Executable() with the
// "worker" subcommand, and the storm's class server with "storm", and here
// that is this binary. Goroutine leaks are checked for the whole binary.
func TestMain(m *testing.M) {
	testutil.Main(testutil.VerifyLeaks(m), map[string]func(){"cli": runCLI}, "cli", worker.IsWorker)
}

// runCLI runs the CLI on the process's arguments and exits with its code.
func runCLI() { os.Exit(execute(context.Background(), os.Args[1:], os.Stdout, os.Stderr)) }

// run runs the CLI in-process.
func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = execute(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestRootUsage(t *testing.T) {
	tests := []struct {
		args []string
		code int
		want string // in stdout for code 0, stderr otherwise
	}{
		{nil, 0, "demo"},
		{[]string{"--help"}, 0, "Available Commands"},
		{[]string{"nosuch"}, 2, `unknown command "nosuch"`},
		{[]string{"--nosuch"}, 2, "unknown flag"},
		{[]string{"conform"}, 2, "want the worker's command after --"},
		{[]string{"conform", "./w"}, 2, "want the worker's command after --"},
		{[]string{"conform", "--timeout", "0s", "--", "./w"}, 2, "--timeout must be positive"},
		{[]string{"conform", "--only", "PING", "--", "/nonexistent/worker"}, 1, "checks failed"},
	}
	for _, tt := range tests {
		code, out, errs := run(t, tt.args...)
		got := out
		if tt.code != 0 {
			got = errs
		}
		if code != tt.code || !strings.Contains(got, tt.want) {
			t.Errorf("bulkhead %q: exit %d, output %q; want exit %d and %q", tt.args, code, got, tt.code, tt.want)
		}
	}
	// The worker subcommand is not for people.
	if _, out, _ := run(t, "--help"); strings.Contains(out, "\n  "+workerArg+" ") {
		t.Errorf("help lists the hidden worker subcommand:\n%s", out)
	}
}

// One "bulkhead: " per message, however deep the library's errors nest.
func TestErrorsSayBulkheadOnce(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "c.toml")
	text := "socket = \"/tmp/x.sock\"\n[[pool]]\nname = \"u\"\ncommand = \"/bin/true\"\n[pool.sandbox]\nmemory_max = -1\n"
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"serve", "--check", "--config", cfg},
		{"call", "--socket", "/nonexistent/s.sock", "demo", "echo"},
	} {
		if code, _, errs := run(t, args...); code != 1 || strings.Count(errs, "bulkhead: ") != 1 {
			t.Errorf("bulkhead %q: exit %d, %q; want exit 1 and one \"bulkhead: \"", args, code, errs)
		}
	}
}

// A report of several config errors gives each its own line, each with
// one "bulkhead: ", so that a line read alone (grep) says what it is.
func TestErrorsSayBulkheadOncePerLine(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "c.toml")
	text := "socket = \"/tmp/x.sock\"\nwrokers = 1\n[[pool]]\nname = \"u\"\ncommand = \"/bin/true\"\nkill_grace = 5\n[natz]\nurl = \"x\"\n"
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errs := run(t, "serve", "--check", "--config", cfg)
	lines := strings.Split(strings.TrimSuffix(errs, "\n"), "\n")
	if code != 1 || len(lines) < 3 {
		t.Fatalf("exit %d, %q; want exit 1 and at least 3 errors", code, errs)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "bulkhead: "+cfg+":") || strings.Count(l, "bulkhead: ") != 1 {
			t.Errorf("line %q: want one \"bulkhead: \" and then the file:line", l)
		}
	}
}

// childrenOf lists pid's child processes, zombies included.
func childrenOf(pid int) []int {
	var out []int
	for _, c := range proc.Children(pid) {
		out = append(out, c.PID)
	}
	return out
}

// checkLeaks fails the test if it leaves a child process or a descriptor
// behind (goroutines are checked for the whole binary by TestMain).
func checkLeaks(t *testing.T) {
	fds := countFDs(t)
	t.Cleanup(func() {
		if kids := childrenOf(os.Getpid()); len(kids) > 0 {
			t.Errorf("child processes left behind: %v", kids)
		}
		if n := countFDs(t); n > fds {
			t.Errorf("descriptors leaked: %d before, %d after", fds, n)
		}
	})
}

func countFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
