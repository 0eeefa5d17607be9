package status_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/activation"
	"github.com/bulkhead-go/bulkhead/examples/crashy/native"
	"github.com/bulkhead-go/bulkhead/internal/testutil"
	"github.com/bulkhead-go/bulkhead/status"
	"github.com/bulkhead-go/bulkhead/worker"
)

// TestMain is the test binary's one entry point: the tests, or the pool's
// worker (testutil.Main).
func TestMain(m *testing.M) {
	testutil.Main(m, map[string]func(){"worker": runWorker, "classes": runClasses}, "worker", worker.IsWorker)
}

func runWorker() {
	var s worker.Server
	s.Handle("ok", func(context.Context, worker.Args) (any, error) { return "ok", nil })
	s.Handle("segv", func(context.Context, worker.Args) (any, error) {
		native.RawSegv() // a NULL dereference in C, reported by the Go runtime on stderr
		return nil, nil
	})
	s.Run()
}

func newPool(t *testing.T, workers int) *bulkhead.Pool {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p, err := bulkhead.New(context.Background(), bulkhead.Config{Command: exe, Workers: workers, QuarantineAfter: 10,
		Env: append(os.Environ(), "GORACE=atexit_sleep_ms=0"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(context.Background()) })
	return p
}

func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// TestReport serves two real pools, crashes a worker of one in C, and reads
// the JSON report: the pools, their workers, the calls and the crash log.
func TestReport(t *testing.T) {
	testutil.CheckLeaks(t)
	a, b := newPool(t, 2), newPool(t, 1)
	ctx := context.Background()
	_, err := a.Call(ctx, "segv")
	ce, ok := err.(*bulkhead.CrashError)
	if !ok {
		t.Fatalf("segv: %v", err)
	}
	for range 3 { // after the crash, so that the workers alive served them
		if _, err := a.Call(ctx, "ok"); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Until(t, "the crash in the log", func() bool { return len(a.Snapshot().Crashes) == 1 })
	mux := http.NewServeMux()
	st := status.New(status.Pool("alpha", a), status.Pool("beta", b))
	mux.Handle("/status", st)
	mux.Handle("/status.json", st)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	for _, url := range []string{srv.URL + "/status.json", srv.URL + "/status?json"} {
		resp, body := get(t, url)
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s: Content-Type %q", url, ct)
		}
		var rep status.Report
		if err := json.Unmarshal([]byte(body), &rep); err != nil {
			t.Fatalf("%s: %v\n%s", url, err, body)
		}
		if len(rep.Pools) != 2 || rep.Pools[0].Name != "alpha" || rep.Pools[1].Name != "beta" {
			t.Fatalf("pools %+v", rep.Pools)
		}
		pa := rep.Pools[0]
		if pa.Stats.Calls != 4 || pa.Stats.CallsByOutcome["ok"] != 3 || pa.Stats.CallsByOutcome["crash_call"] != 1 {
			t.Errorf("alpha's calls: %d, %v", pa.Stats.Calls, pa.Stats.CallsByOutcome)
		}
		var served uint64
		for _, w := range pa.Workers {
			if w.PID <= 0 || w.RSSBytes <= 0 || w.State == "" || w.AgeSeconds < 0 {
				t.Errorf("worker %+v", w)
			}
			served += w.Calls
		}
		if served != 3 {
			t.Errorf("workers served %d calls, want 3", served)
		}
		if len(pa.Crashes) != 1 {
			t.Fatalf("crashes %+v", pa.Crashes)
		}
		c := pa.Crashes[0]
		if c.PID != ce.PID || c.Signal != "SIGSEGV" || c.Phase != "call" || c.Method != "segv" || c.RequestID != ce.RequestID ||
			!strings.HasPrefix(c.Fingerprint, "segv #") || !strings.Contains(c.StderrHead, "SIGSEGV") || c.Function != "crashy_raw_segv" {
			t.Errorf("crash %+v", c)
		}
		if len(rep.Pools[1].Workers) != 1 || rep.Pools[1].Stats.Calls != 0 {
			t.Errorf("beta %+v", rep.Pools[1])
		}
	}

	resp, body := get(t, srv.URL+"/status")
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(body, "<title>bulkhead status</title>") {
		t.Errorf("page: %s %q", resp.Header.Get("Content-Type"), body[:min(len(body), 200)])
	}
	post, err := http.Post(srv.URL+"/status.json", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	post.Body.Close()
	if post.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", post.StatusCode)
	}
}

// runClasses is a class server with one class, Counter.
func runClasses() {
	var s worker.Server
	c := &worker.Class[*int]{Name: "Counter",
		New: func(context.Context, *worker.Object, worker.Args) (*int, error) { return new(int), nil }}
	c.Method("get", func(_ context.Context, n *int, _ worker.Args) (any, error) { return *n, nil })
	s.Register(c)
	s.Run()
}

// TestReportActivator reports an activator with a real class server
// holding two objects.
func TestReportActivator(t *testing.T) {
	testutil.CheckLeaks(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	a, err := activation.NewActivator(activation.ActivatorConfig{Servers: []activation.ServerConfig{{
		Process: bulkhead.Process{Command: exe, Env: testutil.HelperEnviron("classes", "GORACE=atexit_sleep_ms=0")},
		Classes: []activation.ClassConfig{{Name: "Counter"}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(context.Background()) })
	for range 2 {
		o, err := a.CreateInstance(context.Background(), "Counter")
		if err != nil {
			t.Fatal(err)
		}
		defer o.Release()
	}
	rep := status.New(status.Activator("objects", a)).Report()
	if len(rep.Pools) != 0 || len(rep.Activators) != 1 {
		t.Fatalf("report %+v", rep)
	}
	ar := rep.Activators[0]
	if ar.Name != "objects" || ar.Stats.Objects != 2 || len(ar.Servers) != 1 {
		t.Fatalf("activator %+v", ar)
	}
	if sv := ar.Servers[0]; sv.PID <= 0 || sv.State != "running" || sv.Locks != 2 || sv.Objects != 2 ||
		len(sv.Classes) != 1 || sv.Classes[0] != "Counter" {
		t.Errorf("server %+v", sv)
	}
	// The activator's keys are snake_case like the pools'.
	js, err := json.Marshal(ar.Stats)
	if err != nil {
		t.Fatal(err)
	}
	var keys map[string]any
	if err := json.Unmarshal(js, &keys); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"servers", "objects", "rot_entries", "launch_failures", "server_crashes", "stopping_retries"} {
		if _, ok := keys[k]; !ok {
			t.Errorf("no key %q in %s", k, js)
		}
	}
	for k := range keys {
		if strings.ToLower(k) != k {
			t.Errorf("key %q is not snake_case in %s", k, js)
		}
	}
	if keys["objects"] != 2.0 {
		t.Errorf("objects %v in %s", keys["objects"], js)
	}
}
