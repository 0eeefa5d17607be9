package cluster_test

import (
	"context"
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/cluster"
	"github.com/bulkhead-go/bulkhead/daemon"
	"github.com/bulkhead-go/bulkhead/internal/testutil"
	"github.com/nats-io/nats.go"
)

// TestReloadReachesNATS: a reload that changes pool p, adds q, then
// removes q again reaches NATS by Sync, without a restart, while four
// callers keep calling p: no call fails.
func TestReloadReachesNATS(t *testing.T) {
	testutil.CheckLeaks(t)
	url := startNATS(t)
	n := startNode(t, url, "r", 1)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, url, cluster.Options{}, 1)
	stop := make(chan struct{})
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		failures []error
		calls    int
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
				_, err := c.Call(ctxT(t, 30*time.Second), "null")
				mu.Lock()
				calls++
				if err != nil {
					failures = append(failures, err)
				}
				mu.Unlock()
			}
		}()
	}
	reload := func(pools ...daemon.Pool) {
		t.Helper()
		if err := n.srv.Reload(context.Background(), &daemon.Config{Pools: pools}); err != nil {
			t.Fatal(err)
		}
		if err := n.node.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	reload(testPool(exe, "p", "r", 2), testPool(exe, "q", "r", 1))
	cq, err := cluster.Dial(ctxT(t, 30*time.Second), url, "q", cluster.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cq.Close()
	if who, err := bulkhead.CallAs[string](ctxT(t, 30*time.Second), cq, "who"); err != nil || who != "r" {
		t.Fatalf("the added pool q: %q, %v", who, err)
	}
	reload(testPool(exe, "p", "r", 1))
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := nc.Request("bulkhead.q.call", nil, 5*time.Second); !errors.Is(err, nats.ErrNoResponders) {
		t.Fatalf("the removed pool q still answers: %v", err)
	}
	close(stop)
	wg.Wait()
	if calls == 0 || len(failures) > 0 {
		t.Fatalf("%d calls, %d failed during the reloads: %v", calls, len(failures), errors.Join(failures...))
	}
}

// gateBackend holds every call until its gate closes, and tells when a
// call has entered: the node's bound on calls at once, without workers.
type gateBackend struct {
	limit   int
	entered chan struct{}
	gate    chan struct{}
}

func (*gateBackend) PoolNames() []string     { return []string{"g"} }
func (*gateBackend) PoolCapacity(string) int { return 1 }
func (g *gateBackend) PoolLimit(string) int  { return g.limit }
func (g *gateBackend) CallPool(ctx context.Context, _, _ string, _ ...any) (bulkhead.Reply, error) {
	g.entered <- struct{}{}
	select {
	case <-g.gate:
		return bulkhead.NewReply([]byte{0xf6}), nil
	case <-ctx.Done():
		return bulkhead.Reply{}, ctx.Err()
	}
}

// TestNodeBoundsRequests: a node runs at most PoolLimit requests of a
// pool at once, and answers the next with *bulkhead.OverloadedError
// rather than a goroutine more.
func TestNodeBoundsRequests(t *testing.T) {
	testutil.CheckLeaks(t)
	url := startNATS(t)
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	g := &gateBackend{limit: 2, entered: make(chan struct{}), gate: make(chan struct{})}
	node, err := cluster.NewNode(nc, g, cluster.NodeConfig{ID: "bound"})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	c, err := cluster.Dial(ctxT(t, 30*time.Second), url, "g", cluster.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The first call takes the pool's one worker; the second waits for it
	// on the node, which says so: both count against the limit.
	queued := sniff(t, url, "queued")
	c2, err := cluster.Dial(ctxT(t, 30*time.Second), url, "g", cluster.Options{}) // a client keeps its own calls beyond the workers
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	errc := make(chan error, g.limit)
	for i, cl := range []*cluster.Client{c, c2}[:g.limit] {
		go func() {
			_, err := cl.Call(ctxT(t, 30*time.Second), "m")
			errc <- err
		}()
		if i == 0 {
			<-g.entered
		} else {
			<-queued
		}
	}
	c3, err := cluster.Dial(ctxT(t, 30*time.Second), url, "g", cluster.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	_, err = c3.Call(ctxT(t, 30*time.Second), "over")
	var oe *bulkhead.OverloadedError
	if !errors.As(err, &oe) || oe.Method != "over" || oe.Queued != g.limit {
		t.Fatalf("a call beyond the limit: %v", err)
	}
	close(g.gate)
	go func() { <-g.entered }() // the queued call's
	for range g.limit {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	go func() { <-g.entered }()
	if _, err := c.Call(ctxT(t, 30*time.Second), "m"); err != nil {
		t.Fatalf("a call once the others ended: %v", err)
	}
}
