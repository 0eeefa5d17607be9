package native_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/bulkhead-go/bulkhead/examples/crashy/native"
	"github.com/bulkhead-go/bulkhead/internal/testutil"
)

// modeEnv selects what the "native" helper process does (runHelperProcess).
// It writes progress lines to fd 3 (reportFD).
const (
	modeEnv   = "CRASHY_HELPER_MODE"
	reportFD  = 3
	leakBytes = 64 << 20
)

// unreachableStatus is the exit status of a helper whose fault returned.
const unreachableStatus = 100

// The test binary's helper processes come from the module's one registry
// (internal/testutil); none is a pool worker.
func TestMain(m *testing.M) {
	testutil.Main(m, map[string]func(){"native": runHelperProcess}, "", func() bool { return false })
}

// runHelperProcess is the body of the child processes started by the tests
// below.
func runHelperProcess() {
	mode := os.Getenv(modeEnv)
	// No core files from the deliberate crashes.
	_ = syscall.Setrlimit(syscall.RLIMIT_CORE, &syscall.Rlimit{})
	report := os.NewFile(reportFD, "report")
	say := func(s string) {
		if _, err := fmt.Fprintln(report, s); err != nil {
			os.Exit(99)
		}
	}

	name, arg, _ := strings.Cut(mode, ":")
	switch name {
	case "segv":
		say("segv")
		native.Segv()
	case "abort":
		say("abort")
		native.Abort()
	case "exit":
		code, err := strconv.Atoi(arg)
		if err != nil {
			say("bad exit code: " + err.Error())
			os.Exit(98)
		}
		say("exit")
		native.Exit(code)
	case "hang":
		say("hanging")
		native.Hang()
	case "rawsegv":
		say("rawsegv")
		native.RawSegv()
	case "rawabort":
		say("rawabort")
		native.RawAbort()
	case "badfree":
		say("badfree")
		native.BadFree()
	case "fault":
		f, err := native.ParseFault(arg)
		if err != nil {
			say(err.Error())
			os.Exit(98)
		}
		if f == native.FaultHang {
			say("hanging")
		} else {
			say("fault " + f.String())
		}
		f.Trigger()
		say("returned")
		os.Exit(0)
	case "leak":
		before := rss()
		native.Leak(leakBytes)
		say(strconv.FormatInt(rss()-before, 10))
		os.Exit(0)
	default:
		say("unknown mode " + mode)
		os.Exit(98)
	}
	os.Exit(unreachableStatus)
}

// rss returns the resident set size of this process in bytes.
func rss() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		panic(err)
	}
	f := strings.Fields(string(b))
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		panic(err)
	}
	return pages * int64(os.Getpagesize())
}

// child is a running helper process.
type child struct {
	cmd    *exec.Cmd
	report *bufio.Reader
	stderr bytes.Buffer
}

func startHelper(t *testing.T, mode string) *child {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: exec.Command(os.Args[0])}
	c.cmd.Env = testutil.HelperEnviron("native", modeEnv+"="+mode)
	c.cmd.ExtraFiles = []*os.File{w} // fd 3 in the child
	c.cmd.Stderr = &c.stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close() // only the child holds the write end: EOF on r means it is gone
	t.Cleanup(func() { r.Close() })
	c.report = bufio.NewReader(r)
	return c
}

// wait reaps the child and returns its wait status.
func (c *child) wait(t *testing.T) syscall.WaitStatus {
	t.Helper()
	err := c.cmd.Wait()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return c.cmd.ProcessState.Sys().(syscall.WaitStatus)
}

func describe(ws syscall.WaitStatus) string {
	switch {
	case ws.Signaled():
		return "killed by " + ws.Signal().String()
	case ws.Exited():
		return "exited with status " + strconv.Itoa(ws.ExitStatus())
	}
	return fmt.Sprintf("wait status %#x", uint32(ws))
}

