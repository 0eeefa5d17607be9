package dispatch

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/bulkhead-go/bulkhead/internal/wire"
)

// errStartTimeout: the worker sent no HELLO before the start timeout.
var errStartTimeout = errors.New("no HELLO before the start timeout")

// readHello reads the first frame, which must be a HELLO with cookie. A
// timer shuts the socket down at the deadline; the owner shuts it down
// when the process exits, so the blocking read always ends. A HELLO that is
// refused is answered with ERROR, best effort, before readHello returns.
func (c *Conn) readHello(cookie string, timeout time.Duration) (wire.Hello, error) {
	var timedOut atomic.Bool
	fired := make(chan struct{})
	t := time.AfterFunc(timeout, func() {
		defer close(fired)
		timedOut.Store(true)
		c.Shutdown()
	})
	// Wait for a callback that has started: the descriptor it shuts down
	// may be closed, and its number reused, once readHello returns.
	defer func() {
		if !t.Stop() {
			<-fired
		}
	}()
	r := c.reader
	r.SetMaxFrame(wire.MaxHelloSize)
	h, payload, err := r.Next()
	r.SetMaxFrame(c.maxFrame)
	if timedOut.Load() {
		return wire.Hello{}, errStartTimeout
	}
	if err != nil {
		return wire.Hello{}, err
	}
	if h.Type != wire.TypeHello {
		return wire.Hello{}, &wire.FrameError{Header: h, Reason: "first frame is not HELLO"}
	}
	hello, err := wire.DecodeHello(payload, cookie)
	if err != nil {
		var he *wire.HelloError
		if errors.As(err, &he) {
			// Tell the worker why, best effort, before dropping it.
			var b wire.Builder
			_ = b.Value(wire.TypeError, 0, wire.ErrorBody{Code: he.Code, Message: he.Reason}, wire.MaxHelloSize)
			_, _ = c.fd.Write(b.Bytes())
		}
		return wire.Hello{}, err
	}
	return hello, nil
}
