package cluster_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/client"
	"github.com/bulkhead-go/bulkhead/cluster"
	"github.com/bulkhead-go/bulkhead/internal/testutil"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestCallsAcrossNodes: results and typed errors cross, the deadline
// travels, and calls reach every node.
func TestCallsAcrossNodes(t *testing.T) {
	testutil.CheckLeaks(t)
	url := startNATS(t)
	for _, n := range []string{"a", "b", "c"} {
		startNode(t, url, n, 1)
	}
	c := dial(t, url, cluster.Options{}, 3)
	ctx := ctxT(t, 20*time.Second)

	got, err := bulkhead.CallAs[map[string]any](ctx, c, "echo", map[string]any{"x": "y"})
	if err != nil || got["x"] != "y" {
		t.Fatalf("echo: %v, %v", got, err)
	}
	var remote *bulkhead.RemoteError
	if _, err := c.Call(ctx, "fail"); !errors.As(err, &remote) {
		t.Errorf("fail: %T %v, want *RemoteError", err, err)
	}
	var crash *bulkhead.CrashError
	if _, err := c.Call(ctx, "crash"); !errors.As(err, &crash) || crash.Signal.String() != "segmentation fault" {
		t.Errorf("crash: %T %v, want *CrashError with SIGSEGV", err, err)
	}
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	left, err := bulkhead.CallAs[int64](dctx, c, "left")
	cancel()
	if err != nil || left <= 0 || left > 2000 {
		t.Errorf("left: %d ms, %v; want the caller's deadline, under 2000 ms", left, err)
	}
	callsReach(t, ctx, c, "a", "b", "c")

	// The one-line change from the daemon's client.
	var caller bulkhead.Caller
	nc, err := client.DialNATS(ctx, url, "p")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	caller = nc
	if who, err := bulkhead.CallAs[string](ctx, caller, "who"); err != nil || who == "" {
		t.Errorf("DialNATS: %q, %v", who, err)
	}
}

// callsReach calls "who" until every node of want has answered one (a
// node reports no free worker until its pool's worker is up, so the
// first calls may avoid it), or ctx ends.
func callsReach(t *testing.T, ctx context.Context, c *cluster.Client, want ...string) {
	t.Helper()
	seen := map[string]int{}
	for ctx.Err() == nil {
		who, err := bulkhead.CallAs[string](ctx, c, "who")
		if err != nil {
			t.Fatal(err)
		}
		seen[who]++
		n := 0
		for _, w := range want {
			if seen[w] > 0 {
				n++
			}
		}
		if n == len(want) {
			return
		}
	}
	t.Errorf("calls by node: %v, want %v", seen, want)
}

// TestNodeKilledMidCall: a node process SIGKILLed with a call started
// gives that call a *NodeLostError; the next calls go to the live node.
func TestNodeKilledMidCall(t *testing.T) {
	testutil.CheckLeaks(t)
	url := startNATS(t)
	proc := startNodeProcess(t, url, "doomed")
	c := dial(t, url, cluster.Options{}, 1)
	ctx := ctxT(t, 20*time.Second)
	errc := holdCall(t, ctx, c)
	startNode(t, url, "live", 1)
	proc.Process.Kill()
	err := <-errc
	var lost *cluster.NodeLostError
	if !errors.As(err, &lost) || lost.Node != "doomed" || !errors.Is(err, cluster.ErrNodeLost) {
		t.Fatalf("call on the killed node: %T %v, want *NodeLostError", err, err)
	}
	for range 10 {
		who, err := bulkhead.CallAs[string](ctx, c, "who")
		if err != nil || who != "live" {
			t.Fatalf("after the loss: %q, %v", who, err)
		}
	}
}

// TestPartition: a node whose NATS connection closes with a call started
// fails that call with *NodeLostError; calls go on on the other node.
func TestPartition(t *testing.T) {
	testutil.CheckLeaks(t)
	url := startNATS(t)
	a := startNode(t, url, "a", 1)
	c := dial(t, url, cluster.Options{}, 1)
	ctx := ctxT(t, 20*time.Second)
	path, held := fifo(t)
	errc := make(chan error, 1)
	go func() {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_, err := c.Call(cctx, "hold", path)
		errc <- err
	}()
	<-held
	startNode(t, url, "b", 1)
	a.nc.Close()
	if err := <-errc; !errors.Is(err, cluster.ErrNodeLost) {
		t.Fatalf("call on the cut-off node: %T %v, want *NodeLostError", err, err)
	}
	for range 10 {
		if who, err := bulkhead.CallAs[string](ctx, c, "who"); err != nil || who != "b" {
			t.Fatalf("after the partition: %q, %v", who, err)
		}
	}
}

// TestSlowNode: a node whose only worker is held gets no new call while
// another has a free worker.
func TestSlowNode(t *testing.T) {
	testutil.CheckLeaks(t)
	url := startNATS(t)
	startNode(t, url, "slow", 1)
	c := dial(t, url, cluster.Options{}, 1)
	ctx := ctxT(t, 20*time.Second)
	hctx, cancel := context.WithCancel(ctx)
	errc := holdCall(t, hctx, c)
	startNode(t, url, "fast", 1)
	if err := c.WaitNodes(ctx, 2); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		who, err := bulkhead.CallAs[string](ctx, c, "who")
		if err != nil || who != "fast" {
			t.Fatalf("call %d: %q, %v; want the node with a free worker", i, who, err)
		}
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("held call: %v", err)
	}
}

