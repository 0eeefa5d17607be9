package bulkhead_test

import (
	"context"
	"log/slog"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/bulkhead-go/bulkhead/internal/wire"
)

func wireMarshal(v any) ([]byte, error) { return wire.Marshal(v) }

func runtimeGosched() { runtime.Gosched() }

// logCapture is a slog.Handler that lets a test wait for a record.
type logCapture struct {
	mu      sync.Mutex
	cond    *sync.Cond
	records []map[string]any
}

func (l *logCapture) Enabled(context.Context, slog.Level) bool { return true }
func (l *logCapture) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logCapture) WithGroup(string) slog.Handler            { return l }

func (l *logCapture) Handle(_ context.Context, r slog.Record) error {
	m := map[string]any{"msg": r.Message}
	r.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value.Any(); return true })
	l.mu.Lock()
	if l.cond == nil {
		l.cond = sync.NewCond(&l.mu)
	}
	l.records = append(l.records, m)
	l.cond.Broadcast()
	l.mu.Unlock()
	return nil
}

// wait returns the first record with message msg, waiting for it.
func (l *logCapture) wait(t *testing.T, msg string) map[string]any {
	t.Helper()
	timer := time.AfterFunc(10*time.Second, func() {
		l.mu.Lock()
		if l.cond != nil {
			l.cond.Broadcast()
		}
		l.mu.Unlock()
	})
	defer timer.Stop()
	deadline := time.Now().Add(10 * time.Second)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cond == nil {
		l.cond = sync.NewCond(&l.mu)
	}
	for {
		for _, r := range l.records {
			if r["msg"] == msg {
				return r
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q log record; have %v", msg, l.records)
		}
		l.cond.Wait()
	}
}
