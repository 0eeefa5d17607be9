package activation_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"syscall"
	"testing"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/activation"
)

var (
	_ slog.LogValuer = (*activation.DisconnectedError)(nil)
	_ slog.LogValuer = (*activation.SessionEndedError)(nil)
	_ slog.LogValuer = (*activation.SlowSubscriberError)(nil)
)

func TestHTTPStatusObjects(t *testing.T) {
	crash := &bulkhead.CrashError{Phase: bulkhead.PhaseCall, Signal: syscall.SIGSEGV}
	tests := []struct {
		err  error
		want int
	}{
		{nil, 200},
		{&activation.DisconnectedError{Err: crash}, 502},
		{&activation.DisconnectedError{Err: bulkhead.ErrClosed}, 503},
		{&activation.SessionEndedError{Reason: "lease expired"}, 410},
		{fmt.Errorf("get: %w", activation.ErrUnknownClass), 404},
		{activation.ErrNameInUse, 409},
		{activation.ErrInvalidName, 400},
		{activation.ErrTooManyObjects, 503},
		{crash, 502}, // the pool's errors, through bulkhead.HTTPStatus
		{&bulkhead.OverloadedError{}, 503},
	}
	for _, tt := range tests {
		if got := activation.HTTPStatus(tt.err); got != tt.want {
			t.Errorf("HTTPStatus(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
}

func TestObjectErrorsLogAsGroups(t *testing.T) {
	var buf bytes.Buffer
	err := &activation.DisconnectedError{Class: "Counter", Object: 3, PID: 9,
		Err: &bulkhead.CrashError{Phase: bulkhead.PhaseCall, Signal: syscall.SIGABRT}}
	slog.New(slog.NewJSONHandler(&buf, nil)).Error("call failed", "err", err)
	var rec struct {
		Err struct {
			Kind  string
			Class string
			Cause struct{ Signal string }
		}
	}
	if e := json.Unmarshal(buf.Bytes(), &rec); e != nil {
		t.Fatal(e)
	}
	if rec.Err.Kind != "disconnected" || rec.Err.Class != "Counter" || rec.Err.Cause.Signal != "SIGABRT" {
		t.Errorf("logged %s", buf.String())
	}
}
