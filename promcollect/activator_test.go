package promcollect_test

import (
	"context"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/activation"
	"github.com/bulkhead-go/bulkhead/internal/testutil"
	"github.com/bulkhead-go/bulkhead/promcollect"
	"github.com/bulkhead-go/bulkhead/worker"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

// runClasses is a class server with one class, Counter.
func runClasses() {
	var s worker.Server
	c := &worker.Class[*int]{Name: "Counter",
		New: func(context.Context, *worker.Object, worker.Args) (*int, error) { return new(int), nil }}
	c.Method("add", func(_ context.Context, n *int, a worker.Args) (any, error) {
		var d int
		if err := a.Scan(&d); err != nil {
			return nil, err
		}
		*n += d
		return *n, nil
	})
	s.Register(c)
	s.Run()
}

// TestActivatorCollector activates two objects on a real class server,
// holds one, and reads servers, objects and locks back from a scrape.
func TestActivatorCollector(t *testing.T) {
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
	ctx := context.Background()
	o1, err := a.CreateInstance(ctx, "Counter")
	if err != nil {
		t.Fatal(err)
	}
	defer o1.Release()
	o2, err := a.CreateInstance(ctx, "Counter")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o1.Call(ctx, "add", 2); err != nil {
		t.Fatal(err)
	}

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(promcollect.NewActivator(a, nil))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, pr := range problems {
		t.Errorf("lint: %s: %s", pr.Metric, pr.Text)
	}
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	check := func(when string, want map[string]float64) {
		t.Helper()
		families := scrape(t, srv.URL)
		for name, v := range want {
			labels := map[string]string{}
			if name == "bulkhead_object_servers" {
				labels["state"] = "running"
			}
			if got, ok := value(families[name], labels); !ok || got != v {
				t.Errorf("%s: %s = %v (found %v), want %v", when, name, got, ok, v)
			}
		}
	}
	check("two objects", map[string]float64{"bulkhead_object_servers": 1, "bulkhead_objects": 2,
		"bulkhead_object_server_locks": 2, "bulkhead_activations_total": 2, "bulkhead_object_server_launches_total": 1})
	o2.Release()
	check("one released", map[string]float64{"bulkhead_objects": 1, "bulkhead_object_server_locks": 1,
		"bulkhead_activations_total": 2})
}
