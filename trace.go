package bulkhead

import (
	"context"
	"errors"
	"fmt"

	"github.com/bulkhead-go/bulkhead/internal/wire"
)

// Trace context: a W3C traceparent set on a call's ctx travels to the
// worker in its CALL (PROTOCOL.md section 3), where the Go SDK gives it to
// the handler (worker.Traceparent). The package otel (a module of its own,
// github.com/bulkhead-go/bulkhead/otel) makes a span per call on both
// sides from it; this package imports no tracing library.

// ErrTraceparent is returned by WithTraceparent for a value that is not a
// W3C traceparent.
var ErrTraceparent = errors.New("not a W3C traceparent of version 00")

type traceparentKey struct{}

// WithTraceparent returns a ctx whose calls carry traceparent tp to their
// workers, in W3C's version 00 form
// ("00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>", lowercase).
// A worker whose HELLO does not say it takes one gets the call without it.
func WithTraceparent(ctx context.Context, tp string) (context.Context, error) {
	if !wire.ValidTraceparent(tp) {
		return ctx, fmt.Errorf("bulkhead: WithTraceparent(%.80q): %w", tp, ErrTraceparent)
	}
	return context.WithValue(ctx, traceparentKey{}, tp), nil
}

// Traceparent returns the traceparent WithTraceparent set on ctx, or "".
func Traceparent(ctx context.Context) string {
	tp, _ := ctx.Value(traceparentKey{}).(string)
	return tp
}

// tracedFrame returns a copy of the CALL frame f with ctx's traceparent
// added, or nil if ctx has none. The caller recycles it (putBuilder).
func tracedFrame(ctx context.Context, f *wire.Builder, maxFrame uint32) (*wire.Builder, error) {
	tp := Traceparent(ctx)
	if tp == "" {
		return nil, nil
	}
	t := builders.Get().(*wire.Builder)
	f.CopyTo(t)
	if err := t.Trace(tp, maxFrame); err != nil {
		putBuilder(t)
		return nil, err
	}
	return t, nil
}

// frameFor returns the frame to send w: the traced one if w takes it.
func frameFor(w *workerProc, f, traced *wire.Builder) *wire.Builder {
	if traced != nil && w.Hello.Trace == wire.TraceW3C {
		return traced
	}
	return f
}
