package bulkhead

import (
	"sync/atomic"

	"github.com/bulkhead-go/bulkhead/internal/dispatch"
)

// replyBuffer is a large reply's recyclable memory, given back at most once.
type replyBuffer struct {
	buf      []byte
	owner    *dispatch.Buffers
	released atomic.Bool
}
