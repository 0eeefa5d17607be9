package bulkhead_test

import (
	"context"
	"testing"
	"time"

	"github.com/bulkhead-go/bulkhead"
)

// TestCallUsage asks for usage and reads back, per call, the CPU time a
// call burned and the memory one made resident, serially and with four
// calls per worker; without Config.CallUsage there is none.
func TestCallUsage(t *testing.T) {
	for _, conc := range []string{"1", "4"} {
		t.Run("concurrency="+conc, func(t *testing.T) {
			p := newPool(t, bulkhead.Config{CallUsage: true}, "HELPER_CONC="+conc)
			ctx := context.Background()
			r, err := p.Call(ctx, "burn", 50)
			if err != nil {
				t.Fatal(err)
			}
			u, ok := r.Usage()
			if !ok || u.CPU < 50*time.Millisecond || u.CPU > 10*time.Second || u.MaxRSS <= 0 {
				t.Errorf("burn 50ms of CPU: usage %+v, %v", u, ok)
			}
			r, err = p.Call(ctx, "grow", 64)
			if err != nil {
				t.Fatal(err)
			}
			if u, ok := r.Usage(); !ok || u.MaxRSS < 64<<20 || u.CPU <= 0 {
				t.Errorf("grow 64 MiB: usage %+v, %v", u, ok)
			}
			r, err = p.Call(ctx, "null")
			if err != nil {
				t.Fatal(err)
			}
			if u, ok := r.Usage(); !ok || u.CPU >= 50*time.Millisecond {
				t.Errorf("null: usage %+v, %v", u, ok)
			}
		})
	}
	p := newPool(t, bulkhead.Config{})
	r, err := p.Call(context.Background(), "burn", 1)
	if err != nil {
		t.Fatal(err)
	}
	if u, ok := r.Usage(); ok {
		t.Errorf("usage %+v without Config.CallUsage", u)
	}
}
