package bulkhead

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// A Go SDK worker says in HELLO that SIGTERM only cancels its calls. When
// such a worker's call outlives its deadline, the handler's context has
// been cancelled at that deadline already, so the dispatcher skips SIGTERM
// and its TermGrace and goes straight to the dump; when the caller cancelled
// before any deadline, SIGTERM still comes first, since it cancels the
// handler's context, which nothing else has.
func TestHangSkipsSIGTERMForCancellingWorker(t *testing.T) {
	const termGrace = 2 * time.Second // an unskipped SIGTERM shows in the reason
	tests := []struct {
		name     string
		env      []string
		deadline bool   // the call's ctx ends by a deadline, else by cancel
		reason   string // CanceledError.Reason starts with it
	}{
		{"SDK worker past its deadline: skipped", []string{"POLICY_SDK_SIGTERM=1"}, true, skippedTerm + "; exited after quit"},
		{"SDK worker, call cancelled: SIGTERM first", []string{"POLICY_SDK_SIGTERM=1"}, false, "ignored SIGTERM for 2s; exited after quit"},
		{"worker with its own SIGTERM: SIGTERM first", nil, true, "ignored SIGTERM for 2s; exited after quit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, logs := testPool(t, Config{Workers: 1, TermGrace: termGrace, DumpGrace: 10 * time.Second, StderrTail: 256 << 10}, hooks{}, tt.env...)
			pid := pidOf(t, p)
			ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
			if tt.deadline {
				ctx, cancel = context.WithTimeout(context.Background(), 100*time.Millisecond)
			} else {
				time.AfterFunc(100*time.Millisecond, cancel)
			}
			defer cancel()
			_, err := p.Call(ctx, "hang")
			var ce *CanceledError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want *CanceledError", err)
			}
			ce.Wait()
			want := context.Canceled
			if tt.deadline {
				want = context.DeadlineExceeded
			}
			if !errors.Is(err, want) || !ce.Started || ce.PID != pid {
				t.Fatalf("err = %v (started %v, pid %d), want a started %v on %d", err, ce.Started, ce.PID, want, pid)
			}
			if !strings.HasPrefix(ce.Reason, tt.reason) || ce.ExitCode != 2 || ce.Signal != 0 || !strings.Contains(ce.Stack, "goroutine ") {
				t.Fatalf("reason %q, exit %d, signal %v, stack %d bytes; want %q... and a Go dump, exit 2",
					ce.Reason, ce.ExitCode, ce.Signal, len(ce.Stack), tt.reason)
			}
			rec := logs.wait(t, "hung call: worker stopped", 1)[0]
			if !strings.HasPrefix(rec["stopped"].(string), tt.reason) {
				t.Fatalf("log record %v", rec)
			}
		})
	}
}
