package daemon

import (
	"errors"
	"time"

	"github.com/bulkhead-go/bulkhead/internal/clientwire"
	"github.com/bulkhead-go/bulkhead/internal/fdio"
	"github.com/bulkhead-go/bulkhead/internal/wire"
)

// errSlowClient ends a connection whose client does not read its answers.
var errSlowClient = errors.New("the client does not read its answers (max_out)")

// send queues a frame of type t and id with v's encoding.
func (c *conn) send(t wire.Type, id uint64, v any) error {
	p, err := wire.Marshal(v)
	if err != nil {
		return err
	}
	return c.sendRaw(t, id, p)
}

// sendRaw queues a frame with payload p. It never blocks: a client that
// lets max_out bytes pile up is cut off.
func (c *conn) sendRaw(t wire.Type, id uint64, p []byte) error {
	f := clientwire.RawFrame(make([]byte, 0, wire.HeaderSize+len(p)), t, id, p)
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return errClosedConn
	}
	if c.outBytes+len(f) > c.limits.MaxOut && c.outBytes > 0 {
		c.mu.Unlock()
		c.log.Warn("client cut off", "err", errSlowClient)
		c.close()
		return errSlowClient
	}
	if !c.writing && len(c.out) == 0 {
		// Nothing queued and nobody writing: write from here, without
		// waking the writer, as far as the socket takes it now.
		c.writing = true
		c.mu.Unlock()
		n := fdio.TryWrite(c.raw, f)
		c.mu.Lock()
		c.writing = false
		more := len(c.out) > 0
		if n == len(f) {
			c.mu.Unlock()
			if more {
				c.kick()
			}
			return nil
		}
		f = f[n:]
		c.out = append([][]byte{f}, c.out...) // its rest before what came meanwhile
	} else {
		c.out = append(c.out, f)
	}
	c.outBytes += len(f)
	c.mu.Unlock()
	c.kick()
	return nil
}

var errClosedConn = errors.New("connection closed")

func (c *conn) kick() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// fail answers request id (0: the connection) with err's kind and msg.
func (c *conn) fail(id uint64, err error, msg string) error {
	m := clientwire.EncodeError(err)
	if msg != "" {
		m["message"] = msg
	}
	return c.send(clientwire.TypeError, id, m)
}

// writer writes queued frames. Once the connection is closed it writes
// what is left, with a second's grace for a client that does not read,
// closes the socket, and returns.
func (c *conn) writer() {
	for range c.wake {
		c.mu.Lock()
		if c.writing && !c.closed {
			c.mu.Unlock() // a sender writes; it kicks again if it leaves some
			continue
		}
		batch, closed := c.out, c.closed
		c.out, c.outBytes = nil, 0
		c.writing = len(batch) > 0
		c.mu.Unlock()
		if closed {
			c.uc.SetWriteDeadline(time.Now().Add(time.Second))
		}
		for _, f := range batch {
			if _, err := c.uc.Write(f); err != nil {
				c.close()
				closed = true
				break
			}
		}
		if closed {
			c.uc.Close()
			return
		}
		c.mu.Lock()
		c.writing = false
		more := len(c.out) > 0
		c.mu.Unlock()
		if more {
			c.kick()
		}
	}
}
