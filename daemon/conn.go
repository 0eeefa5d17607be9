package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/bulkhead-go/bulkhead/activation"
	"github.com/bulkhead-go/bulkhead/internal/clientwire"
	"github.com/bulkhead-go/bulkhead/internal/wire"
)

var errPermission = clientwire.ErrPermission

// conn is one client's connection. Its reader (serve) decodes frames and
// starts a goroutine per request; its writer sends what they answer. Every
// handle it hands out belongs to its session, which ends with it.
type conn struct {
	s      *Server
	uc     *net.UnixConn
	raw    syscall.RawConn
	peer   Peer
	log    *slog.Logger
	limits ConnLimits

	reqs sync.WaitGroup // request and subscription goroutines

	mu       sync.Mutex // guards the fields below; no I/O under it
	pending  map[uint64]context.CancelFunc
	handles  map[uint64]any // *activation.Object or *activation.ClassObject
	subs     int
	subsByID map[uint64]*activation.Subscription
	draining bool   // Shutdown: subscriptions end
	next     uint64 // the last handle given
	sess     *activation.Session
	out      [][]byte // frames queued for the writer
	outBytes int
	wake     chan struct{} // cap 1: the writer has work
	writing  bool          // a sender or the writer is writing to the socket
	closed   bool
}

func newConn(s *Server, uc *net.UnixConn) (*conn, error) {
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil, err
	}
	var peer Peer
	var perr error
	if err := raw.Control(func(fd uintptr) { peer, perr = peerOf(int(fd)) }); err != nil {
		return nil, err
	}
	if perr != nil {
		return nil, fmt.Errorf("SO_PEERCRED: %w", perr)
	}
	s.mu.Lock()
	limits := s.cfg.Limits
	s.mu.Unlock()
	return &conn{s: s, uc: uc, raw: raw, peer: peer, limits: limits.withDefaults(),
		log:     s.log.With("client_pid", peer.PID, "client_uid", peer.UID),
		pending: make(map[uint64]context.CancelFunc), handles: make(map[uint64]any),
		subsByID: make(map[uint64]*activation.Subscription),
		wake:     make(chan struct{}, 1)}, nil
}

// serve runs the connection to its end, and releases everything the client
// held.
func (c *conn) serve() {
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		c.writer()
	}()
	err := c.readLoop()
	if err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, io.EOF) {
		c.log.Info("client connection ended", "err", err)
	}
	c.mu.Lock()
	c.closed = true // the writer sends what is queued (an ERROR for a violation), then closes
	c.mu.Unlock()
	c.kick()
	c.mu.Lock()
	for _, cancel := range c.pending {
		cancel()
	}
	c.mu.Unlock()
	c.reqs.Wait()
	<-writerDone
	c.mu.Lock()
	sess := c.sess
	c.sess, c.handles = nil, nil
	c.mu.Unlock()
	if sess != nil {
		sess.Close() // every reference, lock and ROT entry it held
	}
}

// readLoop reads the handshake, then requests, until the connection ends.
// A protocol violation ends it, with ERROR id 0 if the client will read it.
func (c *conn) readLoop() error {
	r := wire.NewReaderSize(c.uc, wire.MaxHelloSize, connReadBuffer)
	c.uc.SetReadDeadline(time.Now().Add(helloTimeout)) // a peer that says nothing holds nothing
	h, p, err := r.Next()
	if err != nil {
		return err
	}
	c.uc.SetReadDeadline(time.Time{})
	if err := c.handshake(h, p); err != nil {
		return err
	}
	r.SetMaxFrame(uint32(c.limits.MaxFrame))
	for {
		h, p, err := r.Next()
		if err != nil {
			if errors.Is(err, wire.ErrProtocol) {
				c.fail(0, clientwire.ErrProtocol, err.Error())
			}
			return err
		}
		if err := c.frame(h, p); err != nil {
			c.fail(0, clientwire.ErrProtocol, err.Error())
			return err
		}
	}
}

// handshake answers the client's HELLO, or refuses the connection.
func (c *conn) handshake(h wire.Header, p []byte) error {
	var hello clientwire.Hello
	switch {
	case h.Type != clientwire.TypeHello || h.ID != 0:
		c.fail(0, clientwire.ErrProtocol, "the first frame must be HELLO with id 0")
		return fmt.Errorf("first frame %v", h.Type)
	case clientwire.Decode(p, &hello) != nil:
		c.fail(0, clientwire.ErrProtocol, "malformed HELLO")
		return errors.New("malformed HELLO")
	case hello.Protocol != clientwire.Version:
		c.send(clientwire.TypeError, 0, map[string]any{"kind": "unsupported_version",
			"message": fmt.Sprintf("protocol %d is not spoken here (1 is)", hello.Protocol)})
		return fmt.Errorf("protocol %d", hello.Protocol)
	case !c.s.anyAllowed(c.peer):
		c.fail(0, errPermission, "")
		return fmt.Errorf("uid %d may use nothing here", c.peer.UID)
	}
	if hello.Name != "" {
		c.log = c.log.With("client", hello.Name)
	}
	return c.send(clientwire.TypeHello, 0, clientwire.Hello{Protocol: clientwire.Version, MaxFrame: uint64(c.limits.MaxFrame)})
}

