package bulkhead

import (
	"regexp"
	"strings"
	"syscall"
	"time"
)

// Crash forensics: what a worker's crash report on stderr says about where
// it died. The Go SDK's workers die of a fault in C by the signal itself,
// after the Go runtime has printed its report (worker/crashsig_linux_amd64.go):
// "signal arrived during cgo execution", then the crashing goroutine's stack,
// whose cgo stub (_Cfunc_NAME) names the C function the call had entered.

// cgoMarker is the line the Go runtime prints for a signal raised in C.
const cgoMarker = "signal arrived during cgo execution"

// cgoFrame matches a cgo stub's frame in a Go traceback.
var cgoFrame = regexp.MustCompile(`\._Cfunc_([A-Za-z_][A-Za-z0-9_]*)\(`)

// nativeFunction returns the C function a worker died in, from its stderr:
// for a Go SDK worker, the first cgo stub after the runtime's cgo line; for
// a C SDK worker, the faulting frame of its crash report (forensics_c.go),
// named from syms, the program's symbols, if the report does not name it;
// or "" if no report says (a worker that died without one, a fault in Go
// code).
func nativeFunction(stderr string, syms *elfSymbols) string {
	i := strings.Index(stderr, cgoMarker)
	if i < 0 {
		return cFunction(stderr, syms)
	}
	if m := cgoFrame.FindStringSubmatch(stderr[i:]); m != nil {
		return m[1]
	}
	return ""
}

// NativeFunction returns the C function a process died in, from its
// stderr, as a pool's CrashError.Function does: a Go SDK worker's cgo stub,
// or the faulting frame of a C SDK crash report, named from program's
// symbol table if the report does not name it (program is the file the
// process was started from; "" reads none). It returns "" if no report
// says. Other runners of workers (package activation) share it; call it
// once per crash, not under a lock: it may read program's symbols.
func NativeFunction(stderr, program string) string {
	if program == "" {
		return nativeFunction(stderr, nil)
	}
	return nativeFunction(stderr, &elfSymbols{path: program})
}

// usageOf is a reaped process's CPU time and peak resident memory in bytes
// (ru_maxrss is in KiB on Linux), or zeros without an rusage.
func usageOf(ru *syscall.Rusage) (cpu time.Duration, maxRSS int64) {
	if ru == nil {
		return 0, 0
	}
	cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return cpu, ru.Maxrss << 10
}
