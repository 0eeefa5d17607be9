package gen

import (
	"context"
	"os"
	"testing"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/activation"
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

// BenchmarkHandleCall: what a handle costs per call, in one run: a plain
// CALL of a generated worker (mini_null, through a pool) against a method
// of a generated class server's object (mini_counter_live on a
// mini_counter_t, through the activator). Pin it for a ratio:
//
//	taskset -c 0,1 go test -run '^$' -bench HandleCall -count 5 ./internal/gen
func BenchmarkHandleCall(b *testing.B) {
	ctx := context.Background()
	b.Run("call", func(b *testing.B) {
		p, err := bulkhead.New(ctx, bulkhead.Config{Command: buildMini(b), Workers: 1})
		if err != nil {
			b.Fatal(err)
		}
		defer p.Close(ctx)
		b.ResetTimer()
		for b.Loop() {
			if _, err := p.Call(ctx, "mini_null"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("object", func(b *testing.B) {
		act, err := activation.NewActivator(activation.ActivatorConfig{Servers: []activation.ServerConfig{{
			Process: bulkhead.Process{Command: buildTestWorker(b, handlesSpec)}, Classes: []activation.ClassConfig{{Name: "Counter"}},
		}}})
		if err != nil {
			b.Fatal(err)
		}
		defer act.Close(ctx)
		o, err := act.CreateInstance(ctx, "Counter", "mini_counter_new", 0)
		if err != nil {
			b.Fatal(err)
		}
		defer o.Release()
		b.ResetTimer()
		for b.Loop() {
			if _, err := o.Call(ctx, "mini_counter_live"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
