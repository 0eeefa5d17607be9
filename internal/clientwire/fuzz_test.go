package clientwire

import (
	"context"
	"errors"
	"reflect"
	"syscall"
	"testing"
	"time"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/activation"
	"github.com/bulkhead-go/bulkhead/internal/wire"
)

// FuzzDecodeRequest: whatever a client sends, decoding a REQUEST returns a
// request or an error, never a panic, and a request it accepts keeps the
// value rules.
func FuzzDecodeRequest(f *testing.F) {
	for _, v := range []any{
		map[string]any{"op": "call", "pool": "p", "method": "echo", "args": []any{1, "x"}},
		map[string]any{"op": "release", "handle": 3},
		map[string]any{"op": "subscribe", "object": 1, "buffer": 8, "deadline": 1},
		map[string]any{"op": "x", "zzz": 1},
	} {
		p, _ := wire.Marshal(v)
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		var r Request
		if Decode(p, &r) != nil {
			return
		}
		if err := wire.CheckValue(p); err != nil {
			t.Fatalf("accepted a request that breaks the value rules: %v", err)
		}
		for _, a := range r.Args {
			if err := wire.CheckValue(a); err != nil {
				t.Fatalf("an argument breaks the value rules: %v", err)
			}
		}
	})
}

// FuzzDecodeError: an ERROR from a daemon decodes to an error, never a
// panic.
func FuzzDecodeError(f *testing.F) {
	for _, err := range []error{
		&bulkhead.CrashError{Phase: bulkhead.PhaseCall, PID: 1, Signal: syscall.SIGSEGV, Reason: "r"},
		&bulkhead.CanceledError{Method: "m", Err: context.DeadlineExceeded},
		&activation.DisconnectedError{Class: "C", Err: &bulkhead.CrashError{}},
		ErrPermission,
	} {
		p, _ := wire.Marshal(EncodeError(err))
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		if err := DecodeError(p); err == nil {
			t.Fatal("DecodeError returned nil")
		}
	})
}

// Every error type crosses with its kind and fields.
func TestErrorRoundTrip(t *testing.T) {
	tests := []error{
		&bulkhead.CrashError{Phase: bulkhead.PhaseCall, PID: 7, RequestID: 9, Method: "m", ExitCode: -1,
			Signal: syscall.SIGSEGV, CoreDumped: true, Killed: true, Reason: "r", Stderr: "s",
			Limit: bulkhead.LimitCPU, Replays: 2, AbandonedBy: 3},
		&bulkhead.StartError{PID: 1, ExitCode: 3, Exited: true, Reason: "r", Stderr: "s"},
		&bulkhead.CanceledError{Method: "m", RequestID: 2, PID: 3, Err: context.DeadlineExceeded, Started: true,
			Reason: "r", ExitCode: -1, Signal: syscall.SIGKILL, Stack: "st"},
		&bulkhead.OverloadedError{Method: "m", Queued: 4, Reason: "r"},
		&bulkhead.RemoteError{Code: bulkhead.CodeApplication, Message: "x", Method: "m", RequestID: 1, PID: 2},
		&activation.DisconnectedError{Class: "C", Object: 4, PID: 5,
			Err: &bulkhead.CrashError{Phase: bulkhead.PhaseIdle, PID: 5, Reason: "gone"}},
		&activation.SlowSubscriberError{Object: 1, Buffer: 8},
	}
	for _, want := range tests {
		p, err := wire.Marshal(EncodeError(want))
		if err != nil {
			t.Fatal(err)
		}
		got := DecodeError(p)
		if got.Error() != want.Error() {
			t.Errorf("%T: got %q, want %q", want, got, want)
		}
	}
	for _, s := range sentinels {
		p, _ := wire.Marshal(EncodeError(s.err))
		if got := DecodeError(p); !errors.Is(got, s.err) {
			t.Errorf("%s: %v does not match its sentinel", s.kind, got)
		}
	}
}

// Every exported field of every error type crosses: a field added to an
// error type without a key here fails this test.
func TestErrorFieldsCross(t *testing.T) {
	for _, e := range []error{&bulkhead.CrashError{}, &bulkhead.StartError{}, &bulkhead.CanceledError{},
		&bulkhead.OverloadedError{}, &bulkhead.UnhealthyError{}, &bulkhead.QuarantinedError{},
		&bulkhead.RemoteError{}, &activation.DisconnectedError{}, &activation.SlowSubscriberError{}} {
		v := reflect.ValueOf(e).Elem()
		fill(v)
		p, err := wire.Marshal(EncodeError(e))
		if err != nil {
			t.Fatal(err)
		}
		got := reflect.ValueOf(DecodeError(p)).Elem()
		for i := range v.NumField() {
			f := v.Type().Field(i)
			switch {
			case !f.IsExported(), f.Name == "Stopped", f.Type.Kind() == reflect.Interface && f.Name != "Details":
				continue // errors cross as text or a kind, the wait channel not at all
			}
			if !reflect.DeepEqual(v.Field(i).Interface(), got.Field(i).Interface()) {
				t.Errorf("%T.%s: sent %v, got %v", e, f.Name, v.Field(i), got.Field(i))
			}
		}
	}
}

// fill sets every exported field of struct v to a value that is not zero
// and that the field's type can name (a Phase, a Limit).
func fill(v reflect.Value) {
	for i := range v.NumField() {
		f := v.Field(i)
		if !v.Type().Field(i).IsExported() {
			continue
		}
		switch f.Kind() {
		case reflect.Int, reflect.Int64:
			if f.Type() == reflect.TypeOf(time.Duration(0)) {
				f.SetInt(int64(time.Second))
			} else {
				f.SetInt(2)
			}
		case reflect.Uint64:
			f.SetUint(7)
		case reflect.String:
			f.SetString("x")
		case reflect.Bool:
			f.SetBool(true)
		case reflect.Struct:
			if f.Type() == reflect.TypeOf(time.Time{}) {
				f.Set(reflect.ValueOf(time.Unix(0, 12345)))
			}
		}
	}
}
