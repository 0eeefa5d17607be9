package bulkhead

import (
	"context"
	"time"

	"github.com/bulkhead-go/bulkhead/internal/dispatch"
	"github.com/bulkhead-go/bulkhead/internal/wire"
)

// Reply is the result of a call, still encoded, so that a caller pays for
// decoding only into the type it wants. Its bytes are its own: the pool
// reuses them only after Release.
type Reply struct {
	raw   []byte
	big   *replyBuffer    // a large reply's buffer, which Release recycles; else nil
	small *dispatch.Small // a small reply's buffer, which Release recycles; else nil
	gen   uint64          // small's generation when this reply got it
	use   *CallUsage      // the worker's usage during the call (Config.CallUsage), or nil
}

// CallUsage is a worker's resource usage during one call (Config.CallUsage).
type CallUsage struct {
	// CPU is the CPU time, user and system, of the thread that ran the
	// call. With Concurrency above 1 the Go SDK holds the call's goroutine
	// on one thread while the handler runs, so that it is the call's own.
	CPU time.Duration
	// MaxRSS is the worker's peak resident memory from the call's start to
	// its end, in bytes (the peak is reset as each call starts: with calls
	// running at once, it covers the others' too).
	MaxRSS int64
}

// Usage returns the worker's resource usage during the call, and false if
// there is none: Config.CallUsage was not set, or the worker does not
// report usage.
func (r Reply) Usage() (CallUsage, bool) {
	if r.use == nil {
		return CallUsage{}, false
	}
	return *r.use, true
}

// NewReply returns a Reply whose result is raw, one CBOR data item
// (docs/PROTOCOL.md section 5), which it keeps without copying. Calls made
// elsewhere than through a Pool (the activation package's objects) return
// their results with it, and so can a fake Caller in a test.
func NewReply(raw []byte) Reply { return Reply{raw: raw} }

// Release gives the reply's memory back to the pool, to be reused for a
// later reply instead of allocating, zeroing and collecting another one: a
// caller that releases its replies makes calls without allocating. It is
// optional: an unreleased Reply is garbage-collected as usual. After
// Release, neither the Reply (nor a copy of it) nor anything decoded from it
// without copying (a *[]byte, see Decode) may be used. A second Release,
// through the Reply or a copy, does nothing.
func (r Reply) Release() {
	if b := r.big; b != nil && b.released.CompareAndSwap(false, true) {
		b.owner.Put(b.buf)
	}
	if r.small != nil {
		r.small.Release(r.gen)
	}
}

// Decode decodes the result into v, which must be a pointer.
//
// A byte string decoded into a *[]byte is not copied: the slice shares
// memory with the Reply (it is a part of Raw), so writing into it changes
// what Raw and later Decode calls see. Copy it (bytes.Clone) to keep both.
func (r Reply) Decode(v any) error {
	if r.raw == nil {
		return wire.Unmarshal([]byte{0xf6}, v)
	}
	if p, ok := v.(*[]byte); ok {
		// Anything but a byte string (null included) takes the
		// decoder's path below, with its errors.
		if b, err := wire.BytesView(r.raw); err == nil && b != nil {
			*p = b
			return nil
		}
	}
	return wire.Unmarshal(r.raw, v)
}

// Value decodes the result into the natural Go type: nil, bool, uint64 or
// int64, float64, string, []byte, []any or map[any]any.
func (r Reply) Value() (any, error) {
	var v any
	err := r.Decode(&v)
	return v, err
}

// Raw returns the result's CBOR encoding.
func (r Reply) Raw() []byte { return r.raw }

// Caller is anything that runs calls: a *Pool.
type Caller interface {
	Call(ctx context.Context, method string, args ...any) (Reply, error)
}

// CallAs runs a call and decodes its result into a T.
func CallAs[T any](ctx context.Context, c Caller, method string, args ...any) (T, error) {
	var v T
	r, err := c.Call(ctx, method, args...)
	if err != nil {
		return v, err
	}
	err = r.Decode(&v)
	return v, err
}
