package daemon

import (
	"context"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/activation"
	"github.com/bulkhead-go/bulkhead/client"
)

// The daemon's cost, each figure against its in-process counterpart in the
// same run, in alternating blocks so that both see the same machine:
//
//	go test -run '^$' -bench BenchmarkDaemon -benchtime 20000x ./daemon
//
// Pin it (taskset -c 0) for the latency ratios: an idle vCPU that halts
// between ping-pongs distorts them.

const block = 32

// interleave times block runs of base and of daemon, alternately, for b.N
// runs each, and reports both means and their ratio.
func interleave(b *testing.B, baseName, daemonName string, base, daemon func()) {
	var tBase, tDaemon time.Duration
	n := 0
	for b.Loop() {
		t0 := time.Now()
		for range block {
			base()
		}
		t1 := time.Now()
		for range block {
			daemon()
		}
		tBase += t1.Sub(t0)
		tDaemon += time.Since(t1)
		n += block
	}
	b.ReportMetric(float64(tBase.Nanoseconds())/float64(n), "ns/"+baseName)
	b.ReportMetric(float64(tDaemon.Nanoseconds())/float64(n), "ns/"+daemonName)
	b.ReportMetric(float64(tDaemon)/float64(tBase), "ratio")
	b.ReportMetric(0, "ns/op")
}

// benchDaemon is a daemon for a benchmark, and a pool and an activator of
// the same configuration in-process.
func benchDaemon(b *testing.B) (*testDaemon, *client.Client, *bulkhead.Pool, *activation.Activator) {
	exe, _ := os.Executable()
	dir := b.TempDir()
	sock := dir + "/d.sock"
	cfg, err := Parse("bench.toml", []byte(configText(exe, sock, "")))
	if err != nil {
		b.Fatal(err)
	}
	s, err := New(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	ln, err := Listen(cfg, "")
	if err != nil {
		b.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	c, err := client.Dial(context.Background(), sock, client.Options{})
	if err != nil {
		b.Fatal(err)
	}
	pc := cfg.Pools[0].Config
	pc.Logger = slog.New(slog.DiscardHandler)
	pool, err := bulkhead.New(context.Background(), pc)
	if err != nil {
		b.Fatal(err)
	}
	ac := cfg.Activator
	ac.Logger = slog.New(slog.DiscardHandler)
	act, err := activation.NewActivator(ac)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		c.Close()
		pool.Close(context.Background())
		act.Close(context.Background())
		s.Shutdown(context.Background())
		<-served
	})
	return &testDaemon{s: s, sock: sock, cfg: cfg}, c, pool, act
}

func BenchmarkDaemon(b *testing.B) {
	ctx := context.Background()
	call := func(c bulkhead.Caller, method string, args ...any) func() {
		return func() {
			if _, err := c.Call(ctx, method, args...); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("null-call", func(b *testing.B) {
		_, c, pool, _ := benchDaemon(b)
		interleave(b, "in-process", "daemon", call(pool, "null"), call(c.Pool("p"), "null"))
	})
	b.Run("object-call", func(b *testing.B) {
		_, c, _, act := benchDaemon(b)
		local, err := act.CreateInstance(ctx, "Counter")
		if err != nil {
			b.Fatal(err)
		}
		remote, err := c.CreateInstance(ctx, "Counter")
		if err != nil {
			b.Fatal(err)
		}
		interleave(b, "in-process", "daemon", call(local, "null"), call(remote, "null"))
	})
	b.Run("warm-activation", func(b *testing.B) {
		_, c, pool, _ := benchDaemon(b)
		keep, err := c.CreateInstance(ctx, "Counter") // keeps the server running
		if err != nil {
			b.Fatal(err)
		}
		defer keep.Release()
		interleave(b, "in-process-null-call", "daemon-activation", call(pool, "null"), func() {
			o, err := c.CreateInstance(ctx, "Counter")
			if err != nil {
				b.Fatal(err)
			}
			o.Release()
		})
	})
	b.Run("1000-idle-connections", func(b *testing.B) {
		d, c, _, _ := benchDaemon(b)
		one := percentile50(b, c.Pool("p"))
		var idle []*client.Client
		for range 1000 {
			ic, err := client.Dial(ctx, d.sock, client.Options{})
			if err != nil {
				b.Fatal(err)
			}
			idle = append(idle, ic)
		}
		defer func() {
			for _, ic := range idle {
				ic.Close()
			}
		}()
		many := percentile50(b, c.Pool("p"))
		b.ReportMetric(float64(one.Nanoseconds()), "ns/p50-1-conn")
		b.ReportMetric(float64(many.Nanoseconds()), "ns/p50-1000-conns")
		b.ReportMetric(float64(many)/float64(one), "ratio")
		b.ReportMetric(0, "ns/op")
	})
}

// percentile50 is the median latency of b.N null calls through c.
func percentile50(b *testing.B, c bulkhead.Caller) time.Duration {
	lat := make([]time.Duration, 0, b.N)
	for range max(b.N, 1000) {
		t0 := time.Now()
		if _, err := c.Call(context.Background(), "null"); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	slices.Sort(lat)
	return lat[len(lat)/2]
}

// BenchmarkDaemonMemory reports what the daemon holds per idle connection
// and per reference (heap in use, both sides in this process: the client's
// share is counted too, so the figures are an upper bound).
func BenchmarkDaemonMemory(b *testing.B) {
	ctx := context.Background()
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse
	}
	d, c, _, _ := benchDaemon(b)
	const conns, refs = 1000, 10000
	var perConn, perRef float64
	measured := false
	for b.Loop() {
		if measured { // once, whatever b.N: a measurement of size, not of time
			continue
		}
		measured = true
		h0 := heap()
		var cs []*client.Client
		for range conns {
			ic, err := client.Dial(ctx, d.sock, client.Options{})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := ic.Status(ctx); err != nil { // the daemon has set the connection up
				b.Fatal(err)
			}
			cs = append(cs, ic)
		}
		h1 := heap()
		var objs []*client.Object
		for range refs {
			o, err := c.CreateInstance(ctx, "Counter")
			if err != nil {
				b.Fatal(err)
			}
			objs = append(objs, o)
		}
		h2 := heap()
		perConn, perRef = float64(h1-h0)/conns, float64(h2-h1)/refs
		for _, o := range objs {
			o.Release()
		}
		for _, ic := range cs {
			ic.Close()
		}
	}
	b.ReportMetric(perConn, "B/connection")
	b.ReportMetric(perRef, "B/reference")
	b.ReportMetric(0, "ns/op")
}
