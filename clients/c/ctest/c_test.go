// Package ctest_test builds the C client (bulkhead_client.c) with the
// machine's C compiler, replays the conformance vectors through it
// (vectortest.c), and runs example.c against a `bulkhead serve` child.
package ctest_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/client"
	"github.com/bulkhead-go/bulkhead/internal/daemontest"
)

const vectorsFile = "../../../testdata/client-protocol/vectors.txt"

// cflags are strict: the client must build warning-free as C99, and work
// optimised as a user builds it (-O2 once caught a strict-aliasing bug).
var cflags = []string{"-std=c99", "-pedantic", "-O2", "-g", "-Wall", "-Wextra", "-Werror"}

// compile builds srcs into programs in dir: one as a user builds it, and
// one with ASan and UBSan if the compiler and the machine have them, so that
// a memory error in the client fails the test.
func compile(t *testing.T, dir, out string, srcs ...string) []string {
	t.Helper()
	cc := ""
	for _, name := range []string{"cc", "gcc", "clang"} {
		if p, err := exec.LookPath(name); err == nil {
			cc = p
			break
		}
	}
	if cc == "" {
		t.Skip("no C compiler (cc, gcc or clang) in PATH; cannot build the C client")
	}
	build := func(bin string, extra ...string) string {
		args := append(append(append([]string{}, cflags...), extra...), "-o", bin)
		if out, err := exec.Command(cc, append(args, srcs...)...).CombinedOutput(); err != nil {
			t.Fatalf("%s %s: %v\n%s", cc, strings.Join(args, " "), err, out)
		}
		return bin
	}
	bins := []string{build(filepath.Join(dir, out))}
	if sanitizers(t, cc, dir) {
		bins = append(bins, build(filepath.Join(dir, out+"-san"), "-fsanitize=address,undefined", "-fno-sanitize-recover=all"))
	} else {
		t.Logf("%s: no sanitizers here", out)
	}
	return bins
}

// sanitizers reports whether cc can build and run a program with ASan and
// UBSan here.
func sanitizers(t *testing.T, cc, dir string) bool {
	src, bin := filepath.Join(dir, "probe.c"), filepath.Join(dir, "probe")
	if err := os.WriteFile(src, []byte("int main(void) { return 0; }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return exec.Command(cc, "-fsanitize=address,undefined", "-o", bin, src).Run() == nil && exec.Command(bin).Run() == nil
}

// TestCPlusPlus checks that the header is usable from C++.
func TestCPlusPlus(t *testing.T) {
	cxx, err := exec.LookPath("c++")
	if err != nil {
		t.Skip("no c++ in PATH")
	}
	src := filepath.Join(t.TempDir(), "use.cc")
	prog := `#include "bulkhead_client.h"
int main() { bhc_error e; bhc_buf b = bhc_buf(); bhc_put_str(&b, "x"); bhc_buf_free(&b);
	bhc_close(bhc_connect("/nonexistent", 0, 10, &e)); return e.kind[0] == 0; }`
	if err := os.WriteFile(src, []byte(prog), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(cxx, "-Wall", "-Wextra", "-Werror", "-I..", "-fsyntax-only", src).CombinedOutput(); err != nil {
		t.Fatalf("c++: %v\n%s", err, out)
	}
}

// vector is one line of vectors.txt.
type vector struct {
	dir, name, hex string
	meaning        map[string]any
}

func loadVectors(t *testing.T) []vector {
	b, err := os.ReadFile(vectorsFile)
	if err != nil {
		t.Fatal(err)
	}
	var vs []vector
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.SplitN(line, " ", 4)
		if len(f) != 4 {
			t.Fatalf("bad vector line %q", line)
		}
		vs = append(vs, vector{dir: f[0], name: f[1], hex: f[2], meaning: decodeJSON(t, f[3])})
	}
	return vs
}

// decodeJSON keeps numbers exact (some exceed 2^53).
func decodeJSON(t *testing.T, s string) map[string]any {
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		t.Fatalf("JSON %q: %v", s, err)
	}
	return m
}

// notSent are client vectors the C client does not send: a version it does
// not speak, subscriptions (not covered), and a deadline taken from the
// clock; its PING and PONG.
var notSent = map[string]bool{"hello.v2": true, "request.call.deadline": true, "request.subscribe": true,
	"cancel": true, "ping": true, "pong": true}

// TestCVectors replays every vector through the C client.
func TestCVectors(t *testing.T) {
	for _, bin := range compile(t, t.TempDir(), "vectortest", "../vectortest.c") {
		t.Run(filepath.Base(bin), func(t *testing.T) { replay(t, bin) })
	}
}

func replay(t *testing.T, bin string) {
	out, err := exec.Command(bin, vectorsFile).Output()
	if err != nil {
		t.Fatalf("vectortest: %v\n%s", err, out)
	}
	got := map[string]string{} // "kind name" -> the rest of the line
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		f := strings.SplitN(sc.Text(), " ", 3)
		if len(f) != 3 {
			t.Fatalf("vectortest printed %q", sc.Text())
		}
		got[f[0]+" "+f[1]] = f[2]
	}
	if want := `{"rc":-1,"kind":"timeout","cancel_sent":true,"then":"hi"}`; got["timeout call"] != want {
		t.Errorf("a request not answered in time: %s, want %s", got["timeout call"], want)
	}
	vs := loadVectors(t)
	byName := map[string]vector{}
	for _, v := range vs {
		byName[v.dir+" "+v.name] = v
	}
	for _, v := range vs {
		line, ok := got[v.dir+" "+v.name]
		switch {
		case v.dir == "bad":
			if line != "rejected protocol" {
				t.Errorf("bad %s: the C client said %q, want rejected protocol", v.name, line)
			}
		case v.dir == "daemon":
			if !ok || !reflect.DeepEqual(decodeJSON(t, line), v.meaning) {
				t.Errorf("daemon %s: the C client read\n%s\nwant %v", v.name, line, v.meaning)
			}
			if v.meaning["type"] == "ERROR" {
				checkError(t, v, decodeJSON(t, got["error "+v.name]))
			}
		case notSent[v.name]:
		case !ok:
			t.Errorf("client %s: vectortest does not send it", v.name)
		case line != v.hex:
			t.Errorf("client %s: the C client sent\n%s\nwant\n%s", v.name, line, v.hex)
		default:
			checkAnswer(t, v.name, decodeJSON(t, got["answer "+v.name]), byName)
		}
	}
}

