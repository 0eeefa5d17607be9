package bulkhead_test

import (
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"log/slog"
	"os"
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
			// Spinning in C: its thread is running, which the scan says, with
			// no frames to show for it; Go's idle threads are in its runtime.
			if scanned, _ := rec["scanned_stack"].(string); !strings.Contains(scanned, "running in user code") ||
				!strings.Contains(scanned, "runtime.") {
				t.Errorf("scanned stack %q", scanned)
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

// TestSlowCallLeavesTheCallAlone: a call blocked in C's sleep(3), logged as
// slow, is left as it was: a signal on its thread would end the sleep early
// and the call would succeed (sleep returning the seconds left); it ends by
// its deadline instead. Its record names the C frames, scanned from the
// worker's memory (clock_nanosleep, sleep, crashy_sleep), and the Go SDK's
// STACK its cgo call.
func TestSlowCallLeavesTheCallAlone(t *testing.T) {
	log := &testutil.Records{Message: "slow call", Recs: make(chan map[string]any, 4)}
	p := newPool(t, bulkhead.Config{SlowCall: 100 * time.Millisecond, Logger: slog.New(log)})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		left, err := bulkhead.CallAs[uint](ctx, p, "csleep", 30)
		if err == nil {
			err = fmt.Errorf("csleep returned %d: its sleep was cut short", left)
		}
		done <- err
	}()
	rec := <-log.Recs
	stack, _ := rec["stack"].(string)
	scanned, _ := rec["scanned_stack"].(string)
	if !strings.Contains(stack, "_Cfunc_crashy_sleep") {
		t.Errorf("STACK %q", stack)
	}
	// The thread in C: libc's frames, then cgo's C wrapper (named only if
	// the binary kept its .symtab: go test strips it), then Go's
	// runtime.asmcgocall, named from Go's own function table.
	want := []string{"blocked in clock_nanosleep", "clock_nanosleep+", "sleep+", "runtime.asmcgocall"}
	if hasSymtab(t) {
		want = append(want, "_Cfunc_crashy_sleep+") // crashy_sleep's tail call to sleep leaves no frame of its own
	}
	var line string
	for _, l := range strings.Split(scanned, "\n") {
		if strings.Contains(l, "clock_nanosleep") {
			line = l
		}
	}
	for _, f := range want {
		if !strings.Contains(line, f) {
			t.Errorf("scanned stack has no %s frame:\n%s", f, scanned)
		}
	}
	err := <-done
	var ce *bulkhead.CanceledError
	if !errors.As(err, &ce) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("csleep: %v; want its deadline", err)
	}
	ce.Wait()
}

// hasSymtab reports whether the test binary (the workers' program) has a
// symbol table.
func hasSymtab(t *testing.T) bool {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return f.Section(".symtab") != nil
}
