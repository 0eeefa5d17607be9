package cluster_test

// The start marker, node ids and the client's own bounds: what a lost,
// cut-off or reconnected node does to calls (docs/DESIGN.md, "Cluster").

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/client"
	"github.com/bulkhead-go/bulkhead/cluster"
	"github.com/bulkhead-go/bulkhead/internal/natsembed"
	"github.com/bulkhead-go/bulkhead/internal/testutil"
	"github.com/nats-io/nats.go"
)

// TestCutOffFakeNode: a fake node takes a call, says what the case says
// about it, and is cut off. A call it said it queued and had not started
// must go to another node; one it said nothing of, or said started, may
// have run there: *NodeLostError, never sent again.
func TestCutOffFakeNode(t *testing.T) {
	for _, tc := range []struct {
		name  string
		says  []string // the statuses the fake answers, in order
		retry bool
	}{
		{"queued", []string{"queued"}, true},
		{"nothing", nil, false},
		{"queued-then-started", []string{"queued", "started"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testutil.CheckLeaks(t)
			url := startNATS(t)
			startNode(t, url, "real", 1)
			who, err := callCutOffFake(t, url, tc.says)
			switch {
			case tc.retry && (err != nil || who != "real"):
				t.Fatalf("call: %q, %v; want it sent again, to the real node", who, err)
			case !tc.retry && !errors.Is(err, cluster.ErrNodeLost):
				t.Fatalf("call: %q, %v; want *NodeLostError", who, err)
			}
		})
	}
}

// callCutOffFake makes a client call "who" on a fake node that has many
// free workers by its heartbeats, answers the call with says, and is then
// cut off (its connection closed): what the call returns.
func callCutOffFake(t *testing.T, url string, says []string) (string, error) {
	fake, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer fake.Close()
	got := make(chan struct{})
	var once sync.Once
	fake.Subscribe("bulkhead.p.node.fake", func(m *nats.Msg) {
		for _, st := range says {
			fake.PublishMsg(&nats.Msg{Subject: m.Reply, Header: nats.Header{cluster.HeaderStatus: {st}, cluster.HeaderNode: {"fake"}}})
		}
		fake.Flush()
		once.Do(func() { close(got) })
	})
	fake.Subscribe("bulkhead.alive.fake", func(m *nats.Msg) { m.Respond(nil) })
	c := dial(t, url, cluster.Options{}, 1)
	stop, beating := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(beating)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			fake.Publish("bulkhead.p.load", []byte("\xa4dnodedfakedfree\x19\x03\xe8gworkers\x19\x03\xe8hdraining\xf4"))
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	if err := c.WaitNodes(ctxT(t, 10*time.Second), 2); err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, 20*time.Second)
	res := make(chan error, 1)
	var who string
	go func() {
		var err error
		who, err = bulkhead.CallAs[string](ctx, c, "who")
		res <- err
	}()
	<-got
	close(stop)
	<-beating
	fake.Close() // a partition, after what it said reached the NATS server
	err = <-res
	return who, err
}

// TestQueuedCallIsRetried: a node process holds its only worker with one
// client's call and queues another client's; SIGKILLed, it costs the first call a
// *NodeLostError, and the second, which it had said it queued and never
// started, runs on the live node.
func TestQueuedCallIsRetried(t *testing.T) {
	testutil.CheckLeaks(t)
	url := startNATS(t)
	proc := startNodeProcess(t, url, "doomed")
	c := dial(t, url, cluster.Options{}, 1)
	c2 := dial(t, url, cluster.Options{}, 1) // a client of its own: a client keeps its own calls beyond the workers
	ctx := ctxT(t, 20*time.Second)
	queued := sniff(t, url, "queued")
	first, second := holdCall(t, ctx, c), make(chan error, 1)
	var who string
	go func() {
		var err error
		who, err = bulkhead.CallAs[string](ctx, c2, "who")
		second <- err
	}()
	<-queued
	startNode(t, url, "live", 1)
	proc.Process.Kill()
	if err := <-first; !errors.Is(err, cluster.ErrNodeLost) {
		t.Fatalf("the running call: %T %v, want *NodeLostError", err, err)
	}
	if err := <-second; err != nil || who != "live" {
		t.Fatalf("the queued call: %q, %v; want it run on the live node", who, err)
	}
	if st, st2 := c.Stats(), c2.Stats(); st.NodeLost != 1 || st2.Retried != 1 {
		t.Errorf("stats: %+v and %+v, want 1 lost and 1 retried", st, st2)
	}
}

