package cluster_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/bulkhead-go/bulkhead/activation"
	"github.com/bulkhead-go/bulkhead/cluster"
	"github.com/bulkhead-go/bulkhead/internal/testutil"
	"github.com/nats-io/nats.go"
)

// proxy forwards TCP connections to a NATS server, and can cut them and
// refuse new ones for a while (its port closed): a network partition of
// whoever connects through it, which nats.go's reconnection heals.
type proxy struct {
	addr, target string
	wg           sync.WaitGroup // the accept loops and the pipes

	mu    sync.Mutex
	ln    net.Listener // nil while cut
	conns []net.Conn
}

// startProxy starts a proxy to the NATS server at natsURL; it closes when
// the test ends.
func startProxy(t *testing.T, natsURL string) *proxy {
	t.Helper()
	u, err := url.Parse(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{addr: "127.0.0.1:0", target: u.Host}
	if err := p.heal(); err != nil {
		t.Fatal(err)
	}
	p.addr = p.ln.Addr().String()
	t.Cleanup(func() {
		p.partition()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) url() string { return "nats://" + p.addr }

func (p *proxy) accept(ln net.Listener) {
	defer p.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		if p.ln != ln {
			p.mu.Unlock()
			c.Close()
			s.Close()
			continue
		}
		p.conns = append(p.conns, c, s)
		p.wg.Add(2)
		p.mu.Unlock()
		go p.pipe(c, s)
		go p.pipe(s, c)
	}
}

// pipe copies src to dst until either closes, then closes both. Plain
// reads and writes: io.Copy between two TCP connections would splice(2)
// through pipes that the runtime keeps in a pool, which the leak check
// would count.
func (p *proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	io.Copy(struct{ io.Writer }{dst}, struct{ io.Reader }{src})
	dst.Close()
	src.Close()
}

// partition cuts every connection and closes the port until heal.
func (p *proxy) partition() {
	p.mu.Lock()
	ln, conns := p.ln, p.conns
	p.ln, p.conns = nil, nil
	p.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
	for _, c := range conns {
		c.Close()
	}
}

// heal opens the port again.
func (p *proxy) heal() error {
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.ln = ln
	p.wg.Add(1)
	p.mu.Unlock()
	go p.accept(ln)
	return nil
}

// TestPartitionedClientLetsGo: a client that found a node lost (a
// partition), and so holds its objects there disconnected for good,
// answers the node's probes "gone" once the partition heals; the node
// ends that session at once and releases the objects, where it used to
// keep them until the client exited. An object the client made on the
// node after it came back is another session's, and lives on.
func TestPartitionedClientLetsGo(t *testing.T) {
	testutil.CheckLeaks(t)
	natsURL := startNATS(t)
	px := startProxy(t, natsURL)
	srv, node, nc, err := newNode(context.Background(), px.url(), "hl", 1,
		nats.ReconnectWait(10*time.Millisecond), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	n := &testNode{name: "hl", srv: srv, node: node, nc: nc}
	t.Cleanup(func() { n.stop(t) })
	c := dial(t, natsURL, cluster.Options{}, 1)
	ctx := ctxT(t, 30*time.Second)
	old := objectsOn(t, c, "hl")["hl"]
	sub, err := old.Subscribe(ctx, 4)
	if err != nil {
		t.Fatal(err)
	}
	act := srv.Activator()
	if st := act.Stats(); st.Objects != 1 {
		t.Fatalf("objects before the partition: %+v", st)
	}

	px.partition()
	// The subscription ends once the client's probe finds the node gone:
	// the client has found it lost by then.
	for range sub.Events() {
	}
	if err := sub.Err(); !errors.Is(err, activation.ErrObjectDisconnected) || !errors.Is(err, cluster.ErrNodeLost) {
		t.Fatalf("the subscription across the partition: %v", err)
	}
	if err := px.heal(); err != nil {
		t.Fatal(err)
	}

	// Made after the node came back (an activation goes to the queue
	// group, which has it again once it has reconnected).
	kept, err := c.CreateInstance(ctx, "Counter")
	if err != nil {
		t.Fatal(err)
	}
	defer kept.Release()
	for act.Stats().Objects != 1 {
		if err := waitBeat(ctx, natsURL); err != nil {
			t.Fatalf("the node kept the partitioned session: %+v", act.Stats())
		}
	}
	if _, err := old.Call(ctx, "add", 1); !errors.Is(err, activation.ErrObjectDisconnected) {
		t.Fatalf("the object from before the partition: %v", err)
	}
	if _, err := kept.Call(ctx, "add", 1); err != nil {
		t.Fatalf("the object made after the partition: %v", err)
	}
	if st := act.Stats(); st.Objects != 1 {
		t.Fatalf("objects at the end: %+v", st)
	}
}
