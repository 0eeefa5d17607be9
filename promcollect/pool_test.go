package promcollect_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/examples/crashy/native"
	"github.com/bulkhead-go/bulkhead/internal/testutil"
	"github.com/bulkhead-go/bulkhead/promcollect"
	"github.com/bulkhead-go/bulkhead/worker"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// TestMain is the test binary's one entry point: the tests, or a helper
// process (testutil.Main): the pool's worker, or a class server.
func TestMain(m *testing.M) {
	testutil.Main(m, map[string]func(){"worker": runWorker, "classes": runClasses}, "worker", worker.IsWorker)
}

// runWorker is the pool's worker.
func runWorker() {
	var s worker.Server
	s.Handle("ok", func(context.Context, worker.Args) (any, error) { return "ok", nil })
	s.Handle("fail", func(context.Context, worker.Args) (any, error) { return nil, errors.New("no such record") })
	s.Handle("segv", func(context.Context, worker.Args) (any, error) {
		native.Segv() // a NULL dereference in C
		return nil, nil
	})
	s.Run()
}

func newPool(t *testing.T) *bulkhead.Pool {
	t.Helper()
	testutil.CheckLeaks(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p, err := bulkhead.New(context.Background(), bulkhead.Config{Command: exe, Workers: 1,
		Env:    append(os.Environ(), "GORACE=atexit_sleep_ms=0"),
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(context.Background()) })
	return p
}

// TestPoolCollector makes real calls, one of which segfaults in C, scrapes
// the collector over HTTP, parses the text with Prometheus' own parser and
// checks the figures, and lints the names against Prometheus' conventions.
func TestPoolCollector(t *testing.T) {
	p := newPool(t)
	ctx := context.Background()
	for _, m := range []string{"ok", "ok", "fail", "segv", "made-up"} {
		p.Call(ctx, m)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(promcollect.NewPool(p, prometheus.Labels{"pool": "test"}))

	problems, err := promtest.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, pr := range problems {
		t.Errorf("lint: %s: %s", pr.Metric, pr.Text)
	}

	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	families := scrape(t, srv.URL)
	tests := []struct {
		family string
		labels map[string]string
		want   float64
	}{
		{"bulkhead_calls_total", map[string]string{"method": "ok", "outcome": "ok"}, 2},
		{"bulkhead_calls_total", map[string]string{"method": "fail", "outcome": "remote_error"}, 1},
		{"bulkhead_calls_total", map[string]string{"method": "segv", "outcome": "crash_call"}, 1},
		{"bulkhead_calls_total", map[string]string{"method": "(other)", "outcome": "remote_error"}, 1},
		{"bulkhead_worker_crashes_total", map[string]string{"phase": "call", "signal": "SIGSEGV"}, 1},
		{"bulkhead_call_duration_seconds", map[string]string{"method": "ok"}, 2}, // the sample count
		{"bulkhead_worker_starts_total", nil, 2},                                 // the first and the segv's replacement
	}
	for _, tt := range tests {
		got, ok := value(families[tt.family], tt.labels)
		if !ok {
			t.Errorf("%s%v: no such series", tt.family, tt.labels)
			continue
		}
		if got != tt.want {
			t.Errorf("%s%v = %v, want %v", tt.family, tt.labels, got, tt.want)
		}
	}
	// Whether a call waited for the segv's replacement is up to the race
	// of the call and the spawn: the histogram is there, whatever it holds.
	if f := families["bulkhead_queue_wait_seconds"]; f.GetType() != dto.MetricType_HISTOGRAM {
		t.Errorf("queue wait: %v", f)
	}
	for _, m := range families["bulkhead_calls_total"].GetMetric() {
		if labelOf(m, "method") == "made-up" {
			t.Error("a method no HELLO named got a series of its own")
		}
		if labelOf(m, "pool") != "test" {
			t.Errorf("a series without the pool label: %v", m)
		}
	}
}

// scrape fetches url and parses it as Prometheus text.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("Prometheus' parser refused /metrics: %v\n%s", err, body)
	}
	return families
}

// value is the value of the series of f whose labels include want: a
// counter's or gauge's value, a histogram's sample count.
func value(f *dto.MetricFamily, want map[string]string) (float64, bool) {
	for _, m := range f.GetMetric() {
		match := true
		for k, v := range want {
			match = match && labelOf(m, k) == v
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

func labelOf(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
