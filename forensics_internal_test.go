package bulkhead

import (
	"debug/elf"
	"os"
	"os/exec"
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

// buildLib builds a shared library with gcc, unstripped or stripped, and
// returns its path and the address of its static function lib_static.
func buildLib(t *testing.T, dir, name string, strip bool) (path string, static uint64) {
	t.Helper()
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc not found in PATH")
	}
	src := filepath.Join(dir, "lib.c")
	code := "__attribute__((noinline)) static int lib_static(volatile int *p) { return *p + 1; }\n" +
		"int lib_export(int *p) { return lib_static(p) * 2; }\n"
	if err := os.WriteFile(src, []byte(code), 0o600); err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(dir, name)
	unstripped := path + ".full"
	if out, err := exec.Command(gcc, "-O2", "-shared", "-fPIC", "-o", unstripped, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	f, err := elf.Open(unstripped)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range syms {
		if s.Name == "lib_static" {
			static = s.Value
		}
	}
	if static == 0 {
		t.Fatal("gcc's library has no lib_static")
	}
	args := []string{"-O2", "-shared", "-fPIC", "-o", path, src}
	if strip {
		args = append(args, "-s")
	}
	if out, err := exec.Command(gcc, args...).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	return path, static
}

// TestCFunctionLibrary: an unnamed frame of a library is named from the
// library's .symtab, and Function is otherwise the innermost frame that
// has a name; what a report names is read only within bounds.
func TestCFunctionLibrary(t *testing.T) {
	dir := t.TempDir()
	lib, static := buildLib(t, dir, "libt.so", false)
	stripped, _ := buildLib(t, t.TempDir(), "libs.so", true)
	if err := os.Mkdir(filepath.Join(dir, "x"), 0o700); err != nil { // for x/../libt.so
		t.Fatal(err)
	}
	off := "+0x" + strconv.FormatUint(static+1, 16)
	head := "bulkhead: fatal signal 11 (SIGSEGV), code 1, address 0x0, in call 3 \"m\"\nbulkhead: program ./w is /w\n"
	caller := "LIB(lib_export+0x5)[0x2]\n./w(h_m+0x9)[0x3]\n"
	tests := []struct {
		name, module string
		private      bool // Sandbox.PrivateTmp
		want         string
	}{
		{"unstripped", lib, false, "lib_static"},
		{"stripped", stripped, false, "lib_export"},
		{"relative", "libt.so", false, "lib_export"},
		{"dotdot", filepath.Join(dir, "x") + "/../libt.so", false, "lib_export"},
		{"device", "/dev/zero", false, "lib_export"},
		{"proc", "/proc/self/root" + lib, false, "lib_export"},
		{"too long", "/" + strings.Repeat("a/", 2100) + "libt.so", false, "lib_export"},
	}
	if strings.HasPrefix(lib, "/tmp/") {
		tests = append(tests, struct {
			name, module string
			private      bool
			want         string
		}{"private tmp", lib, true, "lib_export"})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			syms := &elfSymbols{path: "/nonexistent", privateTmp: tt.private}
			stderr := head + tt.module + "(" + off + ")[0x1]\n" + strings.ReplaceAll(caller, "LIB", tt.module)
			if got := nativeFunction(stderr, syms); got != tt.want {
				t.Errorf("nativeFunction = %q, want %q\n%s", got, tt.want, stderr)
			}
		})
	}
	// The search ends at the C SDK's own frames: they name no call's code.
	sdk := head + stripped + "(" + off + ")[0x1]\n./w(bh__on_call+0x1)[0x2]\n./w(bh_serve+0x1)[0x3]\n"
	if got := nativeFunction(sdk, &elfSymbols{}); got != "" {
		t.Errorf("nativeFunction named %q, a frame of the SDK", got)
	}
}

