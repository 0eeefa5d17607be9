package daemon

import (
	"context"
	"testing"

	"github.com/bulkhead-go/bulkhead"
)

// TestTraceparentThroughDaemon: the traceparent on a client's ctx reaches
// the worker's handler, and an object's method, through the daemon
// (CLIENT-PROTOCOL.md section 5), and a call without one gets none.
func TestTraceparentThroughDaemon(t *testing.T) {
	const tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	d := startDaemon(t, "")
	c := d.dial(t)
	p := c.Pool("p")
	traced, err := bulkhead.WithTraceparent(context.Background(), tp)
	if err != nil {
		t.Fatal(err)
	}
	if got := ok[string](t)(bulkhead.CallAs[string](traced, p, "traceparent")); got != tp {
		t.Errorf("the worker saw %q, want %q", got, tp)
	}
	if got := ok[string](t)(bulkhead.CallAs[string](context.Background(), p, "traceparent")); got != "" {
		t.Errorf("an untraced call's worker saw %q", got)
	}
	o, err := c.CreateInstance(context.Background(), "Counter")
	if err != nil {
		t.Fatal(err)
	}
	defer o.Release()
	if got := ok[string](t)(bulkhead.CallAs[string](traced, o, "traceparent")); got != tp {
		t.Errorf("the object's method saw %q, want %q", got, tp)
	}
}
