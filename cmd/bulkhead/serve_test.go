package main

import (
	"bufio"
	"context"
	"encoding/json"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/client"
	"github.com/bulkhead-go/bulkhead/internal/natsembed"
	"github.com/bulkhead-go/bulkhead/internal/testutil"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// serveProcess is `bulkhead serve` as a child process: this test binary as
// the CLI.
type serveProcess struct {
	cmd  *exec.Cmd
	sock string
	cfg  string
	log  *syncLog
	done chan struct{}
}

// syncLog is the daemon's stderr, read while it is written.
type syncLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *syncLog) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.WriteString(line + "\n")
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

const serveConfig = `
socket = "SOCK"
drain_grace = "5s"
[[pool]]
name = "demo"
command = "${BULKHEAD_SELF}"
args = ["worker"]
workers = WORKERS
[activator]
linger = "-1ns"
[[server]]
name = "counter"
command = "${BULKHEAD_SELF}"
args = ["counter-server"]
  [[server.class]]
  name = "Counter"
`

func startServe(t *testing.T, args ...string) *serveProcess {
	t.Helper()
	dir := t.TempDir()
	p := &serveProcess{sock: filepath.Join(dir, "s.sock"), cfg: filepath.Join(dir, "c.toml"), log: &syncLog{},
		done: make(chan struct{})}
	p.writeConfig(t, 1)
	exe, _ := os.Executable()
	p.cmd = exec.Command(exe, append([]string{"serve", "--config", p.cfg}, args...)...)
	p.cmd.Env = testutil.HelperEnviron("cli")
	stderr, _ := p.cmd.StderrPipe()
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.log.add(sc.Text())
		}
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		p.cmd.Wait()
	})
	testutil.Until(t, "the daemon to serve", func() bool {
		c, err := client.Dial(context.Background(), p.sock, client.Options{})
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return p
}

func (p *serveProcess) writeConfig(t *testing.T, workers int) {
	text := strings.NewReplacer("SOCK", p.sock, "WORKERS", strconv.Itoa(workers)).Replace(serveConfig)
	if err := os.WriteFile(p.cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

// workerPIDs are the demo pool's workers, by the daemon's status.
func (p *serveProcess) workerPIDs(t *testing.T) []int {
	t.Helper()
	c, err := client.Dial(context.Background(), p.sock, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st, err := c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, pool := range st["pools"].([]any) {
		for _, w := range pool.(map[any]any)["workers"].([]any) {
			pids = append(pids, int(w.(map[any]any)["pid"].(uint64)))
		}
	}
	return pids
}

// gone reports whether pid has exited (a zombie counts: it runs nothing).
func gone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return strings.HasPrefix(rest, "Z")
}

// serve, call, reload (a good config and a bad one), and drain, as an
// operator does it, with signals.
func TestServeCallReloadDrain(t *testing.T) {
	p := startServe(t)
	if code, out, errs := run(t, "call", "--socket", p.sock, "demo", "echo", `"hello"`); code != 0 || out != "\"hello\"\n" {
		t.Fatalf("call: %d %q %q", code, out, errs)
	}
	if code, _, _ := run(t, "call", "--socket", p.sock, "demo"); code != 2 {
		t.Fatalf("call without a method: exit %d, want 2", code)
	}
	// Flags end at POOL: a negative number needs no --, the old -- still
	// works, and integers above MaxInt64 go as CBOR unsigned integers.
	for _, tt := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"echo", "-5"}, 0, "-5\n"},
		{[]string{"echo", "--", "-5"}, 0, "-5\n"},
		{[]string{"echo", "9223372036854775808"}, 0, "9223372036854775808\n"},
		{[]string{"echo", "18446744073709551615"}, 0, "18446744073709551615\n"},
		{[]string{"echo", "18446744073709551616"}, 2, ""},
		{[]string{"echo", "--nosuch"}, 2, ""},
	} {
		code, out, errs := run(t, append([]string{"call", "--socket", p.sock, "demo"}, tt.args...)...)
		if code != tt.code || out != tt.out {
			t.Errorf("call demo %q: exit %d, %q %q; want %d %q", tt.args, code, out, errs, tt.code, tt.out)
		}
	}
	if code, out, errs := run(t, "call", "--socket", p.sock, "nopool", "echo"); code != 1 || !strings.Contains(out, `"kind":"permission_denied"`) ||
		!regexp.MustCompile(`(?s)no pool "nopool" that uid.*\nhint: `).MatchString(errs) {
		t.Errorf("call of an unknown pool: exit %d, %q %q", code, out, errs)
	}
	if code, out, _ := run(t, "call", "--socket", p.sock, "demo", "nosuch"); code != 1 || !strings.Contains(out, `"kind":"remote"`) {
		t.Fatalf("call of an unknown method: exit %d, %q", code, out)
	}
	p.writeConfig(t, 2)
	p.cmd.Process.Signal(syscall.SIGHUP)
	testutil.Until(t, "the reload to give the pool 2 workers", func() bool { return len(p.workerPIDs(t)) == 2 })
	os.WriteFile(p.cfg, []byte("workers = = 3"), 0o600)
	p.cmd.Process.Signal(syscall.SIGHUP)
	testutil.Until(t, "the bad reload to be refused", func() bool { return strings.Contains(p.log.String(), "reload refused") })
	if code, _, _ := run(t, "call", "--socket", p.sock, "demo", "echo", "1"); code != 0 {
		t.Fatal("the daemon stopped serving after a bad reload")
	}
	pids := p.workerPIDs(t)
	p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.done
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("serve after SIGTERM: %v\n%s", err, p.log)
	}
	for _, pid := range pids {
		if !gone(pid) {
			t.Errorf("worker %d outlived the drained daemon", pid)
		}
	}
	if _, err := os.Stat(p.sock); err == nil {
		t.Log("the socket file is left behind (the next serve replaces it)")
	}
}

