package worker

import (
	"context"
	"fmt"

	"github.com/bulkhead-go/bulkhead/internal/wire"
	"github.com/fxamacker/cbor/v2"
)

// Args are the positional arguments of a call, still encoded. They point
// into the frame the call arrived in, which the worker reuses for the next
// frame: Raw and Bytes are valid only until the handler returns. Decode and
// Scan copy what they decode, so their results may be kept.
type Args struct {
	raw []cbor.RawMessage
}

// Len returns the number of arguments.
func (a Args) Len() int { return len(a.raw) }

// Raw returns the CBOR encoding of argument i, valid until the handler
// returns.
func (a Args) Raw(i int) []byte { return a.raw[i] }

// Bytes returns the contents of argument i, a byte string, without copying:
// the slice points into the frame the call arrived in. It is valid only
// until the handler returns, after which the worker reads the next call into
// the same memory; use bytes.Clone to keep it longer, or Decode into a
// *[]byte for a copy. It may be returned as the handler's result: the reply
// is written before that memory is reused. A null argument gives nil.
func (a Args) Bytes(i int) ([]byte, error) {
	if i < 0 || i >= len(a.raw) {
		return nil, &Error{Code: wire.CodeBadArguments, Message: fmt.Sprintf("argument %d missing: the call has %d", i, len(a.raw))}
	}
	b, err := wire.BytesView(a.raw[i])
	if err != nil {
		return nil, &Error{Code: wire.CodeBadArguments, Message: fmt.Sprintf("argument %d: %v", i, err)}
	}
	return b, nil
}

// Decode decodes argument i into v, which must be a pointer.
func (a Args) Decode(i int, v any) error {
	if i < 0 || i >= len(a.raw) {
		return &Error{Code: wire.CodeBadArguments, Message: fmt.Sprintf("argument %d missing: the call has %d", i, len(a.raw))}
	}
	if err := wire.Unmarshal(a.raw[i], v); err != nil {
		return &Error{Code: wire.CodeBadArguments, Message: fmt.Sprintf("argument %d: %v", i, err)}
	}
	return nil
}

// Scan decodes the arguments into dst, one pointer per argument. The call must
// have exactly len(dst) arguments.
func (a Args) Scan(dst ...any) error {
	if len(dst) != len(a.raw) {
		return &Error{Code: wire.CodeBadArguments, Message: fmt.Sprintf("want %d arguments, got %d", len(dst), len(a.raw))}
	}
	for i, v := range dst {
		if err := a.Decode(i, v); err != nil {
			return err
		}
	}
	return nil
}

// Error is an error a handler can return to choose the code and details the
// caller sees. Any other error travels as code 1 (application) with its text.
type Error struct {
	Code    uint64
	Message string
	Details any
}

func (e *Error) Error() string { return e.Message }

// Func adapts a function of one typed argument and one typed result.
func Func[A, R any](f func(ctx context.Context, arg A) (R, error)) Handler {
	return func(ctx context.Context, args Args) (any, error) {
		var a A
		if err := args.Scan(&a); err != nil {
			return nil, err
		}
		return f(ctx, a)
	}
}
