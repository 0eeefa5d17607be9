package conform

import (
	"context"
	"time"

	"github.com/bulkhead-go/bulkhead/worker"
	"github.com/fxamacker/cbor/v2"
)

// HandleEcho registers on s the two methods that Options.Echo and
// Options.Sleep expect, as "echo" and "sleep": echo(x) returns x's encoding
// unchanged; sleep(ms) waits ms milliseconds, or until its call is cancelled
// or passes its deadline.
func HandleEcho(s *worker.Server) {
	s.Handle("echo", worker.Func(func(_ context.Context, v cbor.RawMessage) (cbor.RawMessage, error) {
		return v, nil
	}))
	s.Handle("sleep", worker.Func(func(ctx context.Context, ms uint64) (any, error) {
		t := time.NewTimer(time.Duration(ms) * time.Millisecond)
		defer t.Stop()
		select {
		case <-t.C:
			return nil, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}))
}
