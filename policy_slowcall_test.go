package bulkhead_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/internal/testutil"
)

// TestSlowCallLogsTheCStack runs a call that loops forever in C past
// Config.SlowCall, serially and with several calls per worker: the pool logs
// it once, with the worker's stacks, which show the C function, while the
// call goes on to its deadline.
func TestSlowCallLogsTheCStack(t *testing.T) {
	for _, conc := range []string{"1", "4"} {
		t.Run("concurrency="+conc, func(t *testing.T) {
			log := &testutil.Records{Message: "slow call", Recs: make(chan map[string]any, 4)}
			p := newPool(t, bulkhead.Config{SlowCall: 100 * time.Millisecond, Logger: slog.New(log)}, "HELPER_CONC="+conc)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() {
				_, err := p.Call(ctx, "chang")
				done <- err
			}()
			rec := <-log.Recs
			stack, _ := rec["stack"].(string)
			if rec["method"] != "chang" || !strings.Contains(stack, "_Cfunc_crashy_hang") || !strings.Contains(stack, "goroutine") {
				t.Errorf("slow call record %v", rec)
			}
			if d, _ := rec["running"].(time.Duration); d < 100*time.Millisecond {
				t.Errorf("running %v, less than SlowCall", rec["running"])
			}
			select {
			case err := <-done:
				t.Fatalf("the slow call ended: %v", err)
			default: // still running: the log did not stop it
			}
			if n := p.Stats().SlowCalls; n != 1 {
				t.Errorf("Stats.SlowCalls = %d", n)
			}
			cancel()
			var ce *bulkhead.CanceledError
			if err := <-done; !errors.As(err, &ce) {
				t.Fatalf("chang: %v", err)
			}
			ce.Wait()
			select {
			case r := <-log.Recs:
				t.Errorf("logged twice: %v", r)
			default:
			}
		})
	}
}

// A worker that offers no stacks has its slow calls logged without one.
func TestSlowCallWithoutStacks(t *testing.T) {
	log := &testutil.Records{Message: "slow call", Recs: make(chan map[string]any, 4)}
	p := newPool(t, bulkhead.Config{SlowCall: 50 * time.Millisecond, Logger: slog.New(log)}, "HELPER_NOSTACK=1")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := p.Call(ctx, "chang")
		done <- err
	}()
	rec := <-log.Recs
	if rec["stack"] != nil || !strings.Contains(rec["no_stack"].(string), "offers no stacks") {
		t.Errorf("slow call record %v", rec)
	}
	cancel()
	var ce *bulkhead.CanceledError
	if err := <-done; !errors.As(err, &ce) {
		t.Fatalf("chang: %v", err)
	}
	ce.Wait()
}