// sniff returns a channel closed once some node has sent a message of
// status to some client's inbox.
func sniff(t *testing.T, url, status string) <-chan struct{} {
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	seen := make(chan struct{})
	var once sync.Once
	if _, err := nc.Subscribe("_INBOX.>", func(m *nats.Msg) {
		if m.Header.Get(cluster.HeaderStatus) == status {
			once.Do(func() { close(seen) })
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return seen
}

// TestNoStartAcrossReconnect: a call a node queued before its connection
// to NATS was remade is refused, not run, once a worker frees: its client
// may have found the node lost meanwhile and sent it elsewhere.
func TestNoStartAcrossReconnect(t *testing.T) {
	testutil.CheckLeaks(t)
	url := startNATS(t)
	a := startNode(t, url, "a", 1)
	reconnected := make(chan struct{}, 1)
	a.nc.SetReconnectHandler(func(*nats.Conn) { reconnected <- struct{}{} })
	c := dial(t, url, cluster.Options{}, 1)
	c2 := dial(t, url, cluster.Options{}, 1) // the queued call's: a client keeps its own calls beyond the workers
	ctx := ctxT(t, 20*time.Second)
	queued := sniff(t, url, "queued")
	hctx, release := context.WithCancel(ctx)
	first := holdCall(t, hctx, c)
	var who string
	second := make(chan error, 1)
	go func() {
		var err error
		who, err = bulkhead.CallAs[string](ctx, c2, "who")
		second <- err
	}()
	<-queued
	if err := a.nc.ForceReconnect(); err != nil {
		t.Fatal(err)
	}
	<-reconnected
	if err := a.nc.Flush(); err != nil { // the server has its subscriptions again
		t.Fatal(err)
	}
	release() // the worker frees; the queued call must not start
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Fatalf("held call: %v", err)
	}
	if err := <-second; err != nil || who != "a" {
		t.Fatalf("queued call: %q, %v", who, err)
	}
	if st := c2.Stats(); st.Retried != 1 {
		t.Errorf("stats: %+v; want the queued call refused and sent again", st)
	}
}

// TestOverNATSPayload: arguments over the NATS server's max_payload fail
// that call at once with bulkhead.ErrEncoding (nothing sent); a result
// over it with a *RemoteError (the call ran); the client and the node go
// on.
func TestOverNATSPayload(t *testing.T) {
	testutil.CheckLeaks(t)
	url := startNATS(t)
	startNode(t, url, "a", 1)
	c := dial(t, url, cluster.Options{}, 1)
	ctx := ctxT(t, 20*time.Second)
	for _, tc := range []struct {
		name   string
		method string
		arg    any
	}{
		{"arguments", "echo", make([]byte, 2<<20)},
		{"result", "big", 2 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Call(ctx, tc.method, tc.arg)
			var remote *bulkhead.RemoteError
			switch {
			case tc.name == "arguments" && (!errors.Is(err, bulkhead.ErrEncoding) || errors.Is(err, bulkhead.ErrClosed)):
				t.Fatalf("arguments over max_payload: %v, want ErrEncoding (nothing sent)", err)
			case tc.name == "result" && (!errors.As(err, &remote) || remote.Code != bulkhead.CodeApplication || errors.Is(err, bulkhead.ErrEncoding)):
				t.Fatalf("a result over max_payload: %v, want a *RemoteError (the call ran)", err)
			}
			if _, err := c.Call(ctx, "big", 1<<10); err != nil {
				t.Fatalf("the next call: %v", err)
			}
		})
	}
}

// TestNoNodeServesThePool: a call of a pool no node serves fails within
// NoNodeWait, matching ErrNotFound, though its ctx has no deadline.
func TestNoNodeServesThePool(t *testing.T) {
	testutil.CheckLeaks(t)
	url := startNATS(t)
	startNode(t, url, "a", 1)
	c, err := cluster.Dial(ctxT(t, 10*time.Second), url, "nosuch", cluster.Options{NoNodeWait: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Call(context.Background(), "null"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("call: %v, want ErrNotFound", err)
	}
	// With a deadline sooner than NoNodeWait: both what ended it and why.
	dctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	var ce *bulkhead.CanceledError
	if _, err := c.Call(dctx, "null"); !errors.Is(err, client.ErrNotFound) || !errors.As(err, &ce) {
		t.Fatalf("call with a deadline: %v, want ErrNotFound and a *CanceledError", err)
	}
	if st := c.Stats(); st.Retried != 0 {
		t.Errorf("stats: %+v, want no retry counted", st)
	}
}

// TestNodeIDInUse: a node refuses to start with the id of a live node,
// and starts with it once that node is gone.
func TestNodeIDInUse(t *testing.T) {
	testutil.CheckLeaks(t)
	url := startNATS(t)
	first := startNode(t, url, "dup", 1)
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	g := &gateBackend{limit: 1}
	if _, err := cluster.NewNode(nc, g, cluster.NodeConfig{ID: "dup"}); !errors.Is(err, cluster.ErrNodeIDInUse) {
		t.Fatalf("a second node with id dup: %v, want ErrNodeIDInUse", err)
	}
	first.node.Close()
	node, err := cluster.NewNode(nc, g, cluster.NodeConfig{ID: "dup"})
	if err != nil {
		t.Fatalf("once the first is closed: %v", err)
	}
	node.Close()
}

// TestNodeIDComesBack: a node started with the id of one found lost is
// used at once (a restart with a fixed node_id, or after a partition).
func TestNodeIDComesBack(t *testing.T) {
	testutil.CheckLeaks(t)
	url := startNATS(t)
	proc := startNodeProcess(t, url, "again")
	c := dial(t, url, cluster.Options{}, 1)
	ctx := ctxT(t, 20*time.Second)
	errc := holdCall(t, ctx, c)
	proc.Process.Kill()
	if err := <-errc; !errors.Is(err, cluster.ErrNodeLost) {
		t.Fatalf("call on the killed node: %v", err)
	}
	startNode(t, url, "again", 1)
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second) // it was a minute
	defer cancel()
	if err := c.WaitNodes(wctx, 1); err != nil {
		t.Fatalf("the node back with its id: %v", err)
	}
	if who, err := bulkhead.CallAs[string](ctx, c, "who"); err != nil || who != "again" {
		t.Fatalf("call: %q, %v", who, err)
	}
}

// TestClientHoldsCalls: a client with a call on every worker of every
// node keeps its next call until one ends, rather than queue it on a node.
func TestClientHoldsCalls(t *testing.T) {
	testutil.CheckLeaks(t)
	url := startNATS(t)
	startNode(t, url, "a", 1)
	c := dial(t, url, cluster.Options{}, 1)
	holding := make(chan struct{}, 1)
	cluster.SetOnHold(c, func() { holding <- struct{}{} })
	ctx := ctxT(t, 20*time.Second)
	hctx, release := context.WithCancel(ctx)
	first := holdCall(t, hctx, c)
	second := make(chan error, 1)
	go func() {
		_, err := c.Call(ctx, "null")
		second <- err
	}()
	<-holding
	release()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Fatalf("held call: %v", err)
	}
	if err := <-second; err != nil {
		t.Fatalf("the call kept in the client: %v", err)
	}
	// A call held at Close ends with ErrClosed.
	first = holdCall(t, ctx, c)
	go func() {
		_, err := c.Call(ctx, "null")
		second <- err
	}()
	<-holding
	c.Close()
	if err := <-second; !errors.Is(err, bulkhead.ErrClosed) {
		t.Fatalf("a call held at Close: %v", err)
	}
	if err := <-first; !errors.Is(err, bulkhead.ErrClosed) {
		t.Fatalf("a call in flight at Close: %v", err)
	}
	if st := c.Stats(); st.Held == 0 {
		t.Errorf("stats: %+v, want a call held", st)
	}
}

// TestCallWhileNATSDown: a call that ends by its deadline while the
// client's connection to NATS is down says so.
func TestCallWhileNATSDown(t *testing.T) {
	testutil.CheckLeaks(t)
	s, err := natsembed.Start()
	if err != nil {
		t.Fatal(err)
	}
	n := startNode(t, s.URL(), "a", 1)
	down := make(chan struct{})
	nc, err := nats.Connect(s.URL(), nats.DisconnectErrHandler(func(*nats.Conn, error) { close(down) }))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	c, err := cluster.New(nc, "p", cluster.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.WaitNodes(ctxT(t, 10*time.Second), 1); err != nil {
		t.Fatal(err)
	}
	n.node.Close() // while NATS is up: its cleanup must not wait on it
	s.Close()
	<-down
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	var ce *bulkhead.CanceledError
	if _, err := c.Call(ctx, "null"); !errors.As(err, &ce) || !strings.Contains(ce.Reason, "connection to NATS was") {
		t.Fatalf("call while NATS is down: %v", err)
	}
}

// TestDialReconnectsForever: a client's connection, like a node's, never
// stops trying to reach its NATS server (nats.go's default gives up after
// two minutes, and the client would be closed for good); options given to
// Dial still override it.
func TestDialReconnectsForever(t *testing.T) {
	url := startNATS(t)
	for _, tc := range []struct {
		opts []nats.Option
		want int
	}{{nil, -1}, {[]nats.Option{nats.MaxReconnects(5)}, 5}} {
		c, err := cluster.Dial(ctxT(t, 10*time.Second), url, "p", cluster.Options{}, tc.opts...)
		if err != nil {
			t.Fatal(err)
		}
		o := cluster.ConnOf(c).Opts
		c.Close()
		if o.MaxReconnect != tc.want || o.ReconnectWait != cluster.ReconnectInterval {
			t.Errorf("Dial(%d options): MaxReconnect %d, ReconnectWait %v; want %d, %v", len(tc.opts), o.MaxReconnect, o.ReconnectWait, tc.want, cluster.ReconnectInterval)
		}
	}
}

// TestNATSRestartIsNotNodeLoss: a NATS server that restarts while a call
// runs does not make its client find the node lost (the probes it sent
// while cut off, answered by the new server before the node is back,
// would say "no responders"): the call goes on, and so does the node.
func TestNATSRestartIsNotNodeLoss(t *testing.T) {
	testutil.CheckLeaks(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s, err := natsembed.StartAt(port)
	if err != nil {
		t.Fatal(err)
	}
	n := startNode(t, s.URL(), "a", 1) // nats.go's default: back 2 s after a loss
	nodeUp := make(chan struct{}, 1)
	n.nc.SetReconnectHandler(func(*nats.Conn) { nodeUp <- struct{}{} })
	clientUp := make(chan struct{}, 1)
	nc, err := nats.Connect(s.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond),
		nats.ReconnectHandler(func(*nats.Conn) { clientUp <- struct{}{} }))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	c, err := cluster.New(nc, "p", cluster.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	probedWhileDown := make(chan struct{}, 1)
	cluster.SetOnProbe(c, func(st nats.Status) {
		if st != nats.CONNECTED {
			select {
			case probedWhileDown <- struct{}{}:
			default:
			}
		}
	})
	ctx := ctxT(t, 20*time.Second)
	if err := c.WaitNodes(ctx, 1); err != nil {
		t.Fatal(err)
	}
	hctx, release := context.WithCancel(ctx)
	first := holdCall(t, hctx, c)
	s.Close()
	<-probedWhileDown // a probe the restarted server would answer "no responders" before the node is back
	s2, err := natsembed.StartAt(port)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	<-clientUp
	<-nodeUp
	if err := n.nc.Flush(); err != nil { // the new server has the node's subscriptions
		t.Fatal(err)
	}
	release()
	if err := <-first; errors.Is(err, cluster.ErrNodeLost) {
		t.Fatalf("the call across the restart: %v; its node was not lost", err)
	}
	if who, err := bulkhead.CallAs[string](ctx, c, "who"); err != nil || who != "a" {
		t.Fatalf("after the restart: %q, %v", who, err)
	}
	if st := c.Stats(); st.NodeLost != 0 {
		t.Errorf("stats: %+v", st)
	}
}