// call --class: an object created with --new's arguments, its methods
// called in order (one JSON line each), released at the end; a failure is
// the typed error and exit 1, a bad command line exit 2.
func TestCallClass(t *testing.T) {
	p := startServe(t)
	tests := []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"--new", "[10]", "add", "5", ",", "add", "-3", ",", "get"}, 0, "15\n12\n12\n"},
		{[]string{"get"}, 0, "0\n"},
		{[]string{"add", "1", ",", "nosuch"}, 1, "1\n"},
		{[]string{"--new", "7", "get"}, 2, ""},
		{[]string{"get", ","}, 2, ""},
		{[]string{"add", "x"}, 2, ""},
	}
	for _, tt := range tests {
		args := append([]string{"call", "--socket", p.sock, "--class", "Counter"}, tt.args...)
		code, out, errs := run(t, args...)
		if tt.code == 1 {
			out, _, _ = strings.Cut(out, "{") // then the error's JSON
		}
		if code != tt.code || out != tt.out {
			t.Errorf("call --class Counter %q: exit %d, %q %q; want %d %q", tt.args, code, out, errs, tt.code, tt.out)
		}
	}
	code, out, errs := run(t, "call", "--socket", p.sock, "--class", "NoSuch", "get")
	if code != 1 || !strings.Contains(out, "permission_denied") || !strings.Contains(errs, "hint: class") {
		t.Errorf("call --class NoSuch: exit %d, %q %q", code, out, errs)
	}
	// No object outlives its command.
	testutil.Until(t, "the objects to be released", func() bool {
		c, err := client.Dial(context.Background(), p.sock, client.Options{})
		if err != nil {
			return false
		}
		defer c.Close()
		st, err := c.Status(context.Background())
		if err != nil {
			return false
		}
		servers, _ := st["servers"].([]any)
		for _, s := range servers {
			if n, _ := s.(map[any]any)["objects"].(uint64); n != 0 {
				return false
			}
		}
		return true
	})
}

// The daemon's SIGKILL takes every worker with it (parent-death signal).
func TestServeKilledTakesWorkers(t *testing.T) {
	p := startServe(t)
	pids := p.workerPIDs(t)
	if len(pids) == 0 {
		t.Fatal("no workers")
	}
	p.cmd.Process.Kill()
	p.cmd.Wait()
	testutil.Until(t, "the workers to die with the daemon", func() bool {
		for _, pid := range pids {
			if !gone(pid) {
				return false
			}
		}
		return true
	})
}

// call's arguments: integers stay integers, @FILE is bytes.
func TestCallArgs(t *testing.T) {
	file := filepath.Join(t.TempDir(), "blob")
	os.WriteFile(file, []byte{0, 1, 2}, 0o600)
	tests := []struct {
		arg  string
		want any
	}{
		{"7", int64(7)}, {"-3", int64(-3)}, {"2.5", 2.5}, {"1e3", 1000.0}, {`"x"`, "x"},
		{"9223372036854775807", int64(math.MaxInt64)}, {"-9223372036854775808", int64(math.MinInt64)},
		{"9223372036854775808", uint64(1 << 63)}, {"18446744073709551615", uint64(math.MaxUint64)},
		{"[18446744073709551615]", []any{uint64(math.MaxUint64)}}, {"1.0", 1.0},
		{`[1, 2.5]`, []any{int64(1), 2.5}}, {`{"n": 4}`, map[string]any{"n": int64(4)}},
		{"@" + file, []byte{0, 1, 2}},
	}
	for _, tt := range tests {
		got, err := callArg(tt.arg, strings.NewReader(""))
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("callArg(%q) = %#v, %v; want %#v", tt.arg, got, err, tt.want)
		}
	}
	for _, bad := range []string{"{", "1 2", "@/no/such/file", "18446744073709551616", "-9223372036854775809",
		`{"n": [99999999999999999999]}`} {
		if _, err := callArg(bad, strings.NewReader("")); err == nil {
			t.Errorf("callArg(%q) accepted", bad)
		}
	}
}

