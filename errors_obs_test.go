package bulkhead_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bulkhead-go/bulkhead"
)

// Every error type of the package logs as a group of its fields.
var (
	_ slog.LogValuer = (*bulkhead.CrashError)(nil)
	_ slog.LogValuer = (*bulkhead.StartError)(nil)
	_ slog.LogValuer = (*bulkhead.CanceledError)(nil)
	_ slog.LogValuer = (*bulkhead.RemoteError)(nil)
	_ slog.LogValuer = (*bulkhead.OverloadedError)(nil)
	_ slog.LogValuer = (*bulkhead.UnhealthyError)(nil)
	_ slog.LogValuer = (*bulkhead.QuarantinedError)(nil)
)

// ownStatus is an error of another package that says its own status.
type ownStatus struct{ error }

func (ownStatus) HTTPStatus() int { return http.StatusGone }

func TestHTTPStatusTable(t *testing.T) {
	crash := &bulkhead.CrashError{Phase: bulkhead.PhaseCall, Signal: syscall.SIGSEGV}
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, 200},
		{"crash", crash, 502},
		{"crash wrapped", fmt.Errorf("render: %w", crash), 502},
		{"limit", &bulkhead.CrashError{Limit: bulkhead.LimitMemory}, 502},
		{"quarantined", &bulkhead.QuarantinedError{}, 422},
		{"overloaded", &bulkhead.OverloadedError{}, 503},
		{"unhealthy", &bulkhead.UnhealthyError{Last: &bulkhead.StartError{}}, 503},
		{"start", &bulkhead.StartError{}, 503},
		{"start, died on its own", &bulkhead.StartError{Exited: true}, 503},
		{"closed", bulkhead.ErrClosed, 503},
		{"deadline", &bulkhead.CanceledError{Err: context.DeadlineExceeded}, 504},
		{"hung up", &bulkhead.CanceledError{Err: context.Canceled}, 499},
		{"bare deadline", context.DeadlineExceeded, 504},
		{"encoding", fmt.Errorf("x: %w: %w", bulkhead.ErrEncoding, errors.New("cbor: unsupported type chan int")), 500},
		{"bad arguments", &bulkhead.RemoteError{Code: bulkhead.CodeBadArguments}, 400},
		{"unknown method", &bulkhead.RemoteError{Code: bulkhead.CodeUnknownMethod}, 501},
		{"application", &bulkhead.RemoteError{Code: bulkhead.CodeApplication}, 500},
		{"panic", &bulkhead.RemoteError{Code: bulkhead.CodePanic}, 500},
		{"stopping", &bulkhead.RemoteError{Code: bulkhead.CodeServerStopping}, 503},
		{"own status first", ownStatus{crash}, 410},
		{"other", errors.New("disk full"), 500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := bulkhead.HTTPStatus(tt.err); got != tt.want {
				t.Errorf("HTTPStatus(%v) = %d, want %d", tt.err, got, tt.want)
			}
		})
	}
}

// TestHTTPStatusOfRealErrors maps errors the pool really returned: a C
// segfault, a deadline, an oversized argument, a handler's error.
func TestHTTPStatusOfRealErrors(t *testing.T) {
	p := newPool(t, bulkhead.Config{MaxFrameSize: 1 << 16})
	ctx := context.Background()
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	tests := []struct {
		name   string
		ctx    context.Context
		method string
		args   []any
		want   int
	}{
		{"ok", ctx, "null", nil, 200},
		{"segv in C", ctx, "segv", nil, 502},
		{"deadline in a hang", short, "hang", nil, 504},
		{"over the frame limit", ctx, "echo", []any{make([]byte, 1<<17)}, 413},
		{"handler error", ctx, "fail", nil, 500},
		{"unknown method", ctx, "nosuch", nil, 501},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := p.Call(tt.ctx, tt.method, tt.args...)
			r.Release()
			if got := bulkhead.HTTPStatus(err); got != tt.want {
				t.Errorf("HTTPStatus(%v) = %d, want %d", err, got, tt.want)
			}
			var ce *bulkhead.CanceledError
			if errors.As(err, &ce) {
				ce.Wait()
			}
		})
	}
}

// logged logs err as slog.Any("err", err) through a JSON handler and
// returns the "err" value it wrote.
func logged(t *testing.T, err error) map[string]any {
	t.Helper()
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Error("call failed", "err", err)
	var rec map[string]any
	if e := json.Unmarshal(buf.Bytes(), &rec); e != nil {
		t.Fatalf("%v in %s", e, buf.String())
	}
	m, ok := rec["err"].(map[string]any)
	if !ok {
		t.Fatalf("err logged as %T, not a group: %s", rec["err"], buf.String())
	}
	return m
}

func TestErrorsLogAsGroups(t *testing.T) {
	crash := &bulkhead.CrashError{Phase: bulkhead.PhaseCall, PID: 42, RequestID: 7, Method: "render",
		ExitCode: -1, Signal: syscall.SIGSEGV, Reason: "killed by SIGSEGV", Stderr: "boom"}
	tests := []struct {
		err  error
		want map[string]any
	}{
		{crash, map[string]any{"kind": "crash", "signal": "SIGSEGV", "pid": 42.0, "request_id": 7.0,
			"method": "render", "phase": "call", "stderr": "boom"}},
		{&bulkhead.StartError{PID: 3, Exited: true, ExitCode: 3, Reason: "exited"},
			map[string]any{"kind": "start", "exit_code": 3.0, "pid": 3.0}},
		{&bulkhead.RemoteError{Code: bulkhead.CodeApplication, Message: "no such record", Method: "get"},
			map[string]any{"kind": "remote", "code": "application", "message": "no such record"}},
		{&bulkhead.OverloadedError{Method: "get", Queued: 9}, map[string]any{"kind": "overloaded", "queued": 9.0}},
		{&bulkhead.QuarantinedError{Method: "get", Key: "user-1", Deaths: 3, Last: crash},
			map[string]any{"kind": "quarantined", "key": "user-1", "deaths": 3.0}},
		{&bulkhead.CanceledError{Method: "get", Err: context.DeadlineExceeded},
			map[string]any{"kind": "canceled", "cause": "context deadline exceeded"}},
	}
	for _, tt := range tests {
		got := logged(t, tt.err)
		for k, v := range tt.want {
			if got[k] != v {
				t.Errorf("%T: %s = %v, want %v (all: %v)", tt.err, k, got[k], v, got)
			}
		}
		if got["msg"] != tt.err.Error() {
			t.Errorf("%T: msg = %v, want Error()", tt.err, got["msg"])
		}
	}
	q := logged(t, &bulkhead.QuarantinedError{Last: crash})
	if last, _ := q["last"].(map[string]any); last["signal"] != "SIGSEGV" {
		t.Errorf("quarantine's last crash logged as %v", q["last"])
	}
}

// TestCanceledErrorLogsWhileStopping logs a CanceledError at once, while
// the pool is still stopping its worker (the race detector watches), and
// again after Wait, when the stop report is in.
func TestCanceledErrorLogsWhileStopping(t *testing.T) {
	p := newPool(t, bulkhead.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := p.Call(ctx, "hang")
	var ce *bulkhead.CanceledError
	if !errors.As(err, &ce) {
		t.Fatalf("hang: %v", err)
	}
	early := logged(t, err)
	ce.Wait()
	late := logged(t, err)
	if late["started"] != true || !strings.Contains(fmt.Sprint(late["reason"]), "SIG") {
		t.Errorf("after Wait: %v", late)
	}
	if early["kind"] != "canceled" {
		t.Errorf("at once: %v", early)
	}
}
