package activation

import (
	"context"
	"testing"

	"github.com/bulkhead-go/bulkhead"
)

// TestObjectCallTraceparent: the traceparent on an object call's ctx
// reaches the method's ctx in the class server (an OBJCALL's fifth item),
// and a call without one gets none.
func TestObjectCallTraceparent(t *testing.T) {
	const tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	a := newAct(t, ActivatorConfig{Servers: []ServerConfig{helperServer(t, "Counter:apartment", multi("Counter"))}}, actHooks{})
	ctx := context.Background()
	x, err := a.CreateInstance(ctx, "Counter")
	if err != nil {
		t.Fatal(err)
	}
	defer x.Release()
	traced, err := bulkhead.WithTraceparent(ctx, tp)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		ctx  context.Context
		want string
	}{{traced, tp}, {ctx, ""}} {
		r, err := x.Call(tt.ctx, "traceparent")
		if err != nil {
			t.Fatal(err)
		}
		var got string
		if err := r.Decode(&got); err != nil || got != tt.want {
			t.Errorf("the method saw %q, %v; want %q", got, err, tt.want)
		}
	}
}
