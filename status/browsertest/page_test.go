package browsertest

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/activation"
	"github.com/bulkhead-go/bulkhead/examples/crashy/native"
	"github.com/bulkhead-go/bulkhead/internal/testutil"
	"github.com/bulkhead-go/bulkhead/status"
	"github.com/bulkhead-go/bulkhead/worker"
	"github.com/chromedp/chromedp"
)

// TestMain is the test binary's one entry point: the tests, or the pool's
// worker (testutil.Main).
func TestMain(m *testing.M) {
	testutil.Main(m, map[string]func(){"worker": runWorker, "classes": runClasses}, "worker", worker.IsWorker)
}

func runWorker() {
	var s worker.Server
	s.Handle("work", worker.Func(func(ctx context.Context, ms int) (int, error) {
		t := time.NewTimer(time.Duration(ms) * time.Millisecond)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		}
		return ms, nil
	}))
	s.Handle("segv", func(context.Context, worker.Args) (any, error) {
		native.RawSegv() // a NULL dereference in C, reported by the Go runtime on stderr
		return nil, nil
	})
	s.Run()
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

// browser starts a headless Chromium with a fresh profile, for the test's
// duration.
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1200, 900),
	}
	if path := os.Getenv("BULKHEAD_CHROMIUM"); path != "" {
		opts = append(opts, chromedp.ExecPath(path))
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc() // waits for the browser to exit
	})
	if err := chromedp.Do(ctx); err != nil { // starts the browser, on a ctx with no timeout
		t.Fatalf("cannot start Chromium (apt-get install chromium, or set BULKHEAD_CHROMIUM): %v", err)
	}
	return ctx
}

// TestStatusPage loads the page in Chromium, sees the pool and its workers,
// then runs calls and a C crash and sees the page change by itself: the
// call count rises, a worker shows busy with its call, the crash appears
// in the log. With BULKHEAD_STATUS_SCREENSHOT set to a path, it saves a
// screenshot there (docs/status-page.png comes from this).
func TestStatusPage(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	pool, err := bulkhead.New(context.Background(), bulkhead.Config{Command: exe, Workers: 4, QuarantineAfter: 10,
		Env: append(os.Environ(), "GORACE=atexit_sleep_ms=0"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close(context.Background())
	act, err := activation.NewActivator(activation.ActivatorConfig{Servers: []activation.ServerConfig{{
		Process: bulkhead.Process{Command: exe, Env: testutil.HelperEnviron("classes", "GORACE=atexit_sleep_ms=0")},
		Classes: []activation.ClassConfig{{Name: "Counter"}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	defer act.Close(context.Background())
	obj, err := act.CreateInstance(context.Background(), "Counter")
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Release()
	mux := http.NewServeMux()
	st := status.New(status.Pool("demo", pool), status.Activator("objects", act))
	mux.Handle("/status", st)
	mux.Handle("/status.json", st)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	ctx := browser(t)
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	err = chromedp.Do(ctx,
		chromedp.Navigate(srv.URL+"/status"),
		chromedp.WaitVisible(chromedp.CSS(`section.pool[data-pool="demo"] .worker`)),
		chromedp.WaitVisible(chromedp.CSS(`section.activator[data-activator="objects"] .worker`)),
	)
	if err != nil {
		t.Fatalf("the page did not show the pool and the activator: %v", err)
	}
	calls0, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`section.pool[data-pool="demo"] b[data-stat="calls"]`)))
	if err != nil {
		t.Fatal(err)
	}
	if calls0 != "0" {
		t.Errorf("calls before any: %q", calls0)
	}
	objects, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`section.activator[data-activator="objects"] b[data-stat="objects"]`)))
	if err != nil {
		t.Fatal(err)
	}
	if objects != "1" {
		t.Errorf("the activator's objects: %q, want 1", objects)
	}

	// Calls that hold workers for a while, until the test has seen them.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				pool.Call(context.Background(), "work", 300)
			}
		}()
	}
	defer func() {
		close(stop)
		wg.Wait()
	}()
	if _, err := pool.Call(context.Background(), "segv"); err == nil {
		t.Fatal("segv returned no error")
	}

	// The page polls the report: wait for it to show what happened.
	every := chromedp.WithPollingInterval(50 * time.Millisecond)
	err = chromedp.Do(ctx,
		chromedp.Poll[chromedp.Void](`document.querySelector('.worker[data-state="busy"] .call') !== null`, every),
		chromedp.Poll[chromedp.Void](`[...document.querySelectorAll('table.crashes td')].some(td => td.textContent === "SIGSEGV")`, every),
		chromedp.Poll[chromedp.Void](`document.querySelector('.worker[data-state="crashed"]') !== null`, every),
		chromedp.Poll[chromedp.Void](`Number(document.querySelector('b[data-stat="calls"]').textContent) >= 2`, every),
	)
	if err != nil {
		t.Fatalf("the page did not update: %v", err)
	}
	calls, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`b[data-stat="calls"]`)))
	if n, e := strconv.Atoi(calls); err != nil || e != nil || n < 2 {
		t.Errorf("calls shown: %q (%v)", calls, err)
	}
	if path := os.Getenv("BULKHEAD_STATUS_SCREENSHOT"); path != "" {
		// With the crash's stderr unfolded, as an operator would look.
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`table.crashes summary`))); err != nil {
			t.Fatal(err)
		}
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDemoPage is the check, end to end: bulkhead demo --listen
// serves the page while it runs, and Chromium sees the page change. The
// CLI is built from this repository (the root module) and run as a
// process of its own, stopped by SIGINT (the demo closes its pool).
func TestDemoPage(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "bulkhead")
	build := exec.Command("go", "build", "-o", bin, "./cmd/bulkhead")
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the CLI: %v\n%s", err, out)
	}
	demo := exec.Command(bin, "demo", "--listen", "127.0.0.1:0", "--calls", "200000", "--workers", "2", "--quiet")
	stderr, err := demo.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := demo.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		demo.Process.Signal(os.Interrupt)
		demo.Wait()
	}()
	// "serving http://ADDR/metrics, ..." is the demo's first line on stderr.
	sc := bufio.NewScanner(stderr)
	var addr string
	for addr == "" && sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "serving http://"); ok {
			addr, _, _ = strings.Cut(rest, "/")
		}
	}
	if addr == "" {
		t.Fatalf("the demo never said where it serves (%v)", sc.Err())
	}
	go io.Copy(io.Discard, stderr) // the demo must not block on a full pipe

	ctx := browser(t)
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	err = chromedp.Do(ctx,
		chromedp.Navigate("http://"+addr+"/status"),
		chromedp.WaitVisible(chromedp.CSS(`section.pool[data-pool="demo"] .worker`)),
	)
	if err != nil {
		t.Fatalf("the page did not show the demo's pool: %v", err)
	}
	first, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`b[data-stat="calls"]`)))
	if err != nil {
		t.Fatal(err)
	}
	n0, err := strconv.Atoi(first)
	if err != nil {
		t.Fatalf("calls shown: %q", first)
	}
	// The page redraws itself from the report every second.
	_, err = chromedp.Run(ctx, chromedp.Poll[chromedp.Void](
		`Number(document.querySelector('b[data-stat="calls"]').textContent) > `+strconv.Itoa(n0),
		chromedp.WithPollingInterval(100*time.Millisecond)))
	if err != nil {
		t.Fatalf("the page did not change from %d calls: %v", n0, err)
	}
}