// frame handles one frame after the handshake; an error is a protocol
// violation.
func (c *conn) frame(h wire.Header, p []byte) error {
	switch h.Type {
	case clientwire.TypeRequest:
		return c.request(h.ID, bytes.Clone(p))
	case clientwire.TypeCancel:
		c.mu.Lock()
		cancel := c.pending[h.ID]
		c.mu.Unlock()
		if cancel != nil {
			cancel()
		}
		return nil
	case clientwire.TypePing:
		return c.sendRaw(clientwire.TypePong, h.ID, nil)
	case clientwire.TypePong:
		return nil
	}
	return fmt.Errorf("a client does not send %v", h.Type)
}

// request starts request id on a goroutine of its own.
func (c *conn) request(id uint64, p []byte) error {
	var req clientwire.Request
	if id == 0 {
		return errors.New("REQUEST with id 0")
	}
	if err := clientwire.Decode(p, &req); err != nil {
		if errors.Is(err, wire.ErrProtocol) && wire.CheckValue(p) != nil {
			return err // not CBOR at all
		}
		return c.fail(id, clientwire.ErrBadRequest, err.Error())
	}
	if req.Op == clientwire.OpRelease {
		return c.releaseNow(id, &req)
	}
	ctx, cancel := c.requestContext(req.Deadline)
	c.mu.Lock()
	switch {
	case c.pending[id] != nil:
		c.mu.Unlock()
		cancel()
		return fmt.Errorf("request id %d is in use", id)
	case len(c.pending) >= c.limits.MaxPending:
		c.mu.Unlock()
		cancel()
		return fmt.Errorf("more than %d requests at once (max_pending)", c.limits.MaxPending)
	}
	c.pending[id] = cancel
	c.reqs.Add(1)
	c.mu.Unlock()
	c.s.runners.run(func() {
		defer c.reqs.Done()
		defer c.finish(id)
		c.run(ctx, id, &req)
	})
	return nil
}

// releaseNow carries out a release as it is read, before the connection's
// next frame, and answers only if it fails (CLIENT-PROTOCOL.md section
// 5.2): a request sent after it sees the handle gone, and a client need
// not wait for anything. Releasing never blocks (activation's Release only
// queues a frame to the server), so the reader may do it; it is never
// pending.
func (c *conn) releaseNow(id uint64, req *clientwire.Request) error {
	c.mu.Lock()
	inUse := c.pending[id] != nil
	c.mu.Unlock()
	if inUse {
		return fmt.Errorf("request id %d is in use", id)
	}
	if err := c.release(req.Handle); err != nil {
		c.fail(id, err, "")
	}
	return nil
}

// requestContext is a request's ctx: its deadline, bounded by max_deadline.
func (c *conn) requestContext(deadline uint64) (context.Context, context.CancelFunc) {
	c.s.mu.Lock()
	limit := time.Now().Add(c.s.cfg.MaxDeadline)
	c.s.mu.Unlock()
	if deadline > 0 && time.Unix(0, int64(deadline)).Before(limit) {
		limit = time.Unix(0, int64(deadline))
	}
	return context.WithDeadline(context.Background(), limit)
}

// finish ends request id.
func (c *conn) finish(id uint64) {
	c.mu.Lock()
	cancel := c.pending[id]
	delete(c.pending, id)
	c.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// drain ends the connection's subscriptions and waits until it has no
// request in flight, or ctx ends.
func (c *conn) drain(ctx context.Context) {
	c.mu.Lock()
	c.draining = true
	subs := make([]*activation.Subscription, 0, len(c.subsByID))
	for _, sub := range c.subsByID {
		subs = append(subs, sub)
	}
	c.mu.Unlock()
	for _, sub := range subs {
		sub.Close()
	}
	done := make(chan struct{})
	c.s.drainWG.Add(1) // Shutdown waits for it, once the connection is closed
	go func() {
		defer c.s.drainWG.Done()
		c.reqs.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// close shuts the connection down at once; serve then releases what the
// client held.
func (c *conn) close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.uc.Close()
	c.kick()
}

// helloTimeout bounds the wait for a client's HELLO.
const helloTimeout = 10 * time.Second

// connReadBuffer is a client connection's read buffer: requests are small,
// and a daemon has many mostly idle connections (BenchmarkDaemonMemory).
const connReadBuffer = 8 << 10
