package bulkhead_test

import (
	"context"
	"errors"
	"os"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/examples/crashy/native"
	"github.com/bulkhead-go/bulkhead/worker"
	"golang.org/x/sys/unix"
)

// runCrashReportWorker, the helper process "crashreport", is a plain SDK
// worker whose C code crashes the way a C library does, knowing nothing of
// Go. It is a worker of its own, so that the shared helper worker stays as
// it is.
func runCrashReportWorker() {
	_ = unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{}) // deliberate crashes: no core files
	s := &worker.Server{Name: "crashreport"}
	s.Handle("pid", func(context.Context, worker.Args) (any, error) { return os.Getpid(), nil })
	s.Handle("crash", worker.Func(func(_ context.Context, how string) (any, error) {
		switch how {
		case "segv":
			native.RawSegv()
		case "abort":
			native.RawAbort()
		case "badfree":
			native.BadFree()
		case "gopanic":
			done := make(chan struct{})
			go func() { panic("a Go bug in a goroutine") }()
			<-done
		case "handlerpanic":
			panic("a Go bug in the handler")
		case "encodepanic":
			return panickyResult{}, nil
		}
		return nil, errors.New("no such crash: " + how)
	}))
	s.Run()
}

// panickyResult is a result whose own encoder panics.
type panickyResult struct{}

func (panickyResult) MarshalCBOR() ([]byte, error) { panic("MarshalCBOR bug") }

// What a user sees when C code crashes in a Go worker: the Pool's CrashError
// names the signal that killed the C code, as it would for a C worker, and
// its Stderr keeps both the start of the Go runtime's report (the signal,
// "signal arrived during cgo execution", the C function's frame) and the
// end of what the worker wrote.
func TestCrashReportOfCCode(t *testing.T) {
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skip("the worker SDK reports the signal of a crash in C on linux/amd64 only")
	}
	const budget = 4096
	tests := []struct {
		how    string
		signal syscall.Signal
		reason string
		head   string   // Stderr starts with it
		frames []string // and has these in its head, in order
	}{
		{"segv", syscall.SIGSEGV, "signal segmentation fault", "SIGSEGV: segmentation violation\nPC=",
			[]string{"signal arrived during cgo execution", "_Cfunc_crashy_raw_segv", "native.RawSegv"}},
		{"abort", syscall.SIGABRT, "signal aborted", "SIGABRT: abort\nPC=",
			[]string{"signal arrived during cgo execution", "_Cfunc_crashy_raw_abort", "native.RawAbort"}},
		{"badfree", syscall.SIGABRT, "signal aborted", "free(): invalid pointer\nSIGABRT: abort\nPC=",
			[]string{"signal arrived during cgo execution", "_Cfunc_crashy_bad_free", "native.BadFree"}},
	}
	elision := regexp.MustCompile(`\n\.\.\. \[(\d+) bytes elided\] \.\.\.\n`)
	for _, tt := range tests {
		t.Run(tt.how, func(t *testing.T) {
			p := newPool(t, bulkhead.Config{StderrTail: budget}, bulkhead.HelperEnv+"=crashreport", "GOTRACEBACK=")
			pid := mustPID(t, p)
			_, err := p.Call(context.Background(), "crash", tt.how)
			var ce *bulkhead.CrashError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want *CrashError", err)
			}
			if ce.Signal != tt.signal || ce.ExitCode != -1 || ce.Phase != bulkhead.PhaseCall || ce.Killed || ce.PID != pid ||
				!strings.Contains(ce.Reason, tt.reason) {
				t.Errorf("CrashError signal %v exit %d phase %v killed %v pid %d reason %q; want %v, -1, call, false, %d, %q",
					ce.Signal, ce.ExitCode, ce.Phase, ce.Killed, ce.PID, ce.Reason, tt.signal, pid, tt.reason)
			}
			if ce.CoreDumped {
				t.Errorf("core dumped, with RLIMIT_CORE 0")
			}
			// The report is longer than the budget: the head, the elision,
			// and the tail.
			m := elision.FindStringSubmatchIndex(ce.Stderr)
			if m == nil {
				t.Fatalf("Stderr has no elision line:\n%s", ce.Stderr)
			}
			head, tail := ce.Stderr[:m[0]], ce.Stderr[m[1]:]
			if len(head) != budget/2 || len(tail) != budget/2 {
				t.Errorf("head %d bytes, tail %d; want %d each", len(head), len(tail), budget/2)
			}
			if !strings.HasPrefix(head, tt.head) {
				t.Errorf("Stderr starts %q, want %q", head[:min(len(head), 80)], tt.head)
			}
			rest := head
			for _, f := range tt.frames {
				i := strings.Index(rest, f)
				if i < 0 {
					t.Fatalf("the head of Stderr lacks %q (want %q in order):\n%s", f, tt.frames, head)
				}
				rest = rest[i+len(f):]
			}
			// The runtime's report ends with the registers of the last
			// thread it dumped, gs last (amd64): the tail is the very end.
			lines := strings.Split(strings.TrimSuffix(tail, "\n"), "\n")
			if last := lines[len(lines)-1]; !strings.HasSuffix(tail, "\n") || !strings.HasPrefix(last, "gs ") {
				t.Errorf("Stderr ends with %q, want the end of the runtime's report (the gs register)", last)
			}
			// The worker was replaced.
			if newPID := mustPID(t, p); newPID == pid {
				t.Errorf("the crashed worker %d still serves", pid)
			}
		})
	}
}

// Go's own failures are reported as they were before the SDK took over C's
// signals: a panic nobody recovers exits 2 with its message first, a
// handler's panic is a RemoteError, and so is a panic in encoding a result.
func TestCrashReportOfGoCode(t *testing.T) {
	tests := []struct {
		how   string
		check func(t *testing.T, err error)
	}{
		{"gopanic", func(t *testing.T, err error) {
			var ce *bulkhead.CrashError
			if !errors.As(err, &ce) || ce.Signal != 0 || ce.ExitCode != 2 || !strings.HasPrefix(ce.Stderr, "panic: a Go bug in a goroutine\n") {
				t.Fatalf("err = %#v, want a CrashError with exit status 2 and the panic first in Stderr", err)
			}
		}},
		{"handlerpanic", func(t *testing.T, err error) {
			var re *bulkhead.RemoteError
			if !errors.As(err, &re) || re.Code != bulkhead.CodePanic || !strings.Contains(re.Message, "a Go bug in the handler") {
				t.Fatalf("err = %v, want a RemoteError with CodePanic", err)
			}
		}},
		{"encodepanic", func(t *testing.T, err error) {
			var re *bulkhead.RemoteError
			want := "panic while encoding the answer (bulkhead_test.panickyResult): MarshalCBOR bug"
			if !errors.As(err, &re) || re.Code != bulkhead.CodePanic || re.Message != want {
				t.Fatalf("err = %v, want a RemoteError with CodePanic and message %q", err, want)
			}
			stack, _ := re.Details.(map[any]any)["stack"].(string)
			if !strings.Contains(stack, "MarshalCBOR") {
				t.Fatalf("details.stack %q: want the encoder's frame", stack)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.how, func(t *testing.T) {
			p := newPool(t, bulkhead.Config{}, bulkhead.HelperEnv+"=crashreport", "GOTRACEBACK=")
			pid := mustPID(t, p)
			_, err := p.Call(context.Background(), "crash", tt.how)
			tt.check(t, err)
			// Each of them ends the worker: it is replaced.
			if newPID := mustPID(t, p); newPID == pid {
				t.Errorf("worker %d still serves after %s", pid, tt.how)
			}
		})
	}
}
