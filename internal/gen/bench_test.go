package gen

import (
	"context"
	"os"
	"testing"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/internal/testutil"
)

// BenchmarkNullCall: a call that does nothing, on one worker, through the Go
// SDK (a handler returning nil) and through a generated surrogate (mini_null
// on the C SDK), in one run. Pin it for a ratio:
//
//	taskset -c 0,1 go test -run '^$' -bench NullCall -count 5 ./internal/gen
func BenchmarkNullCall(b *testing.B) {
	self, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	workers := []struct {
		name, method string
		cfg          bulkhead.Config
	}{
		{"go", "null", bulkhead.Config{Command: self, Env: []string{testutil.HelperEnv + "=null"}}},
		{"generated", "mini_null", bulkhead.Config{Command: buildMini(b)}},
	}
	for _, w := range workers {
		b.Run(w.name, func(b *testing.B) {
			ctx := context.Background()
			w.cfg.Workers = 1
			p, err := bulkhead.New(ctx, w.cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close(ctx)
			b.ResetTimer()
			for b.Loop() {
				if _, err := p.Call(ctx, w.method); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
