package gen

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/internal/conform"
	"github.com/bulkhead-go/bulkhead/internal/testutil"
	"github.com/bulkhead-go/bulkhead/worker"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func TestMain(m *testing.M) {
	testutil.Main(m, map[string]func(){"null": runNullWorker}, "null", worker.IsWorker)
}

// loadSpec reads and parses the annotation file at specPath.
func loadSpec(t testing.TB, specPath string) *Spec {
	t.Helper()
	data, err := os.ReadFile(specPath)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ParseSpec(specPath, data)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// runNullWorker is the Go SDK worker of the null-call benchmark.
func runNullWorker() {
	var s worker.Server
	s.Handle("null", func(context.Context, worker.Args) (any, error) { return nil, nil })
	s.Run()
}

func generate(t testing.TB, specPath string) map[string][]byte {
	t.Helper()
	files, err := Generate(loadSpec(t, specPath))
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// golden compares files with those in dir, or rewrites them with -update.
func golden(t *testing.T, dir string, files map[string][]byte, suffix string) {
	t.Helper()
	for name, got := range files {
		path := filepath.Join(dir, name+suffix)
		if *update {
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from what gen writes now; rerun with -update (or bulkhead gen) and review the diff", path)
		}
	}
}

// The output for mini.h is the golden one, and the same on every run.
func TestGoldenMini(t *testing.T) {
	files := generate(t, "testdata/mini.toml")
	if again := generate(t, "testdata/mini.toml"); !equalFiles(files, again) {
		t.Fatal("two runs of gen on the same input differ")
	}
	golden(t, "testdata", files, ".golden")
}

// examples/zlib/zlibbh is what gen writes from Debian's zlib.h.
func TestGoldenZlib(t *testing.T) {
	if _, err := os.Stat("/usr/include/zlib.h"); err != nil {
		t.Skip("no /usr/include/zlib.h: apt-get install zlib1g-dev (CI does)")
	}
	golden(t, "../../examples/zlib/zlibbh", generate(t, "../../examples/zlib/zlib.toml"), "")
}

func equalFiles(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !bytes.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

func TestSpecErrors(t *testing.T) {
	base := "header = \"mini.h\"\npackage = \"minibh\"\ninclude = [\".\"]\n"
	tests := []struct{ name, spec, want string }{
		{"no header", "package = \"p\"\n[[func]]\nname = \"f\"", "x.toml: header: want a header name"},
		{"bad package", "header = \"a.h\"\npackage = \"a-b\"\n[[func]]\nname = \"f\"", "x.toml: package: \"a-b\" is not a Go package name"},
		{"no funcs", base, "x.toml: func: no functions"},
		{"unknown key", base + "[[func]]\nname = \"mini_null\"\nbogus = 1", "unknown key \"func.bogus\""},
		{"bad toml", base + "[[func]\n", "x.toml: toml:"},
		{"bad dir", base + "[[func]]\nname = \"mini_sum\"\n[func.params.buf]\ndir = \"sideways\"", "func[0].params.buf.dir: want in, out, inout, null or local"},
		{"twice", base + "[[func]]\nname = \"mini_null\"\n[[func]]\nname = \"mini_null\"", "func[1].method: \"mini_null\" is exposed twice"},
		{"not a C expression", base + "[[func]]\nname = \"mini_sum\"\nstatus = \"1; abort()\"", "func[0].status: \"1; abort()\" is not a C expression"},
		{"no such function", base + "[[func]]\nname = \"nosuch\"", "func[0] (nosuch): annotation does not fit the header: no function nosuch"},
		{"variadic", base + "[[func]]\nname = \"mini_printf\"\n[func.params.format]\ndir = \"in\"\nstring = true", "is variadic"},
		{"pointer without annotation", base + "[[func]]\nname = \"mini_sum\"", "parameter buf: annotation does not fit the header: pointer of type unsigned char* needs an annotation"},
		{"no such parameter", base + "[[func]]\nname = \"mini_null\"\n[func.params.zz]\ndir = \"in\"", "params.zz: mini_null has no such parameter"},
		{"len not a parameter", base + "[[func]]\nname = \"mini_sum\"\n[func.params.buf]\ndir = \"in\"\nlen = \"nn\"\n[func.params.sum]\ndir = \"out\"", "params.buf.len: \"nn\" is not an integer parameter"},
		{"annotated scalar", base + "[[func]]\nname = \"mini_scale\"\n[func.params.x]\ndir = \"in\"", "only pointers take an annotation"},
		{"out buffer without cap", base + "[[func]]\nname = \"mini_fill\"\n[func.params.dst]\ndir = \"out\"\n[func.params.written]\ndir = \"out\"", "needs cap"},
		{"struct of a pointer", base + "[[func]]\nname = \"mini_name\"\n[func.params.n]\ndir = \"in\"", "struct mini_named: field \"name\" is not a named scalar"},
		{"status on void", base + "[[func]]\nname = \"mini_null\"\nstatus = \"ret == 0\"", "status on a void function"},
		{"local without init", base + "[[func]]\nname = \"mini_key\"\n[func.params.opts]\ndir = \"local\"", "params.opts.init: a local pointer needs init"},
		{"bad flag", base + "flags = [\"-lz\\n*/\"]\n[[func]]\nname = \"mini_null\"", "x.toml: flags: \"-lz\\n*/\" is not a compiler flag"},
		{"bad before", base + "before = [\"<x>\"]\n[[func]]\nname = \"mini_null\"", "x.toml: before: want header names"},
		{"library's buffer without len", base + "[[func]]\nname = \"mini_dup\"\n[func.params.src]\ndir = \"in\"\nlen = \"n\"\n[func.params.out]\ndir = \"out\"\n[func.params.outn]\ndir = \"out\"", "a buffer the library allocates needs len"},
		{"union field", base + "[[func]]\nname = \"mini_tagged_f\"", "struct mini_tagged: field \"u\" is not a named scalar or struct"},
		{"array field", base + "[[func]]\nname = \"mini_arr_f\"", "struct mini_arr: field \"v\" is not a named scalar or struct"},
		{"annotated by value", base + "[[func]]\nname = \"mini_area\"\n[func.params.b]\ndir = \"in\"", "a struct passed by value is \"in\" and takes no annotation"},
		{"error without status", base + "[[func]]\nname = \"mini_check\"\nerror = \"strerror(errno)\"", "func[0].error: takes a status"},
		{"error not a C expression", base + "[[func]]\nname = \"mini_check\"\nstatus = \"ret == 0\"\nerror = \"x; abort()\"", "func[0].error: \"x; abort()\" is not a C expression"},
		{"status on a struct result", base + "[[func]]\nname = \"mini_shift\"\nstatus = \"1\"", "status on a function that returns a struct"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseSpec("testdata/x.toml", []byte(tt.spec))
			if err == nil {
				_, err = Generate(s)
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// buildMini generates and compiles the mini.h worker, as surrogate.Build
// would with the test library linked in.
func buildMini(t testing.TB) string {
	t.Helper()
	return buildTestWorker(t, "testdata/mini.toml")
}

// buildTestWorker generates the worker of spec, a spec on mini.h, and
// compiles it with mini.c.
func buildTestWorker(t testing.TB, spec string) string {
	t.Helper()
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc not found in PATH")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, WorkerFile)
	if err := os.WriteFile(src, generate(t, spec)[WorkerFile], 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "miniworker")
	cmd := exec.Command(gcc, "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-I", "../../sdk/c", "-I", "testdata",
		"-o", bin, src, "testdata/mini.c")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", cmd.Args, err, out)
	}
	return bin
}

// The generated worker runs each function as its annotations say, refuses
// what they forbid, and passes the conformance kit.
func TestMiniWorker(t *testing.T) {
	testutil.CheckLeaks(t)
	bin := buildMini(t)
	ctx := context.Background()
	p, err := bulkhead.New(ctx, bulkhead.Config{Command: bin, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(ctx) })
	tests := []struct {
		method string
		args   []any
		want   any   // the result, decoded as any
		code   int64 // the RemoteError code expected instead, or 0
	}{
		{"mini_null", nil, nil, 0},
		{"mini_sum", []any{[]byte{1, 2, 250}}, uint64(253), 0},
		{"mini_sum", []any{[]byte{}}, nil, int64(bulkhead.CodeApplication)}, // status: ret is -1
		{"mini_sum", []any{"text"}, nil, int64(bulkhead.CodeBadArguments)},
		{"mini_sum", []any{[]byte{1}, 2}, nil, int64(bulkhead.CodeBadArguments)},
		{"mini_fill", []any{5}, []any{[]byte("abcde"), uint64(5)}, 0},        // two results: an array
		{"mini_fill", []any{1 << 33}, nil, int64(bulkhead.CodeBadArguments)}, // over mini_len
		{"mini_fill", []any{1 << 31}, nil, int64(bulkhead.CodeBadArguments)}, // over the frame limit
		{"mini_scale", []any{1.5, -4}, -6.0, 0},
		{"mini_scale", []any{1.5, 40000}, nil, int64(bulkhead.CodeBadArguments)}, // over short
		{"mini_strlen", []any{"héllo"}, uint64(6), 0},
		{"mini_strlen", []any{"a\x00b"}, nil, int64(bulkhead.CodeBadArguments)},
		{"mini_key", []any{[]byte{1, 2, 0, 0, 9}}, uint64(0x201), 0},
		{"mini_key", []any{[]byte{1, 2, 3}}, nil, int64(bulkhead.CodeBadArguments)}, // len = 4
		// Structs travel as arrays of their fields; an inout one comes back.
		{"mini_move", []any{[]any{1, 2, 0.5}, 3, 4, 2.0}, []any{uint64(10), []any{uint64(4), uint64(6), 1.0}}, 0},
		{"mini_grey", []any{[]any{3, 6, 9}}, []any{uint64(6), []any{uint64(65532), uint64(65529), uint64(65526)}}, 0},
		{"mini_grey", []any{[]any{3, 6}}, nil, int64(bulkhead.CodeBadArguments)},                 // a field short
		{"mini_grey", []any{[]any{3, 6, 70000}}, nil, int64(bulkhead.CodeBadArguments)},          // over unsigned short
		{"mini_move", []any{[]any{1, 2, "w"}, 3, 4, 2.0}, nil, int64(bulkhead.CodeBadArguments)}, // a field of the wrong type
		// Structs by value and nested: a nested array per nested struct.
		{"mini_area", []any{[]any{[]any{1, 2, 0.0}, []any{4, 6, 0.0}, 7}}, 12.0, 0},
		{"mini_shift", []any{[]any{[]any{1, 2, 1.0}, []any{4, 6, 2.0}, 7}, []any{10, -10, 0.5}},
			[]any{[]any{uint64(11), int64(-8), 0.5}, []any{uint64(14), int64(-4), 1.0}, uint64(7)}, 0},
		{"mini_grow", []any{[]any{[]any{1, 2, 1.0}, []any{4, 6, 2.0}, 7}, 1},
			[]any{uint64(7), []any{[]any{uint64(0), uint64(1), 1.0}, []any{uint64(5), uint64(7), 2.0}, uint64(7)}}, 0},
		{"mini_unit", nil, []any{[]any{uint64(0), uint64(0), 1.0}, []any{uint64(1), uint64(1), 1.0}, uint64(1)}, 0},
		{"mini_area", []any{[]any{[]any{1, 2, 0.0}, []any{4, 6}, 7}}, nil, int64(bulkhead.CodeBadArguments)},            // a nested field short
		{"mini_area", []any{[]any{[]any{1, 2, 0.0}, 5, 7}}, nil, int64(bulkhead.CodeBadArguments)},                      // a scalar for a struct
		{"mini_area", []any{[]any{[]any{1, 2, 0.0}, []any{4, 1 << 40, 0.0}, 7}}, nil, int64(bulkhead.CodeBadArguments)}, // over int
		{"mini_area", []any{[]any{[]any{1, 2, 0.0}, []any{4, 6, 0.0}}}, nil, int64(bulkhead.CodeBadArguments)},          // the outer short
		{"mini_shift", []any{[]any{[]any{1, 2, 1.0}, []any{4, 6, 2.0}, 7}}, nil, int64(bulkhead.CodeBadArguments)},      // an argument short
		// A buffer the library allocates: copied back, then freed; NULL is null.
		{"mini_dup", []any{[]byte{0, 1, 0xfe}}, []byte{0xff, 0xfe, 1}, 0},
		{"mini_dup", []any{[]byte{}}, nil, 0},
		// Enums, named and typedef'd, travel as their integers.
		{"mini_next", []any{2}, uint64(0), 0},
		{"mini_next", []any{0}, uint64(1), 0},
		{"mini_size_of", []any{11}, uint64(1), 0},
		// A char pointer result is a string: the library's own, or freed
		// by result_free; NULL and bytes that are not UTF-8 are errors.
		{"mini_color_name", []any{1}, "grün", 0},
		{"mini_color_name", []any{7}, nil, int64(bulkhead.CodeApplication)},
		{"mini_repeat", []any{"ab", 3}, "ababab", 0},
		{"mini_repeat", []any{"ab", 0}, "", 0},
		{"mini_repeat", []any{"ab", -1}, nil, int64(bulkhead.CodeApplication)},
	}
	for _, tt := range tests {
		got, err := bulkhead.CallAs[any](ctx, p, tt.method, tt.args...)
		var re *bulkhead.RemoteError
		switch {
		case tt.code != 0:
			if !errors.As(err, &re) || int64(re.Code) != tt.code {
				t.Errorf("%s%v = %v, %v; want ERROR %d", tt.method, tt.args, got, err, tt.code)
			}
		case err != nil:
			t.Errorf("%s%v: %v", tt.method, tt.args, err)
		case !equalValue(got, tt.want):
			t.Errorf("%s%v = %#v, want %#v", tt.method, tt.args, got, tt.want)
		}
	}
	rep, err := conform.Run(ctx, conform.Options{Command: bin})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Failed() > 0 {
		var b strings.Builder
		_ = rep.Print(&b)
		t.Errorf("the generated worker fails the conformance kit:\n%s", b.String())
	}
}

func equalValue(a, b any) bool {
	if x, ok := a.([]any); ok {
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !equalValue(x[i], y[i]) {
				return false
			}
		}
		return true
	}
	if x, ok := a.([]byte); ok {
		y, ok := b.([]byte)
		return ok && bytes.Equal(x, y)
	}
	if x, ok := a.(int64); ok { // negative integers decode as int64
		if y, ok := b.(float64); ok {
			return float64(x) == y
		}
	}
	return a == b
}

// An error expression's text ends the message of a status failure: cut
// before a control byte, to 256 bytes and to whole UTF-8 characters, left
// out when NULL or empty; strerror(errno) reads the call's errno, even after
// a status expression that set errno itself.
func TestMiniErrorText(t *testing.T) {
	testutil.CheckLeaks(t)
	bin := buildMini(t)
	ctx := context.Background()
	p, err := bulkhead.New(ctx, bulkhead.Config{Command: bin, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(ctx) })
	const pre = "mini_check: mini_check returned "
	tests := []struct {
		code int
		want string // the message; "" for success
	}{
		{0, ""},
		{-int(syscall.ERANGE), pre + "-1: Numerical result out of range"}, // glibc's strerror
		{1, pre + "1: grün fault"},
		{2, pre + "2"},
		{3, pre + "3"},
		{4, pre + "4: first line"},
		{5, pre + "5: " + strings.Repeat("x", 256)},
		{6, pre + "6: bad "},
		{7, pre + "7: " + strings.Repeat("x", 255)},
	}
	for _, tt := range tests {
		_, err := bulkhead.CallAs[any](ctx, p, "mini_check", tt.code)
		var re *bulkhead.RemoteError
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("mini_check(%d): %v", tt.code, err)
		case tt.want != "" && (!errors.As(err, &re) || re.Code != bulkhead.CodeApplication || re.Message != tt.want):
			t.Errorf("mini_check(%d): %v\nwant an application error %q", tt.code, err, tt.want)
		}
	}
}
