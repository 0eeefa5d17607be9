package cluster

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/bulkhead-go/bulkhead/internal/clientwire"
	"github.com/nats-io/nats.go"
)

// Headers of the messages between clients and nodes (docs/DESIGN.md,
// "Cluster"). Payloads are the client protocol's CBOR.
const (
	// HeaderStatus says what a node's message to a call's inbox is.
	HeaderStatus = "Bulkhead-Status"
	// HeaderNode is the node that sent it.
	HeaderNode = "Bulkhead-Node"
	// HeaderTimeout is the time the caller has left, in nanoseconds: the
	// deadline travels as a duration, so clocks need not agree.
	HeaderTimeout = "Bulkhead-Timeout"
	// HeaderCancel, on a message to a node's own subject, cancels the call
	// whose reply subject it names: the caller's ctx was canceled.
	HeaderCancel = "Bulkhead-Cancel"
	// HeaderClient names the client of an object request: its session
	// on the node, whose handles the request may use.
	HeaderClient = "Bulkhead-Client"
)

// Values of HeaderStatus.
const (
	statusQueued  = "queued"  // the node took the call but waits for a worker: it says started before it runs it
	statusStarted = "started" // the node will run the call: sent and flushed before it does
	statusResult  = "result"  // the payload is the result's CBOR
	statusError   = "error"   // the payload is an ERROR map (clientwire.EncodeError)
	statusRefused = "refused" // not started (the node drains): the client may send it elsewhere
	statusResend  = "resend"  // not started (the node's connection was remade since): the client may send it again
	statusAlive   = "alive"   // the answer to a probe
	statusEvent   = "event"   // an event of a subscription: [name, args]
)

// Defaults shared by nodes and clients, which must agree on them.
const (
	defaultPrefix    = "bulkhead"
	defaultHeartbeat = 100 * time.Millisecond
)

// nameRE is what a pool, prefix token or node id may be: one subject
// token, and a micro service name.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func checkName(what, s string) error {
	if !nameRE.MatchString(s) {
		return fmt.Errorf("cluster: %s %q: want 1 to 64 of A-Z a-z 0-9 _ -", what, s)
	}
	return nil
}

// subjects of one pool under a prefix.
type subjects struct{ prefix, pool string }

func (s subjects) call() string            { return s.prefix + "." + s.pool + ".call" }
func (s subjects) node(id string) string   { return s.prefix + "." + s.pool + ".node." + id }
func (s subjects) load() string            { return s.prefix + "." + s.pool + ".load" }
func (s subjects) alive(id string) string  { return s.prefix + ".alive." + id }
func (s subjects) activate() string        { return s.prefix + ".obj.activate" }
func (s subjects) object(id string) string { return s.prefix + ".obj.node." + id }
func (s subjects) rot() string             { return s.prefix + ".obj.rot" }
func (s subjects) objLoad() string         { return s.prefix + ".obj.load" }
func (s subjects) client(id string) string { return s.prefix + ".client." + id }
func (s subjects) service() string         { return s.pool }
func (s subjects) queueGroup() string      { return s.prefix }
func timeoutHeader(d time.Duration) string { return strconv.FormatInt(int64(d), 10) }

// load is a node's heartbeat for one pool, on subjects.load every
// Heartbeat: what a client needs to prefer a node with a free worker.
type load struct {
	Node     string `cbor:"node"`
	Free     int64  `cbor:"free"`     // workers not running a call of this node's
	Workers  int64  `cbor:"workers"`  // workers serving calls
	Draining bool   `cbor:"draining"` // leaving: send it nothing new
}

// decodeLoad decodes a heartbeat, which anyone on the subject may have
// sent: strictly, and bounded.
func decodeLoad(p []byte) (load, error) {
	var l load
	if err := clientwire.Decode(p, &l); err != nil {
		return l, err
	}
	if checkName("node", l.Node) != nil || l.Free < -1<<20 || l.Free > 1<<20 || l.Workers < 0 || l.Workers > 1<<20 {
		return l, fmt.Errorf("cluster: heartbeat out of bounds")
	}
	return l, nil
}

// parseTimeout reads HeaderTimeout: a positive duration, at most max.
func parseTimeout(h nats.Header, max time.Duration) (time.Duration, error) {
	v := h.Get(HeaderTimeout)
	if v == "" {
		return max, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%w: %s %q", clientwire.ErrBadRequest, HeaderTimeout, v)
	}
	return min(time.Duration(n), max), nil
}

// flush waits until the NATS server has had everything published on nc,
// within ctx (nats.go wants a deadline: without one, 5 s).
func flush(ctx context.Context, nc *nats.Conn) error {
	if _, ok := ctx.Deadline(); ok {
		return nc.FlushWithContext(ctx)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return nc.FlushTimeout(5 * time.Second)
}
