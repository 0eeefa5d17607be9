package conform

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bulkhead-go/bulkhead/internal/testutil"
	"github.com/bulkhead-go/bulkhead/worker"
)

func TestMain(m *testing.M) {
	testutil.Main(m, map[string]func(){"echo": runEcho, "classes": runClasses}, "echo", worker.IsWorker)
}

// runClasses is a Go SDK class server: class "Counter", apartment-threaded,
// and the echo methods.
func runClasses() {
	var s worker.Server
	HandleEcho(&s)
	c := &worker.Class[*int]{Name: "Counter",
		New: func(context.Context, *worker.Object, worker.Args) (*int, error) { return new(int), nil }}
	c.Method("add", func(_ context.Context, n *int, _ worker.Args) (any, error) { *n++; return *n, nil })
	s.Register(c)
	s.Run()
}

// runEcho is the Go SDK worker the kit checks.
func runEcho() {
	var s worker.Server
	HandleEcho(&s)
	s.Run()
}

// run runs the kit and returns the report; it fails the test if the kit
// itself could not run.
func run(t *testing.T, o Options) Report {
	t.Helper()
	rep, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// wantAllPass fails the test with the table if any check failed, or if a
// check was skipped that has all it needs.
func wantAllPass(t *testing.T, rep Report, mayskip ...string) {
	t.Helper()
	var b strings.Builder
	_ = rep.Print(&b)
	for _, r := range rep.Results {
		if r.Status == Fail || (r.Status == Skip && !contains(mayskip, r.Name)) {
			t.Errorf("%s: %s %s", r.Name, r.Status, r.Detail)
		}
	}
	if t.Failed() {
		t.Log(b.String())
	}
}

func contains(names []string, name string) bool {
	for _, n := range names {
		if strings.Contains(name, n) {
			return true
		}
	}
	return false
}

// The Go SDK passes; a serial Go worker reads CANCEL only after the call,
// which the protocol allows (CANCEL is best effort).
func TestGoSDK(t *testing.T) {
	testutil.CheckLeaks(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Command: self, Env: []string{testutil.HelperEnv + "=echo"}, Echo: "echo", Sleep: "sleep"}
	if raceEnabled {
		o.Only = "values"
	}
	wantAllPass(t, run(t, o), "CANCEL: of a running call", "objects:")
}

// Class servers on both SDKs pass the object checks too.
func TestClassServers(t *testing.T) {
	testutil.CheckLeaks(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Command: self, Env: []string{testutil.HelperEnv + "=classes"}, Echo: "echo", Sleep: "sleep", Classes: true}
	if raceEnabled {
		o.Only = "objects"
	}
	wantAllPass(t, run(t, o), "CANCEL: of a running call", "idle timeout")
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc not found in PATH")
	}
	bin := filepath.Join(t.TempDir(), "counter")
	cmd := exec.Command(gcc, "-std=c99", "-O2", "-Wall", "-Werror", "-I", "../../sdk/c", "-o", bin, "../csdk/testdata/counter.c")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", cmd.Args, err, out)
	}
	wantAllPass(t, run(t, Options{Command: bin, Classes: true}),
		"CALL: an unknown method", "deadline: a running call", "CANCEL: of a running call", "QUIT: a call in flight", "idle timeout")
}

// The C SDK passes every check, over both transports.
func TestCSDK(t *testing.T) {
	testutil.CheckLeaks(t)
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc not found in PATH")
	}
	bin := filepath.Join(t.TempDir(), "cworker")
	cmd := exec.Command(gcc, "-std=c99", "-O2", "-Wall", "-Werror", "-I", "../../sdk/c", "-o", bin,
		"../../examples/cworker/cworker.c")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", cmd.Args, err, out)
	}
	wantAllPass(t, run(t, Options{Command: bin, Echo: "echo", Sleep: "sleep"}), "objects:")
	// Without the optional methods, the checks that need them are skipped
	// and the rest still pass.
	rep := run(t, Options{Command: bin})
	wantAllPass(t, rep, "deadline: a running call", "CANCEL: of a running call", "QUIT: a call in flight", "objects:")
}

// A program that is no worker fails every check: the kit can fail.
func TestNotAWorker(t *testing.T) {
	testutil.CheckLeaks(t)
	truePath, err := exec.LookPath("true")
	if err != nil {
		t.Skip("no true(1)")
	}
	rep := run(t, Options{Command: truePath, Echo: "echo", Sleep: "sleep", Classes: true})
	for _, r := range rep.Results {
		if r.Status == Pass {
			var b strings.Builder
			_ = rep.Print(&b)
			t.Fatalf("true(1) passed %q:\n%s", r.Name, b.String())
		}
	}
	if rep.Failed() < len(rep.Results)-1 { // the idle check does not apply to a class server
		t.Fatalf("%d of %d checks failed for true(1)", rep.Failed(), len(rep.Results))
	}
}

// The embedded vectors are testdata/protocol/vectors.txt, and parse.
func TestVectorsMatchTestdata(t *testing.T) {
	b, err := os.ReadFile("../../testdata/protocol/vectors.txt")
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != embeddedVectors {
		t.Fatal("internal/conform/vectors.txt differs from testdata/protocol/vectors.txt: copy it over")
	}
	vs, err := parseVectors(embeddedVectors)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, v := range vs {
		kinds[v.kind]++
	}
	for _, k := range []string{"value", "bad", "envelope", "frame"} {
		if kinds[k] == 0 {
			t.Errorf("no %s vectors", k)
		}
	}
}

func TestParseVectorsErrors(t *testing.T) {
	tests := []struct{ text, want string }{
		{"value x", "vectors.txt:1: want KIND NAME BYTES"},
		{"# c\nweird x 00", "vectors.txt:2: unknown kind"},
		{"value x 0g", "vectors.txt:1: x: token"},
		{"value x 00*-1", "bad repeat count"},
		{"value x 00*abc", "bad repeat count"},
	}
	for _, tt := range tests {
		if _, err := parseVectors(tt.text); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("parseVectors(%q) = %v, want %q", tt.text, err, tt.want)
		}
	}
	vs, err := parseVectors("value x 81*3 01 -\nframe y -")
	if err != nil || len(vs) != 2 || string(vs[0].bytes) != "\x81\x81\x81\x01" || len(vs[1].bytes) != 0 {
		t.Fatalf("parseVectors = %+v, %v", vs, err)
	}
}

// A program that is also the service (Options.Service) skips the check
// that would start it plainly; the other environment checks still run.
func TestServiceProgram(t *testing.T) {
	testutil.CheckLeaks(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	rep := run(t, Options{Command: self, Env: []string{testutil.HelperEnv + "=echo"}, Service: true, Only: "environment"})
	for _, r := range rep.Results {
		want := Pass
		if strings.Contains(r.Name, "no BULKHEAD_FD") {
			want = Skip
		}
		if r.Status != want {
			t.Errorf("%s: %s (%s), want %s", r.Name, r.Status, r.Detail, want)
		}
	}
	if len(rep.Results) != 3 {
		t.Fatalf("%d environment checks ran, want 3", len(rep.Results))
	}
}
