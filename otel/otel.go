// Package otel makes an OpenTelemetry span for each bulkhead call, on both
// sides of the process boundary: a client span around the caller's
// Pool.Call, whose context travels to the worker as a W3C traceparent in
// the CALL (PROTOCOL.md section 3), and a server span around the worker's
// handler, a child of the caller's.
//
// It is a module of its own (github.com/bulkhead-go/bulkhead/otel), so that
// the bulkhead module does not require go.opentelemetry.io/otel: only a
// program that imports this package does.
//
// On the caller's side:
//
//	tr := otel.New(tp) // a trace.TracerProvider; nil: the global one
//	reply, err := tr.Call(ctx, pool, "resize", img, 640)
//
// In the worker:
//
//	s.Handle("resize", tr.Handler("resize", resize))
//
// Object calls (package activation, or the daemon's client) go through Do
// on the caller's side, and a class's methods through Method in the worker.
package otel

import (
	"context"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/worker"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of the spans this package makes.
const ScopeName = "github.com/bulkhead-go/bulkhead/otel"

// rpcSystem is the spans' rpc.system attribute.
const rpcSystem = "bulkhead"

// Tracer makes the spans of bulkhead calls with one TracerProvider.
type Tracer struct {
	tracer trace.Tracer
	prop   propagation.TraceContext
}

// New returns a Tracer whose spans come from tp; a nil tp is the global
// TracerProvider (otel.GetTracerProvider), read at each span.
func New(tp trace.TracerProvider) *Tracer {
	if tp == nil {
		return &Tracer{}
	}
	return &Tracer{tracer: tp.Tracer(ScopeName)}
}

func (t *Tracer) get() trace.Tracer {
	if t.tracer != nil {
		return t.tracer
	}
	return otel.GetTracerProvider().Tracer(ScopeName)
}

// Call runs p.Call(ctx, method, args...) in a client span named
// "bulkhead/METHOD", child of ctx's span, and sends the span's context to
// the worker. The span records the error, if any, and ends with the call.
func (t *Tracer) Call(ctx context.Context, p *bulkhead.Pool, method string, args ...any) (bulkhead.Reply, error) {
	return t.Do(ctx, method, func(ctx context.Context) (bulkhead.Reply, error) { return p.Call(ctx, method, args...) })
}

// Do runs call, a call of method through any bulkhead API (an object's
// Call, the daemon's client), as Call runs Pool.Call: in a client span
// whose context the ctx given to call carries to the worker.
//
//	r, err := tr.Do(ctx, "add", func(ctx context.Context) (bulkhead.Reply, error) { return obj.Call(ctx, "add", 5) })
func (t *Tracer) Do(ctx context.Context, method string, call func(context.Context) (bulkhead.Reply, error)) (bulkhead.Reply, error) {
	ctx, span := t.get().Start(ctx, rpcSystem+"/"+method, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("rpc.system", rpcSystem), attribute.String("rpc.method", method)))
	defer span.End()
	r, err := call(t.inject(ctx))
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	return r, err
}

// Inject returns ctx with its span's context set as the traceparent of the
// calls made with it (bulkhead.WithTraceparent), for calls that go through
// another API than Pool.Call; ctx unchanged if it has no valid span.
func (t *Tracer) Inject(ctx context.Context) context.Context { return t.inject(ctx) }

func (t *Tracer) inject(ctx context.Context) context.Context {
	c := propagation.MapCarrier{}
	t.prop.Inject(ctx, c)
	if tp := c.Get("traceparent"); tp != "" {
		if traced, err := bulkhead.WithTraceparent(ctx, tp); err == nil {
			return traced
		}
	}
	return ctx
}

// Handler wraps a worker's handler of method in a server span named
// "bulkhead/METHOD", child of the caller's span when the call carried its
// traceparent (worker.Traceparent), a root span otherwise.
func (t *Tracer) Handler(method string, h worker.Handler) worker.Handler {
	return func(ctx context.Context, args worker.Args) (any, error) {
		return t.serve(ctx, method, func(ctx context.Context) (any, error) { return h(ctx, args) })
	}
}

// Method wraps a class's method in a server span, as Handler does a
// handler: for worker.Class.Method.
func Method[T any](t *Tracer, method string, h func(context.Context, T, worker.Args) (any, error)) func(context.Context, T, worker.Args) (any, error) {
	return func(ctx context.Context, obj T, args worker.Args) (any, error) {
		return t.serve(ctx, method, func(ctx context.Context) (any, error) { return h(ctx, obj, args) })
	}
}

// serve runs h in a server span, child of the call's traceparent if any.
func (t *Tracer) serve(ctx context.Context, method string, h func(context.Context) (any, error)) (any, error) {
	if tp := worker.Traceparent(ctx); tp != "" {
		ctx = t.prop.Extract(ctx, propagation.MapCarrier{"traceparent": tp})
	}
	ctx, span := t.get().Start(ctx, rpcSystem+"/"+method, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("rpc.system", rpcSystem), attribute.String("rpc.method", method)))
	defer span.End()
	r, err := h(ctx)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	return r, err
}