// TestSymbolizeStack: a C SDK STACK's unnamed frames are named from the
// symbol tables of the pool's program (its report's program is that file)
// and of the libraries it names, at most maxReportFiles of them per report.
func TestSymbolizeStack(t *testing.T) {
	dir := t.TempDir()
	prog, static := buildLib(t, dir, "prog", false) // a shared object stands for the program
	syms := &elfSymbols{path: prog}
	off := "+0x" + strconv.FormatUint(static+1, 16)
	dump := "bulkhead: stack of pid 1, in call 2 \"m\"\nbulkhead: program ./t is " + prog + "\n" +
		"./t(" + off + ")[0x1]\n" + "./other(" + off + ")[0x1]\n"
	want := strings.Replace(dump, ")[0x1]\n", ")[0x1] lib_static+0x1\n", 1)
	if got := symbolizeStack(dump, syms, 0); got != want {
		t.Errorf("symbolizeStack:\n%s\nwant\n%s", got, want)
	}
	if n, _ := syms.lookup("/not/the/program", static); n != "" {
		t.Errorf("lookup in another file named %q", n)
	}
	// Ten libraries: eight are read, the others' frames left as they are.
	dump = "bulkhead: stack of pid 1, in call 2 \"m\"\n"
	for i := range 10 {
		link := filepath.Join(dir, "lib"+strconv.Itoa(i)+".so")
		if err := os.Link(prog, link); err != nil {
			t.Fatal(err)
		}
		dump += link + "(" + off + ")[0x1]\n"
	}
	syms = &elfSymbols{path: "/nonexistent"}
	if got := strings.Count(symbolizeStack(dump, syms, 0), " lib_static+0x1"); got != maxReportFiles {
		t.Errorf("%d of 10 libraries read, want %d", got, maxReportFiles)
	}
	// The pool keeps what it read: the next report reads the others.
	if got := strings.Count(symbolizeStack(dump, syms, 0), " lib_static+0x1"); got != 10 {
		t.Errorf("second report: %d of 10 named, want 10", got)
	}
}

// TestSymbolizeStackLive: the STACK of a live worker names a library's
// frame only if the worker has that library mapped.
func TestSymbolizeStackLive(t *testing.T) {
	dir := t.TempDir()
	lib, static := buildLib(t, dir, "libt.so", false)
	other, _ := buildLib(t, t.TempDir(), "libt.so", false) // the same code, not mapped
	src, bin := filepath.Join(dir, "main.c"), filepath.Join(dir, "main")
	code := "#include <unistd.h>\nint lib_export(int *p);\n" +
		"int main(void) { char c = 'r'; if (write(1, &c, 1) != 1) return 1;\n" +
		"  return read(0, &c, 1) < 0 ? lib_export(0) : 0; }\n"
	if err := os.WriteFile(src, []byte(code), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("gcc", "-o", bin, src, "-L", dir, "-Wl,-rpath,"+dir, "-lt").CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	cmd := exec.Command(bin)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close() // it reads end of file and exits
		if err := cmd.Wait(); err != nil {
			t.Error(err)
		}
	}()
	off := "+0x" + strconv.FormatUint(static+1, 16)
	dump := "bulkhead: stack of pid 1, in call 2 \"m\"\n" + lib + "(" + off + ")[0x1]\n" + other + "(" + off + ")[0x1]\n"
	// Its main has run (it wrote a byte): the loader has mapped lib.
	if _, err := stdout.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	got := symbolizeStack(dump, &elfSymbols{path: "/nonexistent"}, cmd.Process.Pid)
	want := strings.Replace(dump, ")[0x1]\n", ")[0x1] lib_static+0x1\n", 1)
	if got != want {
		t.Errorf("symbolizeStack of a live process:\n%s\nwant\n%s", got, want)
	}
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

// TestLibraryCacheBound: a pool keeps at most maxLibCache libraries'
// symbols, however many files its workers' reports name.
func TestLibraryCacheBound(t *testing.T) {
	s := &elfSymbols{}
	for i := range 3 * maxLibCache {
		s.keep("/lib/l"+strconv.Itoa(i)+".so", libSymbols{})
		s.keep("/lib/l0.so", libSymbols{}) // replacing one adds none
	}
	if len(s.libs) > maxLibCache || s.cached != 0 {
		t.Errorf("%d libraries and %d bytes kept, want at most %d and 0", len(s.libs), s.cached, maxLibCache)
	}
}
