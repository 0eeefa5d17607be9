package bulkhead

import (
	"debug/elf"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func TestNativeFunction(t *testing.T) {
	tests := []struct{ stderr, want string }{
		{"SIGSEGV: segmentation violation\nPC=0x1 m=3 sigcode=1 addr=0x0\nsignal arrived during cgo execution\n\ngoroutine 1 gp=0x1 m=3 [syscall, locked to thread]:\nruntime.cgocall(0x1, 0x2)\n\t/go/src/runtime/cgocall.go:167 +0x4b\nexample.com/native._Cfunc_crashy_raw_segv()\n\t_cgo_gotypes.go:160 +0x3a\n", "crashy_raw_segv"},
		{"panic: runtime error: invalid memory address\ngoroutine 1:\nmain._Cfunc_other()\n", ""}, // no cgo line: a fault in Go
		{"", ""},
		{"signal arrived during cgo execution\nno frames at all", ""},
		// The C SDK's report (sdk/c/bulkhead.h): the faulting frame, and for
		// SIGABRT the first frame outside libc.
		{"x\nbulkhead: fatal signal 11 (SIGSEGV), code 1, address 0x0, in call 3 \"m\"\nbulkhead: program ./w is /w\n./w(parse+0x1a)[0x55]\n./w(main+0x2)[0x56]\n", "parse"},
		{"bulkhead: fatal signal 6 (SIGABRT), code -6, address 0x1, in call 3 \"m\"\n/lib/libc.so.6(+0x8aeec)[0x7f]\n/lib/libc.so.6(abort+0xd3)[0x7f]\n/usr/lib/libz.so.1(inflate+0x10) [0x7f]\n", "inflate"},
		{"bulkhead: fatal signal 11 (SIGSEGV), code 1, address 0x0, between calls\nbulkhead: program ./w is /w\n./w(+0x26ce)[0x55]\n", ""}, // no symbols to name it
		{"say bulkhead: fatal signal 11 (SIGSEGV)\n./w(f+0x1)[0x2]\n", ""},                                                                 // not a report's line
	}
	for _, tt := range tests {
		if got := nativeFunction(tt.stderr, nil); got != tt.want {
			t.Errorf("nativeFunction(%q) = %q, want %q", tt.stderr, got, tt.want)
		}
	}
}

// TestSymbolizeStack: a C SDK STACK's frames in the pool's program are
// named from its symbol table (here, the test binary's own), and frames of
// another file are left as they are.
func TestSymbolizeStack(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	syms := &elfSymbols{path: exe}
	real, _ := filepath.EvalSymlinks(exe)
	name, start := funcStart(t, real, "TestSymbolizeStack")
	dump := "bulkhead: stack of pid 1, in call 2 \"m\"\nbulkhead: program ./t is " + real + "\n" +
		"./t(+0x" + strconv.FormatUint(start+3, 16) + ")[0x1]\n" +
		"/other(+0x" + strconv.FormatUint(start+3, 16) + ")[0x1]\n"
	got := symbolizeStack(dump, syms)
	want := strings.Replace(dump, ")[0x1]\n", ")[0x1] "+name+"+0x3\n", 1)
	if got != want {
		t.Errorf("symbolizeStack:\n%s\nwant\n%s", got, want)
	}
	if n, _ := syms.lookup("/not/the/program", start); n != "" {
		t.Errorf("lookup in another file named %q", n)
	}
}

// funcStart finds the symbol and address of a function of the ELF file exe
// whose name ends with suffix.
func funcStart(t *testing.T, exe, suffix string) (string, uint64) {
	f, err := elf.Open(exe)
	if err != nil {
		t.Skip(err)
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil {
		t.Skip(err)
	}
	for _, s := range syms {
		if strings.HasSuffix(s.Name, "."+suffix) && elf.ST_TYPE(s.Info) == elf.STT_FUNC && s.Size > 3 {
			return s.Name, s.Value
		}
	}
	t.Skip("no symbol " + suffix)
	return "", 0
}

// FuzzNativeFunction: whatever a worker writes to stderr, the function
// found is "" or a C identifier that stderr holds.
func FuzzNativeFunction(f *testing.F) {
	f.Add("signal arrived during cgo execution\nx._Cfunc_f(\n")
	f.Add("signal arrived during cgo execution._Cfunc_(")
	f.Add("._Cfunc_a(signal arrived during cgo execution")
	f.Add("bulkhead: fatal signal 11 (SIGSEGV)\nbulkhead: program ./w is /w\n./w(f+0x1) [0x2]\n")
	f.Add("bulkhead: fatal signal 6 (SIGABRT)\n/lib/libc.so.6(abort+0x1) [0x2]\n./w(+0x1) [0x2]\n")
	ident := regexp.MustCompile(`^[A-Za-z0-9_.$@]+$`)
	f.Fuzz(func(t *testing.T, s string) {
		got := nativeFunction(s, nil)
		if got != "" && (!ident.MatchString(got) || !strings.Contains(s, "_Cfunc_"+got+"(") && !strings.Contains(s, "("+got+"+0x")) {
			t.Fatalf("nativeFunction(%q) = %q", s, got)
		}
	})
}
