package testutil

import (
	"context"
	"log/slog"
)

// Records is a slog.Handler that hands each record whose message is Message
// to a test, as a map of its attributes, on Recs (which must have room or a
// reader: the logging goroutine waits).
type Records struct {
	Message string
	Recs    chan map[string]any
}

func (l *Records) Enabled(context.Context, slog.Level) bool { return true }
func (l *Records) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *Records) WithGroup(string) slog.Handler            { return l }
func (l *Records) Handle(_ context.Context, r slog.Record) error {
	if r.Message != l.Message {
		return nil
	}
	m := map[string]any{}
	r.Attrs(func(a slog.Attr) bool {
		m[a.Key] = a.Value.Any()
		return true
	})
	l.Recs <- m
	return nil
}
