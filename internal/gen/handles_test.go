package gen

import (
	"context"
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/activation"
	"github.com/bulkhead-go/bulkhead/internal/conform"
	"github.com/bulkhead-go/bulkhead/internal/testutil"
)

const handlesSpec = "testdata/handles/minih.toml"

// The output for mini.h's handles is the golden one, and the same each run.
func TestGoldenMiniHandles(t *testing.T) {
	files := generate(t, handlesSpec)
	if again := generate(t, handlesSpec); !equalFiles(files, again) {
		t.Fatal("two runs of gen on the same input differ")
	}
	golden(t, "testdata/handles", files, ".golden")
}

// examples/xmldoc/xmlbh is what gen writes from libxml2's tree.h: a handle
// spelled two ways (xmlDocPtr, const xmlDoc *), and a buffer libxml2
// allocates.
func TestGoldenXMLDoc(t *testing.T) {
	if _, err := os.Stat("/usr/include/libxml2/libxml/tree.h"); err != nil {
		t.Skip("no /usr/include/libxml2/libxml/tree.h: apt-get install libxml2-dev (CI does)")
	}
	golden(t, "../../examples/xmldoc/xmlbh", generate(t, "../../examples/xmldoc/xmldoc.toml"), "")
}

// examples/gzfile/gzbh is what gen writes from zlib.h's gzip file API.
func TestGoldenGzFile(t *testing.T) {
	if _, err := os.Stat("/usr/include/zlib.h"); err != nil {
		t.Skip("no /usr/include/zlib.h: apt-get install zlib1g-dev (CI does)")
	}
	golden(t, "../../examples/gzfile/gzbh", generate(t, "../../examples/gzfile/gzfile.toml"), "")
}

