//go:build linux && amd64

package worker

import (
	"os"
	"runtime/debug"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A worker's native code that crashes should be reported as a C program's
// would be: killed by SIGSEGV, SIGABRT, SIGBUS... But in a Go program the
// runtime owns those signals. A fault in C reaches the Go handler, which
// prints "SIGSEGV: segmentation violation ... signal arrived during cgo
// execution" and a traceback, and exits with status 2: the dispatcher's
// CrashError says "exit status 2", and nothing tells a NULL dereference from
// a Go bug. So, in a worker that links C code, the SDK arranges at start-up
// that a fault which the runtime reports as fatal ends the process by that
// very signal, after the runtime has printed its report:
//
//   - the traceback level is set to "crash" (as GOTRACEBACK=crash), so that
//     after printing, the runtime crashes by raising SIGABRT instead of
//     exiting 2 (runtime/debug.SetTraceback);
//   - a small handler (crashsig_linux_amd64.s) is chained in front of the
//     runtime's for SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS and
//     SIGABRT, as os/signal's documentation allows non-Go code to do: it
//     calls the runtime's handler, and remembers, while it runs, which
//     thread is handling which signal that the process raised itself (a
//     fault, abort(), raise()). When the runtime's SIGABRT arrives on that
//     same thread, the report is written and the handler ends the process
//     by the original signal, with its default action.
//
// What stays as it was: a fault in Go code still becomes a Go panic (the
// runtime's handler returns, and the claim is dropped). A Go panic nobody
// recovers, a fatal error, the dispatcher's SIGQUIT dump, and a SIGSEGV sent
// by another process all still exit with status 2: the runtime copies every
// crash report to a memfd (runtime/debug.SetCrashOutput), and a SIGABRT from
// the runtime that follows a report on a thread that raised no signal itself
// exits 2, as without "crash". A handler's panic is still answered ERROR
// panic and exits 70.
//
// What changes: such a worker dies by the signal's default action, which
// dumps core if RLIMIT_CORE allows it, as a C program's would; the report
// lists every goroutine and thread (level "system") rather than the crashing
// goroutine alone; and the memfd takes the SetCrashOutput slot: a worker
// that sets its own crash output makes a Go panic die by SIGABRT instead of
// exit 2 (a C fault is unaffected).
//
// A GOTRACEBACK in the environment is the user's choice and wins: "crash"
// keeps Go's meaning for Go panics (SIGABRT) while C faults still die by
// their own signal; any other value leaves the runtime exactly as Go made
// it. Pure Go workers (no cgo) are left alone, and so are other platforms.

// iscgo is true when runtime/cgo is linked in, that is when the program has
// C code that can crash. The runtime keeps this variable for packages that
// read it (go.dev/issue/67401).
//
//go:linkname iscgo runtime.iscgo
var iscgo bool

// State read by crashHandler. The first two are written before it is
// installed and never after.
var (
	// goHandlers holds the runtime's handler for each chained signal.
	goHandlers [65]uintptr
	// crashFD is the memfd the runtime copies its crash reports to, or -1.
	crashFD int64 = -1
	// crashClaim is tid<<32 | signal: the thread whose own signal the
	// runtime's handler is handling, if any. Only crashHandler writes it.
	crashClaim uint64
	// crashOut keeps crashFD open: an *os.File closes its descriptor when
	// collected.
	crashOut *os.File
)

// crashHandlerPC returns the address of crashHandler, the signal handler.
func crashHandlerPC() uintptr

// crashSignals are the signals a fault or abort() raises, whose default
// action is to dump core.
var crashSignals = [...]syscall.Signal{
	syscall.SIGSEGV, syscall.SIGBUS, syscall.SIGFPE, syscall.SIGILL,
	syscall.SIGTRAP, syscall.SIGSYS, syscall.SIGABRT,
}

func init() {
	// Only in a process started as a worker: a program that imports this
	// package to choose its role, or as a dispatcher, keeps Go's defaults.
	if IsWorker() && iscgo {
		installCrashSignals(os.Getenv("GOTRACEBACK"))
	}
}

// installCrashSignals chains crashHandler in front of the runtime's handlers
// and, unless the environment chose a traceback level (gotraceback), sets
// the level to "crash" with a crash output to tell Go crashes by. Any step
// that fails leaves Go's behaviour unchanged: the level is set last, and
// without it the runtime exits 2 without ever raising SIGABRT.
func installCrashSignals(gotraceback string) {
	chooses := gotraceback == ""
	if !chooses && gotraceback != "crash" {
		return
	}
	if chooses {
		fd, err := unix.MemfdCreate("bulkhead-crash-report", unix.MFD_CLOEXEC)
		if err != nil {
			return
		}
		f := os.NewFile(uintptr(fd), "bulkhead-crash-report")
		if err := debug.SetCrashOutput(f, debug.CrashOptions{}); err != nil {
			f.Close()
			return
		}
		crashOut, crashFD = f, int64(fd)
	}
	pc := crashHandlerPC()
	for _, sig := range crashSignals {
		var old kernelSigaction
		if rtSigaction(sig, nil, &old) != nil || old.handler <= 1 || old.flags&saSiginfo == 0 {
			continue // not the runtime's (SIG_DFL, SIG_IGN, someone else's)
		}
		goHandlers[sig] = old.handler
		act := old // same flags (SA_ONSTACK...), mask and restorer
		act.handler = pc
		_ = rtSigaction(sig, &act, nil)
	}
	if chooses {
		debug.SetTraceback("crash")
	}
}

// kernelSigaction is the kernel's struct sigaction on linux/amd64.
type kernelSigaction struct {
	handler  uintptr
	flags    uint64
	restorer uintptr
	mask     uint64
}

const saSiginfo = 0x4

func rtSigaction(sig syscall.Signal, act, old *kernelSigaction) error {
	_, _, e := unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig),
		uintptr(unsafe.Pointer(act)), uintptr(unsafe.Pointer(old)), 8, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}
