package cluster_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/bulkhead-go/bulkhead/cluster"
)

// BenchmarkEvents: one object's events delivered to 1 and to 8
// subscribers, each a client of its own (a host), all in this process
// with the embedded NATS server and one node. The object emits bursts of
// 256 events (its "burst" method); the next burst is asked for once every
// subscriber has read the last. events/s counts deliveries (events times
// subscribers); node-msgs/event is what the node's connection published
// per event emitted (heartbeats and the burst calls' answers included).
func BenchmarkEvents(b *testing.B) {
	for _, subs := range []int{1, 8} {
		b.Run(fmt.Sprintf("subs=%d", subs), func(b *testing.B) { benchEvents(b, subs) })
	}
}

func benchEvents(b *testing.B, subs int) {
	const burst = 256
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	url := startNATS(b)
	n := startNode(b, url, "ev", 1)
	owner := dial(b, url, cluster.Options{}, 1)
	o, err := owner.CreateInstance(ctx, "Counter")
	if err != nil {
		b.Fatal(err)
	}
	defer o.Release()
	if err := owner.Register(ctx, "bench-events", o, false); err != nil {
		b.Fatal(err)
	}
	var marks sync.WaitGroup // one Done per subscriber at the end of each burst
	readers := make(chan error, subs)
	failed := make(chan struct{}) // closed when a reader's subscription ends early
	var once sync.Once
	for range subs {
		c := dial(b, url, cluster.Options{}, 1)
		ref, err := c.Lookup(ctx, "bench-events")
		if err != nil {
			b.Fatal(err)
		}
		defer ref.Release()
		sub, err := ref.Subscribe(ctx, 4*burst)
		if err != nil {
			b.Fatal(err)
		}
		defer sub.Close()
		go func() {
			for got := 1; got <= b.N; got++ {
				if _, ok := <-sub.Events(); !ok {
					readers <- fmt.Errorf("after %d events: %v", got-1, sub.Err())
					once.Do(func() { close(failed) })
					return
				}
				if got%burst == 0 || got == b.N {
					marks.Done()
				}
			}
			readers <- nil
		}()
	}
	out := n.nc.Stats().OutMsgs
	start := time.Now()
	b.ResetTimer()
	for sent := 0; sent < b.N; {
		k := min(burst, b.N-sent)
		marks.Add(subs)
		if _, err := o.Call(ctx, "burst", k); err != nil {
			b.Fatal(err)
		}
		marked := make(chan struct{})
		go func() { marks.Wait(); close(marked) }()
		select {
		case <-marked:
		case <-failed:
			b.Fatal(<-readers)
		}
		sent += k
	}
	b.StopTimer()
	elapsed := time.Since(start)
	for range subs {
		if err := <-readers; err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*subs)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(n.nc.Stats().OutMsgs-out)/float64(b.N), "node-msgs/event")
}
