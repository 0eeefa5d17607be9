package bulkhead_test

import (
	"context"
	"errors"
	"testing"

	"github.com/bulkhead-go/bulkhead"
)

// TestTraceparent: a traceparent set on the ctx reaches the Go SDK
// handler's ctx, over the socket and shared memory, and a call without one
// gets none.
func TestTraceparent(t *testing.T) {
	const tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	for name, tr := range map[string]bulkhead.Transport{"socket": bulkhead.TransportSocket, "shm": bulkhead.TransportShm} {
		t.Run(name, func(t *testing.T) {
			p := newPool(t, bulkhead.Config{Workers: 1, Transport: tr})
			ctx, err := bulkhead.WithTraceparent(context.Background(), tp)
			if err != nil || bulkhead.Traceparent(ctx) != tp {
				t.Fatalf("WithTraceparent: %v, %q", err, bulkhead.Traceparent(ctx))
			}
			for _, tt := range []struct {
				ctx  context.Context
				want string
			}{{ctx, tp}, {context.Background(), ""}, {ctx, tp}} {
				got, err := bulkhead.CallAs[string](tt.ctx, p, "traceparent")
				if err != nil || got != tt.want {
					t.Errorf("the handler saw %q, %v; want %q", got, err, tt.want)
				}
			}
		})
	}
	if _, err := bulkhead.WithTraceparent(context.Background(), "00-abc"); !errors.Is(err, bulkhead.ErrTraceparent) {
		t.Errorf("WithTraceparent(bad): %v", err)
	}
}
