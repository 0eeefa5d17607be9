package cluster_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/client"
	"github.com/bulkhead-go/bulkhead/cluster"
	"github.com/bulkhead-go/bulkhead/daemon"
	"github.com/bulkhead-go/bulkhead/internal/testutil"
	"github.com/nats-io/nats.go"
)

// nullBackend answers every call at once, in-process: the cluster's own
// cost over NATS, without a worker.
type nullBackend struct{}

func (nullBackend) PoolNames() []string     { return []string{"p"} }
func (nullBackend) PoolCapacity(string) int { return 1 }
func (nullBackend) PoolLimit(string) int    { return 1 << 20 }
func (nullBackend) CallPool(context.Context, string, string, ...any) (bulkhead.Reply, error) {
	return bulkhead.NewReply([]byte{0xf6}), nil
}

// BenchmarkNullCall: one caller's round trip, on loopback, through an
// embedded NATS server:
//   - bare: nats.go request/reply of the same payload to a responder that
//     answers at once (the engine alone);
//   - bare-acked: the same, the responder first publishing a "started"
//     and flushing it (the floor of at-most-once across nodes, with
//     nats.go alone);
//   - cluster: a cluster call to a node whose backend answers at once
//     (ours over the engine: the start marker, flushed, then the answer);
//   - pool: a cluster call to a node with a real pool of one worker.
//
// go test -run '^$' -bench NullCall -count 1 ./cluster
func BenchmarkNullCall(b *testing.B) {
	url := startNATS(b)
	ctx := context.Background()
	payload := []byte("\xa3bopdcalldpoolapfmethoddnull")

	b.Run("bare", func(b *testing.B) {
		srv, _ := nats.Connect(url)
		defer srv.Close()
		srv.QueueSubscribe("bare.null", "q", func(m *nats.Msg) { m.Respond([]byte{0xf6}) })
		srv.Flush()
		nc, _ := nats.Connect(url)
		defer nc.Close()
		b.ResetTimer()
		for range b.N {
			if _, err := nc.Request("bare.null", payload, 5*time.Second); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("bare-acked", func(b *testing.B) {
		// The protocol's floor with nats.go alone: the responder says
		// "started" and flushes it (a PING/PONG with the NATS server)
		// before it answers, as at-most-once across nodes needs.
		srv, _ := nats.Connect(url)
		defer srv.Close()
		srv.QueueSubscribe("acked.null", "q", func(m *nats.Msg) {
			srv.Publish(m.Reply, nil)
			srv.Flush()
			m.Respond([]byte{0xf6})
		})
		srv.Flush()
		nc, _ := nats.Connect(url)
		defer nc.Close()
		sub, _ := nc.SubscribeSync(nats.NewInbox())
		b.ResetTimer()
		for range b.N {
			nc.PublishRequest("acked.null", sub.Subject, payload)
			for range 2 {
				if _, err := sub.NextMsg(5 * time.Second); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("cluster", func(b *testing.B) {
		nc, _ := nats.Connect(url)
		defer nc.Close()
		node, err := cluster.NewNode(nc, nullBackend{}, cluster.NodeConfig{ID: "nullnode", Prefix: "nullbench"})
		if err != nil {
			b.Fatal(err)
		}
		defer node.Close()
		c := dialPrefix(b, url, "nullbench", 1)
		benchCalls(b, ctx, c, "null")
	})
	b.Run("pool", func(b *testing.B) {
		n := startNode(b, url, "poolnode", 1)
		_ = n
		c := dial(b, url, cluster.Options{}, 1)
		benchCalls(b, ctx, c, "null")
	})
}

func dialPrefix(b *testing.B, url, prefix string, want int) *cluster.Client {
	return dial(b, url, cluster.Options{Prefix: prefix}, want)
}

func benchCalls(b *testing.B, ctx context.Context, c bulkhead.Caller, method string) {
	b.ResetTimer()
	for range b.N {
		r, err := c.Call(ctx, method)
		if err != nil {
			b.Fatal(err)
		}
		r.Release()
	}
}

// BenchmarkSlowNodeP99: three nodes of two workers, one of them slow (its
// calls take 20 ms, the others' 1 ms), six callers: the p99 latency with
// a random node per call (NATS's queue group's choice) and with the
// load-aware choice (a node with a free worker).
//
// go test -run '^$' -bench SlowNodeP99 -count 1 ./cluster
func BenchmarkSlowNodeP99(b *testing.B) {
	url := startNATS(b)
	for _, n := range []string{"slow", "fast1", "fast2"} {
		startNode(b, url, n, 2)
	}
	for _, random := range []bool{true, false} {
		name := "loadaware"
		if random {
			name = "random"
		}
		b.Run(name, func(b *testing.B) {
			c := dial(b, url, cluster.Options{Random: random}, 3)
			lat := parallelCalls(b, []bulkhead.Caller{c}, 6, "work")
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		})
	}
}

// parallelCalls makes b.N calls of method from callers goroutines, spread
// over cs, and returns their latencies.
func parallelCalls(b *testing.B, cs []bulkhead.Caller, callers int, method string) []time.Duration {
	ctx := context.Background()
	var (
		next atomic.Int64
		mu   sync.Mutex
		all  []time.Duration
		wg   sync.WaitGroup
	)
	b.ResetTimer()
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := cs[i%len(cs)]
			var lat []time.Duration
			for next.Add(1) <= int64(b.N) {
				t0 := time.Now()
				r, err := c.Call(ctx, method)
				if err != nil {
					b.Error(err)
					return
				}
				r.Release()
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	b.StopTimer()
	if len(all) == 0 {
		b.Fatal("no call")
	}
	return all
}

// BenchmarkAggregate: null calls from 12 callers, through 3 cluster nodes
// of one worker each; through the same pools behind bare nats.go
// responders (the engine without our protocol); and through 3
// independent daemons (Unix sockets), 4 callers each: calls/s of each,
// from the same run.
//
// go test -run '^$' -bench Aggregate -count 1 ./cluster
func BenchmarkAggregate(b *testing.B) {
	// "null" shows the transports' cost alone; "work" is a call that
	// takes 1 ms in its worker (it sleeps), as native work does.
	for _, method := range []string{"null", "work"} {
		b.Run("cluster/"+method, func(b *testing.B) {
			url := startNATS(b)
			for i := range 3 {
				startNode(b, url, fmt.Sprintf("agg%d", i), 1)
			}
			c := dial(b, url, cluster.Options{}, 3)
			t0 := time.Now()
			parallelCalls(b, []bulkhead.Caller{c}, 12, method)
			b.ReportMetric(float64(b.N)/time.Since(t0).Seconds(), "calls/s")
		})
		b.Run("nats/"+method, func(b *testing.B) {
			// The engine's floor: the same pools, each behind a bare
			// nats.go responder in a queue group (a goroutine per request,
			// no start marker), and nats.go's Request from the callers.
			url := startNATS(b)
			for i := range 3 {
				startBareResponder(b, url, fmt.Sprintf("bare%d", i))
			}
			nc, err := nats.Connect(url)
			if err != nil {
				b.Fatal(err)
			}
			defer nc.Close()
			t0 := time.Now()
			parallelCalls(b, []bulkhead.Caller{natsCaller{nc}}, 12, method)
			b.ReportMetric(float64(b.N)/time.Since(t0).Seconds(), "calls/s")
		})
		b.Run("daemons/"+method, func(b *testing.B) {
			var cs []bulkhead.Caller
			for i := range 3 {
				cs = append(cs, startDaemon(b, fmt.Sprintf("d%d", i)))
			}
			t0 := time.Now()
			parallelCalls(b, cs, 12, method)
			b.ReportMetric(float64(b.N)/time.Since(t0).Seconds(), "calls/s")
		})
	}
}

// startDaemon serves pool "p" of one worker on a socket of its own and
// returns a client's Caller of it; both end with the benchmark.
func startDaemon(b *testing.B, name string) bulkhead.Caller {
	exe, _ := os.Executable()
	sock := filepath.Join(b.TempDir(), "d.sock")
	cfg := &daemon.Config{Socket: sock, SocketMode: 0o600, Pools: []daemon.Pool{{Name: "p", Config: bulkhead.Config{Command: exe, Workers: 1,
		Env: []string{testutil.HelperEnv + "=worker", "NODE=" + name}}}}}
	ln, err := daemon.Listen(cfg, "")
	if err != nil {
		b.Fatal(err)
	}
	s, err := daemon.New(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() { s.Serve(ln); close(done) }()
	c, err := client.Dial(context.Background(), sock, client.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		c.Close()
		s.Shutdown(context.Background())
		<-done
	})
	return c.Pool("p")
}

// natsCaller calls pool "p" behind bare responders: nats.go's Request.
type natsCaller struct{ nc *nats.Conn }

func (c natsCaller) Call(ctx context.Context, method string, _ ...any) (bulkhead.Reply, error) {
	m, err := c.nc.RequestWithContext(ctx, "barebench.p", []byte(method))
	if err != nil {
		return bulkhead.Reply{}, err
	}
	return bulkhead.NewReply(m.Data), nil
}

// startBareResponder serves pool "p" of one worker behind a bare nats.go
// responder on subject barebench.p, until the benchmark ends.
func startBareResponder(b *testing.B, url, name string) {
	exe, _ := os.Executable()
	s, err := daemon.New(context.Background(), &daemon.Config{Pools: []daemon.Pool{testPool(exe, "p", name, 1)}}, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	closed := make(chan struct{})
	nc, err := nats.Connect(url, nats.ClosedHandler(func(*nats.Conn) { close(closed) }))
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	_, err = nc.QueueSubscribe("barebench.p", "q", func(m *nats.Msg) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := s.CallPool(context.Background(), "p", string(m.Data))
			if err != nil {
				m.Respond(nil)
				return
			}
			m.Respond(r.Raw())
			r.Release()
		}()
	})
	if err != nil {
		b.Fatal(err)
	}
	nc.Flush()
	b.Cleanup(func() {
		nc.Drain() // its callbacks have returned once it is closed
		<-closed
		wg.Wait()
		s.Shutdown(context.Background())
	})
}
