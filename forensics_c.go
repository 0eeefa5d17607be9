package bulkhead

import (
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

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
// answer has the same lines after "bulkhead: stack of pid N". A function
// the program or a library does not export shows as an offset in its file
// only; the dispatcher names it from the symbol table of the program it
// started, when the report's program is that file, or of the library's
// file, within the bounds of forensics_elf.go: the report is the worker's.

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
		if len(r.frames) == maxReportFrames {
			break
		}
	}
	return r, true
}

// namer names a report's frames, reading at most maxReportFiles libraries
// for it (forensics_elf.go).
type namer struct {
	r      *cReport
	syms   *elfSymbols // nil: name only what the report names
	budget int
	pid    int               // a live worker's, whose maps are mapped; else 0
	mapped map[string]uint64 // its executable mappings' paths and inodes
}

func newNamer(r *cReport, syms *elfSymbols) *namer {
	return &namer{r: r, syms: syms, budget: maxReportFiles}
}

// live has n read only the libraries that pid has mapped executable, if
// its maps can be read (it may have died since its report).
func (n *namer) live(pid int) {
	maps, err := stackscan.ReadMaps(pid)
	if err != nil || len(maps) == 0 {
		return
	}
	n.pid, n.mapped = pid, make(map[string]uint64)
	for _, m := range maps {
		if _, seen := n.mapped[m.Path]; !seen && m.Exec() {
			n.mapped[m.Path] = m.Inode
		}
	}
}

// lookup returns the function that a symbol table names at frame f's
// offset (f has no symbol), and f's offset in it; "" if none does. A frame
// of the program is named from the pool's program, if the report's program
// is that file; a frame of a library, from the library's file.
func (n *namer) lookup(f cFrame) (name string, at uint64) {
	if n.syms == nil || f.symbol != "" || f.module == "" {
		return "", 0
	}
	if f.module == n.r.argv0 {
		if name, at = n.syms.lookup(n.r.exe, f.offset); name != "" {
			return cleanSymbol(name), at
		}
	}
	ino, mapped := n.mapped[f.module]
	if n.pid != 0 && !mapped {
		return "", 0
	}
	if tab := n.syms.library(f.module, n.pid, ino, &n.budget); tab != nil {
		name, at = tab.Lookup(f.offset)
	}
	return cleanSymbol(name), at
}

// name names frame f: its symbol, or lookup's.
func (n *namer) name(f cFrame) string {
	if f.symbol != "" {
		return f.symbol
	}
	name, _ := n.lookup(f)
	return name
}

// symbolName is what a symbol a C, C++ or Rust compiler wrote looks like.
var symbolName = regexp.MustCompile(`^[A-Za-z_.$@][A-Za-z0-9_.$@]{0,255}$`)

// cleanSymbol returns name if it looks like a symbol, else "": the name
// comes from a file a hostile report named.
func cleanSymbol(name string) string {
	if !symbolName.MatchString(name) {
		return ""
	}
	return name
}

// cFunction returns the function a C SDK worker died in, from the last
// crash report in its stderr: the innermost frame that has a name (the
// faulting frame's function, or if it has none, as a static function of a
// stripped library has not, the nearest caller that has), looking from the
// faulting frame on, or for SIGABRT from the first frame outside the C
// library (abort's caller). It looks no further than the SDK's own frames
// (bh_serve, bh__*): those name no call's code.
func cFunction(stderr string, syms *elfSymbols) string {
	i := strings.LastIndex(stderr, cCrashMarker)
	if i < 0 || (i > 0 && stderr[i-1] != '\n') {
		return ""
	}
	r, ok := parseCReport(stderr[i:])
	if !ok {
		return ""
	}
	n := newNamer(&r, syms)
	first := true
	for _, f := range r.frames {
		if r.signal == 6 && isLibc(f.module) {
			continue
		}
		name := n.name(f)
		switch {
		case name == "":
			first = false
		case !first && sdkFunction(name):
			return ""
		default:
			return name
		}
	}
	return ""
}

// sdkFunction reports whether name is the C SDK's own (bulkhead.h).
func sdkFunction(name string) bool {
	return name == "bh_serve" || strings.HasPrefix(name, "bh__")
}

// isLibc reports whether module is the C library (abort, raise).
func isLibc(module string) bool {
	b := filepath.Base(module)
	return strings.HasPrefix(b, "libc.so") || strings.HasPrefix(b, "libc-")
}

// symbolizeStack returns a C SDK STACK dump of worker pid with each frame
// that has no symbol followed by the function the symbol tables name for
// it (the program's, a library's that pid has mapped); other dumps as they
// are.
func symbolizeStack(dump string, syms *elfSymbols, pid int) string {
	r, ok := parseCReport(dump)
	if !ok {
		return dump
	}
	n := newNamer(&r, syms)
	if pid > 0 {
		n.live(pid)
	}
	changed := false
	for k, f := range r.frames {
		if name, at := n.lookup(f); name != "" {
			r.lines[r.frameLines[k]] += " " + name + "+0x" + strconv.FormatUint(at, 16)
			changed = true
		}
	}
	if !changed {
		return dump
	}
	return strings.Join(r.lines, "\n")
}
