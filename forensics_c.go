package bulkhead

import (
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/bulkhead-go/bulkhead/internal/stackscan"
)

// Crash reports and stacks of C SDK workers (sdk/c/bulkhead.h). Its crash
// handler writes to stderr, before the signal's default action ends the
// worker:
//
//	bulkhead: fatal signal 11 (SIGSEGV), code 1, address 0x0, in call 7 "crash"
//	bulkhead: program ./cworker is /abs/cworker
//	./cworker(+0x1139) [0x55d0c0a1b139]
//	./cworker(bh_serve+0x91) [0x55d0c0a1c2a1]
//	/lib/x86_64-linux-gnu/libc.so.6(__libc_start_main+0x85) [0x7f...]
//
// (glibc's backtrace_symbols_fd, from the faulting frame on), and its STACK
// answer has the same lines after "bulkhead: stack of pid N". A function the
// program does not export shows as an offset in the program only; the
// dispatcher names it from the symbol table of the program it started,
// when the report's program is that file.

const (
	cCrashMarker   = "bulkhead: fatal signal "
	cProgramMarker = "bulkhead: program "
)

// btFrame matches a frame of backtrace_symbols_fd: module, the symbol and
// offset in parentheses (either may be empty), then the address.
var btFrame = regexp.MustCompile(`^(.*)\(([A-Za-z0-9_.$@]*)\+0x([0-9a-f]{1,16})\) ?\[0x[0-9a-f]+\]$`)

// cFrame is one frame of a C SDK report.
type cFrame struct {
	module, symbol string
	offset         uint64 // from symbol, or from the module's load bias when symbol is ""
}

// cReport is a C SDK report parsed: its signal (0 for a STACK), the
// program's argv[0] and file, and its frames, innermost first.
type cReport struct {
	signal        int
	argv0, exe    string
	frames        []cFrame
	frameLines    []int // index in lines of each frame
	lines         []string
	programLineAt int
}

// parseCReport parses the report that starts at text's first line; ok is
// false if text does not start with one.
func parseCReport(text string) (r cReport, ok bool) {
	r.lines = strings.Split(text, "\n")
	r.programLineAt = -1
	if strings.HasPrefix(r.lines[0], cCrashMarker) {
		n, _, _ := strings.Cut(r.lines[0][len(cCrashMarker):], " ")
		r.signal, _ = strconv.Atoi(n)
	} else if !strings.HasPrefix(r.lines[0], "bulkhead: stack of pid ") {
		return r, false
	}
	for i, l := range r.lines[1:] {
		i++
		if rest, found := strings.CutPrefix(l, cProgramMarker); found && r.programLineAt < 0 {
			if k := strings.LastIndex(rest, " is "); k >= 0 {
				r.argv0, r.exe, r.programLineAt = rest[:k], rest[k+len(" is "):], i
			}
			continue
		}
		m := btFrame.FindStringSubmatch(l)
		if m == nil {
			if len(r.frames) > 0 {
				break // the report has ended
			}
			continue
		}
		off, err := strconv.ParseUint(m[3], 16, 64)
		if err != nil {
			continue
		}
		r.frames = append(r.frames, cFrame{module: m[1], symbol: m[2], offset: off})
		r.frameLines = append(r.frameLines, i)
	}
	return r, true
}

// name names frame f: its symbol, or the function of the program's symbol
// table (syms) at its offset, or "".
func (r *cReport) name(f cFrame, syms *elfSymbols) string {
	if f.symbol != "" {
		return f.symbol
	}
	if syms == nil || f.module == "" || f.module != r.argv0 {
		return ""
	}
	name, _ := syms.lookup(r.exe, f.offset)
	return name
}

// cFunction returns the function a C SDK worker died in, from the last
// crash report in its stderr: the faulting frame's function, or for
// SIGABRT the first frame outside the C library (abort's caller).
func cFunction(stderr string, syms *elfSymbols) string {
	i := strings.LastIndex(stderr, cCrashMarker)
	if i < 0 || (i > 0 && stderr[i-1] != '\n') {
		return ""
	}
	r, ok := parseCReport(stderr[i:])
	if !ok {
		return ""
	}
	for _, f := range r.frames {
		if r.signal == 6 && isLibc(f.module) {
			continue
		}
		return r.name(f, syms)
	}
	return ""
}

// isLibc reports whether module is the C library (abort, raise).
func isLibc(module string) bool {
	b := filepath.Base(module)
	return strings.HasPrefix(b, "libc.so") || strings.HasPrefix(b, "libc-")
}

// symbolizeStack returns a C SDK STACK dump with each frame that has no
// symbol followed by the function syms names for it; other dumps as they
// are.
func symbolizeStack(dump string, syms *elfSymbols) string {
	r, ok := parseCReport(dump)
	if !ok {
		return dump
	}
	changed := false
	for k, f := range r.frames {
		if f.symbol != "" {
			continue
		}
		if f.module == r.argv0 && syms != nil {
			if n, at := syms.lookup(r.exe, f.offset); n != "" {
				r.lines[r.frameLines[k]] += " " + n + "+0x" + strconv.FormatUint(at, 16)
				changed = true
			}
		}
	}
	if !changed {
		return dump
	}
	return strings.Join(r.lines, "\n")
}

// elfSymbols is the function symbols of a pool's worker program, read the
// first time a report needs them, never under the pool's lock. A worker's
// report names its program's file; only the file the pool started is read.
type elfSymbols struct {
	path string // the program the pool starts (settings.path)
	once sync.Once
	real string // path with its symbolic links resolved
	tab  *stackscan.Symtab
}

// lookup returns the function at offset off of exe (an address less the
// load bias: the file's own address) and off's offset in it; "" if exe is
// not the pool's program or no function covers off.
func (s *elfSymbols) lookup(exe string, off uint64) (name string, at uint64) {
	s.once.Do(s.load)
	if exe == "" || exe != s.real || s.tab == nil {
		return "", 0
	}
	return s.tab.Lookup(off)
}

func (s *elfSymbols) load() {
	real, err := filepath.EvalSymlinks(s.path)
	if err != nil {
		return
	}
	real, err = filepath.Abs(real)
	if err != nil {
		return
	}
	tab, err := stackscan.Load(real, nil)
	if err != nil {
		return
	}
	s.real, s.tab = real, tab
}
