package gen

import (
	"bytes"
	"compress/zlib"
	"context"
	"errors"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/examples/zlib/zlibbh"
	"github.com/bulkhead-go/bulkhead/internal/testutil"
)

// recorder is a Caller that keeps what a generated function sends.
type recorder struct {
	method string
	args   []any
}

var errRecorded = errors.New("recorded")

func (r *recorder) Call(_ context.Context, method string, args ...any) (bulkhead.Reply, error) {
	r.method, r.args = method, args
	return bulkhead.Reply{}, errRecorded
}

// The wire arguments are the C parameters that are arguments in the
// header's order (a scalar before a buffer stays before it; an unchecked
// length stays in its place), then the args keys: what docs/GEN.md,
// "Calling generated code without Go", says. The model, the generated Go
// and the generated worker agree on it.
func TestWireOrder(t *testing.T) {
	if _, err := os.Stat("/usr/include/zlib.h"); err != nil {
		t.Skip("no /usr/include/zlib.h: apt-get install zlib1g-dev (CI does)")
	}
	s := loadSpec(t, "../../examples/zlib/zlib.toml")
	fns, err := Load(s)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{ // by method
		"crc32":           {"crc", "buf"},        // uLong crc32(uLong crc, const Bytef *buf, uInt len)
		"crc32_unchecked": {"crc", "buf", "len"}, // the same, len kept in its place
		"uncompress":      {"source", "destCap"}, // (dest, destLen, source, sourceLen) + args = ["destCap"]
	}
	for i := range fns {
		w, ok := want[fns[i].spec.Method]
		if !ok {
			continue
		}
		delete(want, fns[i].spec.Method)
		var got []string
		for _, a := range fns[i].goArgs() {
			got = append(got, a.name)
		}
		if !reflect.DeepEqual(got, w) {
			t.Errorf("%s: arguments %q, want %q", fns[i].spec.Method, got, w)
		}
	}
	if len(want) > 0 {
		t.Fatalf("not in the zlib spec: %v", want)
	}

	// The generated Go sends them in that order.
	ctx := context.Background()
	buf := []byte("abc")
	var r recorder
	_, _ = zlibbh.Crc32(ctx, &r, 7, buf)
	if r.method != "crc32" || !reflect.DeepEqual(r.args, []any{uint64(7), buf}) {
		t.Errorf("zlibbh.Crc32 sends %s%v, want crc32[7 abc]", r.method, r.args)
	}
	_, _ = zlibbh.Uncompress(ctx, &r, buf, 100)
	if r.method != "uncompress" || !reflect.DeepEqual(r.args, []any{buf, uint64(100)}) {
		t.Errorf("zlibbh.Uncompress sends %s%v, want uncompress[abc 100]", r.method, r.args)
	}

	// The generated worker reads them in that order, and refuses another.
	p := zlibPool(t, s)
	if got, err := bulkhead.CallAs[uint64](ctx, p, "crc32", uint64(0), buf); err != nil || got != uint64(crc32.ChecksumIEEE(buf)) {
		t.Errorf("crc32 [0, abc] = %#x, %v; want %#x", got, err, crc32.ChecksumIEEE(buf))
	}
	var re *bulkhead.RemoteError
	if _, err := p.Call(ctx, "crc32", buf, uint64(0)); !errors.As(err, &re) || re.Code != bulkhead.CodeBadArguments {
		t.Errorf("crc32 [abc, 0]: %v; want bad_arguments", err)
	}
	var z bytes.Buffer
	zw := zlib.NewWriter(&z)
	zw.Write(buf)
	zw.Close()
	if got, err := bulkhead.CallAs[[]byte](ctx, p, "uncompress", z.Bytes(), uint64(100)); err != nil || !bytes.Equal(got, buf) {
		t.Errorf("uncompress [z, 100] = %q, %v; want %q", got, err, buf)
	}
}

// zlibPool is a pool of one worker compiled from what gen writes for the
// zlib spec s.
func zlibPool(t *testing.T, s *Spec) *bulkhead.Pool {
	t.Helper()
	testutil.CheckLeaks(t)
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc not found in PATH")
	}
	files, err := Generate(s)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	src, bin := filepath.Join(dir, WorkerFile), filepath.Join(dir, "zlibworker")
	if err := os.WriteFile(src, files[WorkerFile], 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(gcc, "-std=c99", "-O2", "-I", "../../sdk/c", "-o", bin, src, "-lz")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", cmd.Args, err, out)
	}
	ctx := context.Background()
	p, err := bulkhead.New(ctx, bulkhead.Config{Command: bin, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(ctx) })
	return p
}
