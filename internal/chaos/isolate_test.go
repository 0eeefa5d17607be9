package chaos

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// fakeDriverEnv makes the test binary, run as a driver, fail as a
// dispatcher might: "panic", "segv" (a nil dereference: a runtime fault),
// "hang", or "garbage" (exit 0 without a result); or report that it cannot
// run the soak ("cannot").
const fakeDriverEnv = "BULKHEAD_CHAOS_TEST_DRIVER_FAILURE"

func fakeDriverFailure() {
	switch os.Getenv(fakeDriverEnv) {
	case "panic":
		panic("slice bounds out of range [:-1] (synthetic)")
	case "segv":
		var p *struct{ n int }
		os.Stdout.WriteString(string(rune(p.n)))
	case "hang":
		select {}
	case "garbage":
		os.Stdout.WriteString("not json\n")
		os.Exit(0)
	case "cannot":
		os.Stderr.WriteString("chaos driver: starting the pool: no such worker\n")
		os.Exit(driverCannotRun)
	}
}

func TestRunIsolatedReportsDispatcherFailures(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		failure        string
		crashes, hangs int
		segments       int           // a hang outlasts the run's Timeout: no segment follows
		timeout        time.Duration // the run's
		want           string        // in the examples
	}{
		{"panic", 3, 0, 3, time.Minute, "panic: slice bounds out of range"},
		{"segv", 3, 0, 3, time.Minute, "invalid memory address or nil pointer dereference"},
		{"garbage", 3, 0, 3, time.Minute, "exit status 0, but no result"},
		{"hang", 0, 1, 1, time.Second, "SIGQUIT: quit"},
	}
	for _, tt := range tests {
		t.Run(tt.failure, func(t *testing.T) {
			t.Setenv(fakeDriverEnv, tt.failure)
			o := Options{Calls: 30, Workers: 1, Command: exe, Timeout: tt.timeout}
			res, err := RunIsolated(context.Background(), o, Isolation{SegmentCalls: 10, Grace: time.Second, StderrDir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			if res.OK || res.DispatcherCrashes != tt.crashes || res.DispatcherHangs != tt.hangs ||
				res.Segments != tt.segments || res.Unaudited != 10*tt.segments || res.Calls != 0 {
				t.Fatalf("got %+v", res)
			}
			ex := res.DispatcherCrashExamples
			if len(ex) != tt.segments {
				t.Fatalf("%d examples, want %d", len(ex), tt.segments)
			}
			for _, e := range ex {
				if !strings.Contains(e, tt.want) {
					t.Errorf("example %q does not say %q", e, tt.want)
				}
			}
		})
	}
}

// TestRunIsolated runs a short soak in driver processes, two segments.
func TestRunIsolated(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Calls: 60, Workers: 2, FaultRate: 0.3, Seed: 3, Command: exe}
	res, err := RunIsolated(context.Background(), o, Isolation{SegmentCalls: 40})
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK || res.Calls != 60 || res.AnsweredOnce != 60 || res.Segments != 2 || res.DispatcherCrashes != 0 {
		t.Fatalf("got %+v", res)
	}
	n := 0
	for _, v := range res.Faults {
		n += v
	}
	if n != 60 {
		t.Errorf("faults of %d calls merged, want 60: %v", n, res.Faults)
	}
}

func TestRunIsolatedCannotRun(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(fakeDriverEnv, "cannot")
	o := Options{Calls: 5, Workers: 1, Command: exe}
	_, err = RunIsolated(context.Background(), o, Isolation{})
	if err == nil || !strings.Contains(err.Error(), "could not run the soak: chaos driver: starting the pool: no such worker") {
		t.Errorf("err = %v, want the driver's could-not-run report", err)
	}
}

func TestExcerpt(t *testing.T) {
	tests := []struct{ stderr, want string }{
		{"log line\npanic: boom\n\ngoroutine 1", "panic: boom\n\ngoroutine 1"},
		{`time=x msg="worker crashed" stderr_tail="panic: in a worker\n"` + "\nunexpected fault address 0x1\nfatal error: fault", "unexpected fault address 0x1\nfatal error: fault"},
		{"fatal error: concurrent map writes", "fatal error: concurrent map writes"},
		{"SIGQUIT: quit\nPC=0x1", "SIGQUIT: quit\nPC=0x1"},
		{"just a tail", "just a tail"},
	}
	for _, tt := range tests {
		if got := excerpt([]byte(tt.stderr)); got != tt.want {
			t.Errorf("excerpt(%q) = %q, want %q", tt.stderr, got, tt.want)
		}
	}
}