// TestRollingRestart drains and replaces every node in turn under load:
// no call fails.
func TestRollingRestart(t *testing.T) {
	testutil.CheckLeaks(t)
	url := startNATS(t)
	nodes := make([]*testNode, 3)
	for i := range nodes {
		nodes[i] = startNode(t, url, fmt.Sprintf("n%d", i), 1)
	}
	c := dial(t, url, cluster.Options{}, 3)
	ctx := ctxT(t, 30*time.Second)
	stop := make(chan struct{})
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		calls  int
		failed []error
		seen   = map[string]bool{}
	)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				who, err := bulkhead.CallAs[string](ctx, c, "who")
				mu.Lock()
				calls++
				seen[who] = true
				if err != nil {
					failed = append(failed, err)
				}
				mu.Unlock()
			}
		}()
	}
	for i, n := range nodes {
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if err := n.node.Drain(dctx); err != nil {
			t.Errorf("drain %s: %v", n.name, err)
		}
		cancel()
		nodes[i] = startNode(t, url, fmt.Sprintf("m%d", i), 1)
		if err := c.WaitNodes(ctx, 3); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if len(failed) > 0 {
		t.Fatalf("%d of %d calls failed in the rolling restart; first: %v", len(failed), calls, failed[0])
	}
	callsReach(t, ctx, c, "m0", "m1", "m2")
}

// TestMicroService: a node's pools are micro services that NATS's own
// discovery sees, with their endpoints; a hostile request gets an ERROR,
// not the node.
func TestMicroService(t *testing.T) {
	testutil.CheckLeaks(t)
	url := startNATS(t)
	startNode(t, url, "m", 1)
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	m, err := nc.Request("$SRV.INFO.p", nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var info micro.Info
	if err := json.Unmarshal(m.Data, &info); err != nil {
		t.Fatal(err)
	}
	subjects := map[string]string{}
	for _, e := range info.Endpoints {
		subjects[e.Subject] = e.QueueGroup
	}
	if info.Name != "p" || info.Version != "1.0.0" || info.Metadata["node"] != "m" ||
		subjects["bulkhead.p.call"] != "bulkhead" || len(subjects) != 2 {
		t.Errorf("info: %+v", info)
	}
	for _, bad := range [][]byte{nil, []byte("garbage"), []byte("\xa1bopdcall"), []byte("\xa3bopdcalldpoolaqfmethodanull")} {
		sub, _ := nc.SubscribeSync(nats.NewInbox())
		nc.PublishRequest("bulkhead.p.node.m", sub.Subject, bad)
		var last *nats.Msg
		for last == nil || last.Header.Get(cluster.HeaderStatus) == "started" {
			if last, err = sub.NextMsg(5 * time.Second); err != nil {
				t.Fatalf("%q: %v", bad, err)
			}
		}
		if last.Header.Get(cluster.HeaderStatus) != "error" || last.Header.Get(micro.ErrorCodeHeader) != "bad_request" {
			t.Errorf("%q: answered %v", bad, last.Header)
		}
		sub.Unsubscribe()
	}
	// The node still serves.
	c := dial(t, url, cluster.Options{}, 1)
	if _, err := c.Call(ctxT(t, 10*time.Second), "null"); err != nil {
		t.Fatal(err)
	}
}

// TestClientClose: Close ends the calls in flight with ErrClosed, and
// leaves nothing behind.
func TestClientClose(t *testing.T) {
	testutil.CheckLeaks(t)
	url := startNATS(t)
	startNode(t, url, "a", 1)
	c, err := cluster.Dial(ctxT(t, 10*time.Second), url, "p", cluster.Options{})
	if err != nil {
		t.Fatal(err)
	}
	path, held := fifo(t)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Call(ctxT(t, 10*time.Second), "hold", path)
		errc <- err
	}()
	<-held
	c.Close()
	if err := <-errc; !errors.Is(err, bulkhead.ErrClosed) {
		t.Fatalf("call in flight at Close: %v", err)
	}
	if _, err := c.Call(context.Background(), "null"); !errors.Is(err, bulkhead.ErrClosed) {
		t.Fatalf("call after Close: %v", err)
	}
}

// TestDiscover: a client lists the pools the nodes serve, and their
// nodes, from NATS micro's discovery; a stranger's answer is ignored.
func TestDiscover(t *testing.T) {
	testutil.CheckLeaks(t)
	url := startNATS(t)
	startNode(t, url, "a", 1)
	startNode(t, url, "b", 1)
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	stranger, err := micro.AddService(nc, micro.Config{Name: "other", Version: "1.0.0", Metadata: map[string]string{"node": "x"}})
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Stop()
	if err := stranger.AddEndpoint("e", micro.HandlerFunc(func(micro.Request) {}), micro.WithEndpointSubject("elsewhere.e")); err != nil {
		t.Fatal(err)
	}
	c := dial(t, url, cluster.Options{}, 2)
	svcs, err := c.Discover(ctxT(t, 10*time.Second), 500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]cluster.Service{}
	for _, s := range svcs {
		found[s.Name] = s
	}
	if p := found["p"]; fmt.Sprint(p.Nodes) != "[a b]" || fmt.Sprint(p.Versions) != "[1.0.0]" {
		t.Errorf("pool p: %+v", p)
	}
	if _, ok := found["other"]; ok {
		t.Errorf("a service of another prefix is listed: %+v", svcs)
	}
}

// TestDiscoverNothing: with no micro service on the NATS server at all,
// Discover finds nothing, and no error.
func TestDiscoverNothing(t *testing.T) {
	url := startNATS(t)
	c, err := cluster.Dial(ctxT(t, 10*time.Second), url, "p", cluster.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if svcs, err := c.Discover(ctxT(t, 10*time.Second), 300*time.Millisecond); err != nil || len(svcs) != 0 {
		t.Fatalf("Discover: %v, %v; want nothing, no error", svcs, err)
	}
}
