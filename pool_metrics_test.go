package bulkhead_test

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/bulkhead-go/bulkhead"
)

// TestMetricsCountCalls makes calls of every kind on a real pool and reads
// them back from Metrics: by method and outcome, their durations, and the
// crash by its signal.
func TestMetricsCountCalls(t *testing.T) {
	p := newPool(t, bulkhead.Config{})
	ctx := context.Background()
	calls := []struct {
		method string
		want   bulkhead.Outcome
	}{
		{"null", bulkhead.OutcomeOK}, {"null", bulkhead.OutcomeOK}, {"null", bulkhead.OutcomeOK},
		{"fail", bulkhead.OutcomeRemoteError},
		{"segv", bulkhead.OutcomeCrashCall},
		{"nosuch", bulkhead.OutcomeRemoteError}, // no HELLO named it: counted as OtherMethod
	}
	for _, c := range calls {
		_, err := p.Call(ctx, c.method)
		if got := bulkhead.OutcomeOf(err); got != c.want {
			t.Fatalf("%s: outcome %v (%v), want %v", c.method, got, err, c.want)
		}
	}
	short, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	_, err := p.Call(short, "hang")
	var ce *bulkhead.CanceledError
	if !errors.As(err, &ce) {
		t.Fatalf("hang: %v", err)
	}
	ce.Wait()

	m := p.Metrics()
	by := map[string]bulkhead.MethodMetrics{}
	for _, mm := range m.Methods {
		by[mm.Method] = mm
	}
	tests := []struct {
		method  string
		outcome bulkhead.Outcome
		want    uint64
	}{
		{"null", bulkhead.OutcomeOK, 3},
		{"fail", bulkhead.OutcomeRemoteError, 1},
		{"segv", bulkhead.OutcomeCrashCall, 1},
		{"hang", bulkhead.OutcomeCanceled, 1},
		{bulkhead.OtherMethod, bulkhead.OutcomeRemoteError, 1},
		{"echo", bulkhead.OutcomeOK, 0},
	}
	for _, tt := range tests {
		mm, ok := by[tt.method]
		if !ok {
			t.Errorf("no metrics for %q", tt.method)
			continue
		}
		if got := mm.Outcomes[tt.outcome]; got != tt.want {
			t.Errorf("%s %v = %d, want %d", tt.method, tt.outcome, got, tt.want)
		}
		var n uint64
		for _, c := range mm.Outcomes {
			n += c
		}
		if mm.Duration.Count != n {
			t.Errorf("%s: %d durations for %d calls", tt.method, mm.Duration.Count, n)
		}
	}
	if h := by["hang"].Duration; h.Sum < 30*time.Millisecond {
		t.Errorf("hang's duration %v, shorter than its deadline", h.Sum)
	}
	var segv uint64
	for _, c := range m.Crashes {
		if c.Phase == bulkhead.PhaseCall && c.Signal == syscall.SIGSEGV {
			segv += c.Count
		}
	}
	if segv != 1 {
		t.Errorf("crashes by signal: %+v, want one SIGSEGV during a call", m.Crashes)
	}
}

// TestMetricsQueueWait holds the only worker with a call behind a gate so
// that a second call waits, then reads its wait from Metrics.
func TestMetricsQueueWait(t *testing.T) {
	p := newPool(t, bulkhead.Config{})
	g := newGate(t)
	ctx := context.Background()
	first := callPID(p, ctx, "gate", map[string]any{"Fifo": g.path})
	waitInFlight(t, p, 1)
	second := callPID(p, ctx, "pid")
	for p.Stats().Waiting != 1 {
		runtimeGosched()
	}
	g.open()
	for _, ch := range []<-chan result{first, second} {
		if r := <-ch; r.err != nil {
			t.Fatal(r.err)
		}
	}
	if q := p.Metrics().QueueWait; q.Count != 1 || q.Sum <= 0 {
		t.Errorf("queue wait %+v, want one wait", q)
	}
}
