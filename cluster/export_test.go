package cluster

import "github.com/nats-io/nats.go"

// SetOnHold makes f run as each call of c starts to wait in the client for
// a free worker.
func SetOnHold(c *Client, f func()) { c.onHold = f }

// SetOnProbe makes f run, under the client's lock (it must not block), as
// each probe of a node goes out, with the connection's status then.
func SetOnProbe(c *Client, f func(nats.Status)) { c.onProbeOut = f }

// Ended is closed when s ends: for a test that must not read its events
// until then (a reader that reads is never cut off).
func Ended(s *Subscription) <-chan struct{} { return s.ended }

// ConnOf is c's NATS connection.
func ConnOf(c *Client) *nats.Conn { return c.nc }
