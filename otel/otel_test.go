package otel_test

import (
	"context"
	"errors"
	"os"
	"testing"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/activation"
	"github.com/bulkhead-go/bulkhead/internal/testutil"
	bhotel "github.com/bulkhead-go/bulkhead/otel"
	"github.com/bulkhead-go/bulkhead/worker"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// TestMain is the test binary's one entry point: the tests, or the pool's
// worker (testutil.Main).
func TestMain(m *testing.M) {
	testutil.Main(m, map[string]func(){"worker": runWorker, "classes": runClasses}, "worker", worker.IsWorker)
}

// workerSpan is a span the worker ended, as its "spans" method tells it.
type workerSpan struct {
	Name, TraceID, SpanID, ParentID string
	Remote                          bool // its parent came from another process
	Kind                            int
	Error                           bool
}

// runWorker serves "work" and "fail" in server spans recorded in memory,
// and "spans", which returns the spans ended so far.
func runWorker() {
	rec := tracetest.NewSpanRecorder()
	tr := bhotel.New(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)))
	var s worker.Server
	s.Handle("work", tr.Handler("work", func(context.Context, worker.Args) (any, error) { return "done", nil }))
	s.Handle("fail", tr.Handler("fail", func(context.Context, worker.Args) (any, error) { return nil, errors.New("no") }))
	s.Handle("spans", func(context.Context, worker.Args) (any, error) { return ended(rec), nil })
	s.Run()
}

// runClasses is a class server of "Traced", whose "work" runs in a server
// span and whose "spans" returns the spans ended so far.
func runClasses() {
	rec := tracetest.NewSpanRecorder()
	tr := bhotel.New(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)))
	var s worker.Server
	c := &worker.Class[int]{Name: "Traced",
		New: func(context.Context, *worker.Object, worker.Args) (int, error) { return 0, nil }}
	c.Method("work", bhotel.Method(tr, "work", func(context.Context, int, worker.Args) (any, error) { return "done", nil }))
	c.Method("spans", func(context.Context, int, worker.Args) (any, error) { return ended(rec), nil })
	s.Register(c)
	s.Run()
}

func ended(rec *tracetest.SpanRecorder) []workerSpan {
	var out []workerSpan
	for _, sp := range rec.Ended() {
		out = append(out, workerSpan{Name: sp.Name(), TraceID: sp.SpanContext().TraceID().String(),
			SpanID: sp.SpanContext().SpanID().String(), ParentID: sp.Parent().SpanID().String(),
			Remote: sp.Parent().IsRemote(), Kind: int(sp.SpanKind()), Error: sp.Status().Code == 1})
	}
	return out
}

// TestSpansAcrossTheProcessBoundary: the worker's span of a call is the
// child of the caller's client span, in the same trace, across the
// process boundary; a call made without a span gets a root span in the
// worker; errors mark both spans.
func TestSpansAcrossTheProcessBoundary(t *testing.T) {
	testutil.CheckLeaks(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	pool, err := bulkhead.New(ctx, bulkhead.Config{Command: exe, Workers: 1, Env: testutil.HelperEnviron("worker")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pool.Close(ctx) })
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(ctx) })
	tr := bhotel.New(tp)

	if _, err := tr.Call(ctx, pool, "work"); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Call(ctx, "work"); err != nil { // untraced
		t.Fatal(err)
	}
	if _, err := tr.Call(ctx, pool, "fail"); err == nil {
		t.Fatal("fail succeeded")
	}
	got, err := bulkhead.CallAs[[]workerSpan](ctx, pool, "spans")
	if err != nil {
		t.Fatal(err)
	}
	client := rec.Ended()
	if len(client) != 2 || len(got) != 3 {
		t.Fatalf("%d client spans, %d worker spans (%+v); want 2 and 3", len(client), len(got), got)
	}
	for i, w := range []workerSpan{got[0], got[2]} {
		c := client[i]
		if c.SpanKind() != trace.SpanKindClient || c.Name() != w.Name || w.Kind != int(trace.SpanKindServer) {
			t.Errorf("client span %q (%v), worker span %+v", c.Name(), c.SpanKind(), w)
		}
		if w.TraceID != c.SpanContext().TraceID().String() || w.ParentID != c.SpanContext().SpanID().String() || !w.Remote {
			t.Errorf("worker span %+v is not the child of the client's %v", w, c.SpanContext())
		}
		if failed := c.Status().Code == 1; failed != (i == 1) || w.Error != failed {
			t.Errorf("span %q: client error %v, worker error %v", c.Name(), failed, w.Error)
		}
	}
	if root := got[1]; root.ParentID != (trace.SpanID{}).String() || root.TraceID == got[0].TraceID {
		t.Errorf("an untraced call's worker span %+v has a parent", root)
	}
}

// TestObjectCallSpans: an object call made through Tracer.Do has its class
// server's span (Method) as its child, across the process boundary.
func TestObjectCallSpans(t *testing.T) {
	testutil.CheckLeaks(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a, err := activation.NewActivator(activation.ActivatorConfig{Servers: []activation.ServerConfig{{
		Process: bulkhead.Process{Command: exe, Env: testutil.HelperEnviron("classes", "GORACE=atexit_sleep_ms=0")},
		Classes: []activation.ClassConfig{{Name: "Traced"}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(ctx) })
	obj, err := a.CreateInstance(ctx, "Traced")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { obj.Release() })
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(ctx) })
	tr := bhotel.New(tp)
	if _, err := tr.Do(ctx, "work", func(ctx context.Context) (bulkhead.Reply, error) { return obj.Call(ctx, "work") }); err != nil {
		t.Fatal(err)
	}
	r, err := obj.Call(ctx, "spans")
	if err != nil {
		t.Fatal(err)
	}
	var got []workerSpan
	if err := r.Decode(&got); err != nil {
		t.Fatal(err)
	}
	client := rec.Ended()
	if len(client) != 1 || len(got) != 1 {
		t.Fatalf("%d client spans, %d worker spans; want 1 and 1", len(client), len(got))
	}
	c, w := client[0], got[0]
	if w.TraceID != c.SpanContext().TraceID().String() || w.ParentID != c.SpanContext().SpanID().String() ||
		!w.Remote || w.Kind != int(trace.SpanKindServer) || w.Name != "bulkhead/work" {
		t.Errorf("worker span %+v is not the child of the client's %v", w, c.SpanContext())
	}
}