// TestDeaths checks the exact way a process dies for each native fault.
func TestDeaths(t *testing.T) {
	tests := []struct {
		mode   string
		first  string         // first line the child reports before the fault
		signal syscall.Signal // expected death by signal, or 0
		status int            // expected exit status when signal is 0
		hangs  bool           // the child must stay alive until SIGKILL
	}{
		{mode: "segv", first: "segv", signal: syscall.SIGSEGV},
		{mode: "abort", first: "abort", signal: syscall.SIGABRT},
		{mode: "exit:7", first: "exit", status: 7},
		{mode: "exit:0", first: "exit", status: 0},
		{mode: "exit:255", first: "exit", status: 255},
		{mode: "hang", first: "hanging", hangs: true, signal: syscall.SIGKILL},
		{mode: "fault:segv", first: "fault segv", signal: syscall.SIGSEGV},
		{mode: "fault:abort", first: "fault abort", signal: syscall.SIGABRT},
		{mode: "fault:exit", first: "fault exit", status: native.FaultExitCode},
		{mode: "fault:hang", first: "hanging", hangs: true, signal: syscall.SIGKILL},
		{mode: "fault:none", first: "fault none", status: 0},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			t.Parallel()
			c := startHelper(t, tt.mode)
			line, err := c.report.ReadString('\n')
			if err != nil {
				c.cmd.Process.Kill()
				c.wait(t)
				t.Fatalf("reading the child's report: %v; stderr:\n%s", err, c.stderr.String())
			}
			if got := strings.TrimSpace(line); got != tt.first {
				t.Errorf("child reported %q, want %q", got, tt.first)
			}
			if tt.hangs {
				// The child said "hanging" right before entering the C
				// loop. If it had returned or died since, it would not
				// now die by our SIGKILL but by whatever ended it.
				if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatalf("SIGKILL: %v", err)
				}
			}
			rest, _ := io.ReadAll(c.report)
			ws := c.wait(t)
			want := fmt.Sprintf("exited with status %d", tt.status)
			if tt.signal != 0 {
				want = "killed by " + tt.signal.String()
			}
			if got := describe(ws); got != want {
				t.Errorf("child %s, want %s\nreport after first line: %q\nstderr:\n%s",
					got, want, rest, c.stderr.String())
			}
			if tt.mode == "fault:none" {
				if got := string(rest); got != "returned\n" {
					t.Errorf("after FaultNone.Trigger the child reported %q, want %q", got, "returned\n")
				}
			} else if len(rest) != 0 {
				t.Errorf("the fault returned: child reported %q afterwards", rest)
			}
		})
	}
}

// TestSegvIsARealSignal makes sure the Go runtime did not turn the crash into
// its own "fatal error" exit: the child must print no Go traceback.
func TestSegvIsARealSignal(t *testing.T) {
	for _, mode := range []string{"segv", "abort"} {
		t.Run(mode, func(t *testing.T) {
			c := startHelper(t, mode)
			io.ReadAll(c.report)
			ws := c.wait(t)
			if !ws.Signaled() {
				t.Fatalf("child %s, want death by signal", describe(ws))
			}
			for _, s := range []string{"fatal error", "goroutine ", "SIGSEGV: segmentation violation", "SIGABRT: abort"} {
				if strings.Contains(c.stderr.String(), s) {
					t.Errorf("stderr contains Go runtime crash output %q:\n%s", s, c.stderr.String())
				}
			}
		})
	}
}

// The raw faults leave the signal to the Go runtime, as a C library that
// knows nothing of Go would: it reports the crash and exits with status 2.
// (The worker SDK changes that for workers; this is the plain Go program.)
func TestRawFaultsAreCaughtByGo(t *testing.T) {
	tests := []struct {
		mode   string
		stderr []string // in order
	}{
		{"rawsegv", []string{"SIGSEGV: segmentation violation", "signal arrived during cgo execution", "_Cfunc_crashy_raw_segv"}},
		{"rawabort", []string{"SIGABRT: abort", "signal arrived during cgo execution", "_Cfunc_crashy_raw_abort"}},
		{"badfree", []string{"free(): invalid pointer", "SIGABRT: abort", "signal arrived during cgo execution", "_Cfunc_crashy_bad_free"}},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			t.Parallel()
			c := startHelper(t, tt.mode)
			io.ReadAll(c.report)
			ws := c.wait(t)
			if !ws.Exited() || ws.ExitStatus() != 2 {
				t.Errorf("child %s, want exit status 2 from the Go runtime", describe(ws))
			}
			rest := c.stderr.String()
			for _, s := range tt.stderr {
				i := strings.Index(rest, s)
				if i < 0 {
					t.Fatalf("stderr lacks %q (in order %q):\n%s", s, tt.stderr, c.stderr.String())
				}
				rest = rest[i+len(s):]
			}
		})
	}
}

