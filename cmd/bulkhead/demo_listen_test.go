package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/status"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func TestDemoObservabilityFlags(t *testing.T) {
	for _, v := range []string{"-1s", "11m", "soon"} {
		code, _, errs := run(t, "demo", "--slow-call", v)
		if code != 2 || !strings.Contains(errs, "slow-call") {
			t.Errorf("--slow-call %q: exit %d, stderr %q; want exit 2 naming --slow-call", v, code, errs)
		}
	}
	for _, addr := range []string{"nonsense", "127.0.0.1:port", "127.0.0.1:70000", ":9090"} {
		code, _, errs := run(t, "demo", "--listen", addr)
		if code != 2 || !strings.Contains(errs, "--listen") {
			t.Errorf("--listen %q: exit %d, stderr %q; want exit 2 naming --listen", addr, code, errs)
		}
	}
}

// fetch GETs addr+path and returns the body, failing on any status but 200.
func fetch(t *testing.T, addr, path string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", path, resp.StatusCode, err)
	}
	return string(b)
}

// metrics scrapes /metrics and parses it with Prometheus' own text parser.
func metrics(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	body := fetch(t, addr, "/metrics")
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("Prometheus' text parser refused /metrics: %v\n%s", err, body)
	}
	return fams
}

func counterSum(f *dto.MetricFamily) (n float64) {
	for _, m := range f.GetMetric() {
		n += m.GetCounter().GetValue()
	}
	return n
}

// TestDemoListen runs the demo with --listen on a free port and reads what
// it serves: before the calls, the pool's workers; once they are done,
// every call counted, in /metrics and in /status.json alike.
func TestDemoListen(t *testing.T) {
	checkLeaks(t)
	const calls = 400
	cfg := demoConfig{calls: calls, workers: 2, concurrency: 8, crashRate: 0.05, idleRate: 0.01, startupRate: 0.05,
		timeout: 100 * time.Millisecond, killGrace: 20 * time.Millisecond, stall: 30 * time.Second,
		json: true, listen: "127.0.0.1:0"}
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	var served bool
	cfg.listening = func(addr string) {
		fams := metrics(t, addr)
		if f := fams["bulkhead_workers"]; f == nil || len(f.GetMetric()) != 5 {
			t.Errorf("bulkhead_workers: %v", f)
		}
		if fams["go_goroutines"] == nil || fams["process_cpu_seconds_total"] == nil {
			t.Error("no Go or process metrics")
		}
		var rep status.Report
		if err := json.Unmarshal([]byte(fetch(t, addr, "/status.json")), &rep); err != nil {
			t.Fatal(err)
		}
		if len(rep.Pools) != 1 || rep.Pools[0].Name != "demo" || len(rep.Pools[0].Workers) == 0 {
			t.Errorf("status: %+v", rep)
		}
		if page := fetch(t, addr, "/"); !strings.Contains(page, "<title>bulkhead status</title>") {
			t.Errorf("/ does not lead to the page: %.200s", page)
		}
		served = true
	}
	cfg.finished = func(addr string) {
		if n := counterSum(metrics(t, addr)["bulkhead_calls_total"]); n != calls {
			t.Errorf("bulkhead_calls_total adds up to %v, want %d", n, calls)
		}
		var rep status.Report
		if err := json.Unmarshal([]byte(fetch(t, addr, "/status.json")), &rep); err != nil {
			t.Fatal(err)
		}
		if st := rep.Pools[0].Stats; st.Calls != calls || st.CallsByOutcome[bulkhead.OutcomeOK.String()] == 0 {
			t.Errorf("status counts %d calls (%v), want %d", st.Calls, st.CallsByOutcome, calls)
		}
	}
	var out, errb strings.Builder
	if err := runDemo(t.Context(), cfg, &out, &errb); err != nil {
		t.Fatalf("demo: %v\n%s", err, errb.String())
	}
	if !served || !strings.Contains(errb.String(), "/metrics") {
		t.Errorf("served %v; stderr %q", served, errb.String())
	}
}