func TestHandleSpecErrors(t *testing.T) {
	base := "header = \"mini.h\"\npackage = \"minihbh\"\ninclude = [\".\"]\n"
	counter := "[[handle]]\ntype = \"mini_counter_t\"\nclass = \"Counter\"\nfree = \"mini_counter_free\"\n"
	ctor := "[[func]]\nname = \"mini_counter_new\"\n"
	tests := []struct{ name, spec, want string }{
		{"bad type", base + "[[handle]]\ntype = \"a b\"\nclass = \"C\"\nfree = \"f\"\n" + ctor, "handle[0].type: want a C type name"},
		{"bad class", base + "[[handle]]\ntype = \"mini_counter_t\"\nclass = \"counter\"\nfree = \"f\"\n" + ctor, "handle[0].class: \"counter\" is not an exported"},
		{"twice", base + counter + counter + ctor, "handle[1]: type \"mini_counter_t\" or class \"Counter\" is declared twice"},
		{"free exposed", base + counter + ctor + "[[func]]\nname = \"mini_counter_free\"\n", "mini_counter_free runs at Release; it cannot also be a func"},
		{"free not in header", base + strings.Replace(counter, "mini_counter_free", "nosuch", 1) + ctor, "handle[0] (mini_counter_t): annotation does not fit the header: no function nosuch"},
		{"free of another type", base + strings.Replace(counter, "mini_counter_free", "mini_strlen", 1) + ctor, "free: mini_strlen must take one parameter of type mini_counter_t"},
		{"no constructor", base + counter + "[[func]]\nname = \"mini_counter_add\"\n", "no func returns it, so no object of class Counter can be made"},
		{"two handles", base + counter + ctor + "[[func]]\nname = \"mini_counter_diff\"\n", "mini_counter_diff takes two handles"},
		{"annotated handle", base + counter + ctor + "[[func]]\nname = \"mini_counter_add\"\n[func.params.c]\ndir = \"in\"\n", "a handle (mini_counter_t) takes no annotation"},
		{"status on a constructor", base + counter + ctor + "status = \"ret != 0\"\n", "status on a constructor of Counter"},
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

// A handle is an object: its constructors make it in one worker, its methods
// find it there, Release frees it, and whatever names no live object (never
// made, released, or of a worker that died) is a typed error, never a
// pointer.
func TestMiniHandles(t *testing.T) {
	testutil.CheckLeaks(t)
	bin := buildTestWorker(t, handlesSpec)
	ctx := context.Background()
	act, err := activation.NewActivator(activation.ActivatorConfig{Servers: []activation.ServerConfig{{
		Process: bulkhead.Process{Command: bin}, Classes: []activation.ClassConfig{{Name: "Counter"}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	defer act.Close(ctx)
	call := func(o *activation.Object, method string, args ...any) int64 {
		t.Helper()
		v, err := bulkhead.CallAs[int64](ctx, o, method, args...)
		if err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		return v
	}
	a, err := act.CreateInstance(ctx, "Counter", "mini_counter_new", 5)
	if err != nil {
		t.Fatal(err)
	}
	b, err := act.CreateInstance(ctx, "Counter", "mini_counter_sum", 100, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := call(a, "mini_counter_add", 3); got != 8 {
		t.Fatalf("a + 3 = %d, want 8", got)
	}
	if got := call(b, "mini_counter_add", -1); got != 100 {
		t.Fatalf("b - 1 = %d, want 100: the handles share state", got)
	}
	if got := call(a, "mini_counter_add", 2); got != 10 {
		t.Fatalf("a + 2 = %d, want 10", got)
	}
	if got := call(b, "mini_counter_live"); got != 2 {
		t.Fatalf("live = %d, want 2", got)
	}
	if err := a.Release(); err != nil {
		t.Fatal(err)
	}
	// RELEASE and the next OBJCALL are read in order: the free has run.
	if got := call(b, "mini_counter_live"); got != 1 {
		t.Fatalf("live after a's Release = %d, want 1: Release did not free the handle", got)
	}
	if _, err := a.Call(ctx, "mini_counter_add", 1); !errors.Is(err, activation.ErrReleased) {
		t.Fatalf("a call on a released handle: %v, want ErrReleased", err)
	}
	for _, tt := range []struct {
		name string
		args []any
		code bulkhead.ErrorCode
	}{
		{"no constructor named", nil, bulkhead.CodeBadArguments},
		{"a constructor that is not", []any{"mini_counter_add", 1}, bulkhead.CodeBadArguments},
		{"a method's name as a number", []any{7}, bulkhead.CodeBadArguments},
		{"wrong arguments", []any{"mini_counter_new", "x"}, bulkhead.CodeBadArguments},
		{"too many arguments", []any{"mini_counter_new", 1, 2}, bulkhead.CodeBadArguments},
		{"NULL from the constructor", []any{"mini_counter_new", -1}, bulkhead.CodeApplication},
	} {
		_, err := act.CreateInstance(ctx, "Counter", tt.args...)
		var re *bulkhead.RemoteError
		if !errors.As(err, &re) || re.Code != tt.code {
			t.Errorf("%s: CreateInstance%v = %v, want ERROR %d", tt.name, tt.args, err, tt.code)
		}
	}
	if _, err := b.Call(ctx, "mini_scale", 1.0, 2); !errors.As(err, new(*bulkhead.RemoteError)) {
		t.Fatalf("a plain function as a method: %v, want ERROR unknown_method", err)
	}
	// The worker dies: the handle goes with it, and calls on it are
	// ErrObjectDisconnected; a new object is made in a new worker.
	if err := syscall.Kill(b.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Call(ctx, "mini_counter_add", 1); !errors.Is(err, activation.ErrObjectDisconnected) {
		t.Fatalf("a call on a handle whose worker died: %v, want ErrObjectDisconnected", err)
	}
	c, err := act.CreateInstance(ctx, "Counter", "mini_counter_new", 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := call(c, "mini_counter_live"); got != 1 {
		t.Fatalf("live in the new worker = %d, want 1", got)
	}
	b.Release()
	c.Release()
}

// The generated class server passes the conformance kit with --classes,
// whose object checks include an unknown object id (forged) and a call on a
// released one (stale): both ERROR unknown_object.
func TestMiniHandlesConform(t *testing.T) {
	bin := buildTestWorker(t, handlesSpec)
	rep, err := conform.Run(context.Background(), conform.Options{Command: bin, Classes: true,
		ActivateArgs: []any{"mini_counter_new", 1}})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	_ = rep.Print(&b)
	if rep.Failed() > 0 {
		t.Fatalf("the generated class server fails the conformance kit:\n%s", b.String())
	}
	for _, r := range rep.Results {
		if strings.HasPrefix(r.Name, "objects:") && r.Status != conform.Pass {
			t.Errorf("%s: %s %s; want every object check to run and pass", r.Name, r.Status, r.Detail)
		}
	}
}