func TestLeakGrowsRSS(t *testing.T) {
	c := startHelper(t, "leak")
	line, err := c.report.ReadString('\n')
	ws := c.wait(t)
	if err != nil || !ws.Exited() || ws.ExitStatus() != 0 {
		t.Fatalf("leak child %s, report %q (%v); stderr:\n%s", describe(ws), line, err, c.stderr.String())
	}
	grew, err := strconv.ParseInt(strings.TrimSpace(line), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	// Every page was written, so nearly all of it must be resident.
	if grew < leakBytes*9/10 {
		t.Errorf("RSS grew by %d bytes after Leak(%d), want at least %d", grew, leakBytes, leakBytes*9/10)
	}
}

func TestChecksum(t *testing.T) {
	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	tests := []struct {
		name string
		in   []byte
	}{
		{"nil", nil},
		{"empty", []byte{}},
		{"a", []byte("a")},
		{"foobar", []byte("foobar")},
		{"zeros", make([]byte, 17)},
		{"1MiB", big},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := fnv.New64a()
			h.Write(tt.in)
			want := int64(h.Sum64())
			if got := native.Checksum(tt.in); got != want {
				t.Errorf("Checksum = %#x, want FNV-1a %#x", got, want)
			}
		})
	}
	// A known vector: FNV-1a 64 of "a".
	if got := uint64(native.Checksum([]byte("a"))); got != 0xaf63dc4c8601ec8c {
		t.Errorf(`Checksum("a") = %#x, want 0xaf63dc4c8601ec8c`, got)
	}
}

func TestWriteFD(t *testing.T) {
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"small", []byte("garbage frame\x00\xff")},
		{"larger than a pipe buffer", bytes.Repeat([]byte("0123456789abcdef"), 1<<14)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			got := make(chan []byte)
			go func() {
				b, _ := io.ReadAll(r)
				got <- b
			}()
			werr := native.WriteFD(int(w.Fd()), tt.data)
			w.Close()
			if werr != nil {
				t.Fatalf("WriteFD: %v", werr)
			}
			if b := <-got; !bytes.Equal(b, tt.data) {
				t.Errorf("read back %d bytes, want the %d written", len(b), len(tt.data))
			}
		})
	}
	t.Run("bad fd", func(t *testing.T) {
		err := native.WriteFD(-1, []byte("x"))
		if !errors.Is(err, syscall.EBADF) {
			t.Errorf("WriteFD(-1): %v, want EBADF", err)
		}
	})
}

func TestParseFault(t *testing.T) {
	tests := []struct {
		in      string
		want    native.Fault
		wantErr bool
	}{
		{"", native.FaultNone, false},
		{"none", native.FaultNone, false},
		{"segv", native.FaultSegv, false},
		{"abort", native.FaultAbort, false},
		{"exit", native.FaultExit, false},
		{"hang", native.FaultHang, false},
		{"SEGV", native.FaultNone, true},
		{"boom", native.FaultNone, true},
	}
	for _, tt := range tests {
		got, err := native.ParseFault(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseFault(%q) = %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
		if err == nil {
			if back, err := native.ParseFault(got.String()); err != nil || back != got {
				t.Errorf("ParseFault(%q.String()) = %q, %v", got, back, err)
			}
		}
	}
}

func TestTriggerNoneAndUnknown(t *testing.T) {
	native.FaultNone.Trigger() // returns
	defer func() {
		if recover() == nil {
			t.Error("Trigger of an unknown fault did not panic")
		}
	}()
	native.Fault("boom").Trigger()
}
