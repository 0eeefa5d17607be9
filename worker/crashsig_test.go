//go:build linux && amd64

package worker

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/bulkhead-go/bulkhead/internal/testutil"
	"golang.org/x/sys/unix"
)

// crashModeEnv selects what the "crashsig" helper process does.
const crashModeEnv = "CRASHSIG_MODE"

func helpers() map[string]func() { return map[string]func(){"crashsig": runCrashSignalsHelper} }

// runCrashSignalsHelper is the body of the child processes of
// TestCrashSignals. This test binary has no C code, so init did not install
// the handler; the child installs it as init would in a cgo worker, except
// in mode "uninstalled".
func runCrashSignalsHelper() {
	mode := os.Getenv(crashModeEnv)
	_ = unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{}) // deliberate crashes: no core files
	if mode != "uninstalled" {
		installCrashSignals(os.Getenv("GOTRACEBACK"))
	}
	runtime.LockOSThread()
	// raise sends sig to this thread, as abort() and raise() in C do
	// (si_code SI_TKILL): the runtime reports it as fatal, as it does a
	// fault in C.
	raise := func(sig syscall.Signal) { _ = unix.Tgkill(unix.Getpid(), unix.Gettid(), sig) }
	switch mode {
	case "segv", "uninstalled":
		raise(syscall.SIGSEGV)
	case "abort":
		raise(syscall.SIGABRT)
	case "bus":
		raise(syscall.SIGBUS)
	case "gopanic":
		done := make(chan struct{})
		go func() { panic("a Go bug") }()
		<-done
	case "recovered":
		// A fault in Go code is a panic, recovered here; the handler's
		// claim must end with it, or the SIGABRT raised next, on
		// another thread, would not be claimed and would exit 2.
		func() {
			defer func() { _ = recover() }()
			var p *int
			*p = 1
		}()
		done := make(chan struct{})
		go func() {
			runtime.LockOSThread()
			raise(syscall.SIGABRT)
			close(done)
		}()
		<-done
	case "wait":
		// Signalled by the parent once it reads the line.
		fmt.Println("ready")
		var p [2]int
		_ = unix.Pipe(p[:])
		_, _ = unix.Read(p[0], make([]byte, 1))
	}
	os.Exit(100) // the signal did not end the process
}

// The chained handler makes a fault that the runtime reports as fatal end
// the process by that signal, after the runtime's report, and leaves every
// other crash as Go has it: exit status 2.
func TestCrashSignals(t *testing.T) {
	tests := []struct {
		name        string
		mode        string
		gotraceback string
		send        syscall.Signal // sent by this process once the child is ready
		signal      syscall.Signal // the child must die by it; 0: exit status 2
		stderr      string         // how its stderr must start
	}{
		{name: "SIGSEGV raised by the worker", mode: "segv", signal: syscall.SIGSEGV, stderr: "SIGSEGV: segmentation violation\nPC="},
		{name: "SIGABRT raised by the worker", mode: "abort", signal: syscall.SIGABRT, stderr: "SIGABRT: abort\nPC="},
		{name: "SIGBUS raised by the worker", mode: "bus", signal: syscall.SIGBUS, stderr: "SIGBUS: bus error\nPC="},
		{name: "Go panic exits 2", mode: "gopanic", stderr: "panic: a Go bug\n"},
		{name: "a recovered fault in Go releases the claim", mode: "recovered", signal: syscall.SIGABRT, stderr: "SIGABRT: abort\nPC="},
		{name: "SIGSEGV from another process exits 2", mode: "wait", send: syscall.SIGSEGV, stderr: "SIGSEGV: segmentation violation\nPC="},
		{name: "SIGQUIT dump exits 2", mode: "wait", send: syscall.SIGQUIT, stderr: "SIGQUIT: quit\nPC="},
		{name: "without the handler: exit 2", mode: "uninstalled", stderr: "SIGSEGV: segmentation violation\nPC="},
		{name: "GOTRACEBACK=all: Go's behaviour", mode: "segv", gotraceback: "all", stderr: "SIGSEGV: segmentation violation\nPC="},
		{name: "GOTRACEBACK=crash: fault by its signal", mode: "segv", gotraceback: "crash", signal: syscall.SIGSEGV, stderr: "SIGSEGV: segmentation violation\nPC="},
		{name: "GOTRACEBACK=crash: Go panic by SIGABRT, as Go documents", mode: "gopanic", gotraceback: "crash", signal: syscall.SIGABRT, stderr: "panic: a Go bug\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(os.Args[0])
			cmd.Env = testutil.HelperEnviron("crashsig", crashModeEnv+"="+tt.mode, "GOTRACEBACK="+tt.gotraceback)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			if tt.send != 0 {
				if line, err := bufio.NewReader(out).ReadString('\n'); line != "ready\n" {
					cmd.Process.Kill()
					cmd.Wait()
					t.Fatalf("child said %q, %v", line, err)
				}
				if err := cmd.Process.Signal(tt.send); err != nil {
					t.Fatal(err)
				}
			}
			err = cmd.Wait()
			var ee *exec.ExitError
			if err != nil && !errors.As(err, &ee) {
				t.Fatal(err)
			}
			ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
			want := "exit status 2"
			if tt.signal != 0 {
				want = "signal " + tt.signal.String()
			}
			got := fmt.Sprintf("exit status %d", ws.ExitStatus())
			if ws.Signaled() {
				got = "signal " + ws.Signal().String()
			}
			if got != want || !strings.HasPrefix(stderr.String(), tt.stderr) {
				t.Fatalf("child ended with %s, want %s; stderr should start with %q:\n%s", got, want, tt.stderr, stderr.String())
			}
		})
	}
}