// serve --nats: the daemon is also a cluster node; a NATS client calls its
// pool, a SIGHUP that adds a pool registers it on NATS, and SIGTERM
// drains the node with the daemon.
func TestServeNATS(t *testing.T) {
	ns, err := natsembed.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	p := startServe(t, "--nats", ns.URL())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := client.DialNATS(ctx, ns.URL(), "demo")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.WaitNodes(ctx, 1); err != nil {
		t.Fatal(err)
	}
	got, err := bulkhead.CallAs[string](ctx, c, "echo", "hello")
	if err != nil || got != "hello" {
		t.Fatalf("echo over NATS: %q, %v\n%s", got, err, p.log)
	}
	// A reload that adds a pool reaches NATS without a restart; one that
	// changes [nats] keeps the node's old prefix (the added pool is under
	// it) and warns that the change waits for the next start.
	p.writeConfig(t, 1)
	added := "\n[[pool]]\nname = \"added\"\ncommand = \"${BULKHEAD_SELF}\"\nargs = [\"worker\"]\nworkers = 1\n" +
		"[nats]\nprefix = \"other\"\nurl = \"nats://127.0.0.1:1\"\n"
	f, err := os.OpenFile(p.cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(added)
	f.Close()
	p.cmd.Process.Signal(syscall.SIGHUP)
	ca, err := client.DialNATS(ctx, ns.URL(), "added")
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close()
	if err := ca.WaitNodes(ctx, 1); err != nil {
		t.Fatalf("the added pool never reached NATS: %v\n%s", err, p.log)
	}
	if got, err := bulkhead.CallAs[string](ctx, ca, "echo", "again"); err != nil || got != "again" {
		t.Fatalf("echo on the added pool: %q, %v", got, err)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.done
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("serve after SIGTERM: %v\n%s", err, p.log)
	}
	if !strings.Contains(p.log.String(), `"msg":"cluster node"`) {
		t.Errorf("no cluster node record in the log:\n%s", p.log)
	}
	if !regexp.MustCompile(`"level":"WARN","msg":"reload: the changed \[nats\] keys take effect at the next start[^"]*","keys":\["nats.prefix"\]`).MatchString(p.log.String()) {
		t.Errorf("no warning naming nats.prefix (and only it: --nats overrides the url) after the reload:\n%s", p.log)
	}
}

// serve --listen: the daemon's pools' metrics (a Prometheus text parser
// takes them) and status report, following a reload.
func TestServeListen(t *testing.T) {
	p := startServe(t, "--listen", "127.0.0.1:0")
	var addr string
	testutil.Until(t, "the daemon to serve metrics", func() bool {
		if i := strings.Index(p.log.String(), `"listen":"`); i >= 0 {
			addr, _, _ = strings.Cut(p.log.String()[i+len(`"listen":"`):], `"`)
		}
		return addr != ""
	})
	if code, _, _ := run(t, "call", "--socket", p.sock, "demo", "echo", "1"); code != 0 {
		t.Fatal("call failed")
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("/metrics is not Prometheus text: %v", err)
	}
	if _, ok := families["bulkhead_calls_total"]; !ok {
		t.Fatalf("no bulkhead_calls_total in %d families", len(families))
	}
	resp, err = http.Get("http://" + addr + "/status.json")
	if err != nil {
		t.Fatal(err)
	}
	var rep struct{ Pools []struct{ Name string } }
	err = json.NewDecoder(resp.Body).Decode(&rep)
	resp.Body.Close()
	if err != nil || len(rep.Pools) != 1 || rep.Pools[0].Name != "demo" {
		t.Fatalf("status.json: %+v, %v", rep, err)
	}
}

// gen --build compiles the worker now and writes the program, which speaks
// the protocol (conform).
func TestGenBuild(t *testing.T) {
	if _, err := os.Stat("/usr/include/zlib.h"); err != nil {
		t.Skip("zlib.h not installed (apt-get install zlib1g-dev)")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "zlibworker")
	if code, out, errs := run(t, "gen", "--spec", "../../examples/zlib/zlib.toml", "--out", dir, "--build", bin); code != 0 {
		t.Fatalf("gen --build: %d %s %s", code, out, errs)
	}
	if code, out, _ := run(t, "conform", "--", bin); code != 0 {
		t.Fatalf("the built worker fails conform:\n%s", out)
	}
}