// checkError compares a bhc_error with the ERROR's payload, field by field.
func checkError(t *testing.T, v vector, e map[string]any) {
	p := v.meaning["payload"].(map[string]any)
	for k, want := range p {
		switch k {
		case "details":
			continue // not in bhc_error: an FFI user reads the payload for it
		case "stack":
			k = "stderr"
		case "cause":
			if m, ok := want.(map[string]any); ok {
				want = m["kind"]
			}
		}
		if !reflect.DeepEqual(e[k], want) {
			t.Errorf("%s: bhc_error's %s is %v, want %v", v.name, k, e[k], want)
		}
	}
}

// checkAnswer checks what the C API returned from the daemon's reply.
func checkAnswer(t *testing.T, name string, a map[string]any, byName map[string]vector) {
	reply := map[string]string{"request.call": "reply.call", "request.call.noargs": "reply.call.null",
		"request.object_call": "reply.object_call", "request.create_instance": "reply.create_instance",
		"request.clone": "reply.clone", "request.rot_lookup": "reply.rot_lookup",
		"request.get_class_object": "reply.get_class_object", "request.status": "reply.status"}[name]
	if reply == "" {
		return
	}
	p := byName["daemon "+reply].meaning["payload"].(map[string]any)
	want := map[string]any{"result": p["result"], "handle": p["object"], "pid": json.Number("0")}
	if name == "request.status" {
		want["result"] = p
	}
	if h, ok := p["class_object"]; ok {
		want["handle"] = h
	}
	if want["handle"] == nil {
		want["handle"] = json.Number("0")
	}
	if pid, ok := p["pid"]; ok && name != "request.clone" {
		want["pid"] = pid
	}
	if !reflect.DeepEqual(a, want) {
		t.Errorf("%s: the C API returned %v, want %v", name, a, want)
	}
}

// TestCExample runs example.c against a daemon on the shipped example
// config, with a Go client of the same daemon holding an object meanwhile:
// the C client's references end with its process, the Go client's stay.
func TestCExample(t *testing.T) {
	examples := compile(t, t.TempDir(), "example", "../example.c", "../bulkhead_client.c")
	d := daemontest.Start(t, daemontest.Build(t))
	ctx := context.Background()
	gc, err := client.Dial(ctx, d.Socket, client.Options{Name: t.Name()})
	if err != nil {
		t.Fatal(err)
	}
	defer gc.Close()
	mine, err := gc.CreateInstance(ctx, "Counter")
	if err != nil {
		t.Fatal(err)
	}
	want := regexp.MustCompile(`^echo: hello
nope: remote \(code 2\) in nope: unknown method "nope"; the worker's methods: .*echo.*
Counter: handle 1, server pid [1-9][0-9]*
add\(5\) = 15
add\(5\) = 20
get after release: not_found
$`)
	for _, example := range examples {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		out, err := exec.CommandContext(ctx, example, d.Socket).CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("%s: %v\n%s\ndaemon:\n%s", filepath.Base(example), err, out, d.Stderr())
		}
		if !want.Match(out) {
			t.Errorf("%s printed:\n%s", filepath.Base(example), out)
		}
	}
	if n, err := bulkhead.CallAs[int](ctx, mine, "add", 2); err != nil || n != 2 {
		t.Fatalf("the Go client's object after the C clients: %d, %v", n, err)
	}
	st, err := gc.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	act, _ := st["activator"].(map[any]any)
	if n, _ := act["Objects"].(uint64); n != 1 {
		t.Fatalf("%v objects in the daemon once the C clients have exited, want the Go client's 1", act["Objects"])
	}
}
