package bulkhead

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"
)

// BenchmarkCallMetrics is what counting costs one call (Pool.Call's two
// clock reads, the method's lookup, the histogram and outcome adds), apart
// from the round trip it is added to (BenchmarkNullCall).
func BenchmarkCallMetrics(b *testing.B) {
	m := callMetrics{epoch: time.Now()}
	methods := make([]string, 64)
	for i := range methods {
		methods[i] = fmt.Sprint("method", i)
	}
	m.learnLocked(methods)
	for b.Loop() {
		t0 := m.clock()
		mm := m.lookup("method7")
		mm.duration.observe(m.clock() - t0)
		mm.outcomes[OutcomeOf(nil)].Add(1)
	}
}

func TestHistogramBuckets(t *testing.T) {
	var h histogram
	for _, d := range []time.Duration{0, 10 * time.Microsecond, 11 * time.Microsecond, time.Second, time.Hour} {
		h.observe(d)
	}
	s := h.snapshot()
	want := map[int]uint64{0: 2, 1: 1, 15: 1, len(durationBounds): 1}
	for i, c := range s.Counts {
		if c != want[i] {
			t.Errorf("bucket %d (le %v) = %d, want %d", i, DurationBuckets()[min(i, len(durationBounds)-1)], c, want[i])
		}
	}
	if s.Count != 5 || s.Sum != time.Hour+time.Second+21*time.Microsecond {
		t.Errorf("count %d sum %v", s.Count, s.Sum)
	}
}

func TestMetricsMethodTableBounded(t *testing.T) {
	var m callMetrics
	for i := range 3 {
		names := make([]string, maxMetricMethods)
		for j := range names {
			names[j] = fmt.Sprint("hello", i, "-", j)
		}
		m.learnLocked(names)
	}
	if n := len(*m.table.Load()); n != maxMetricMethods {
		t.Fatalf("%d methods counted apart, want at most %d", n, maxMetricMethods)
	}
	if m.lookup("hello2-0") != &m.other {
		t.Error("a method past the bound has counters of its own")
	}
	m.learnLocked([]string{OtherMethod})
	if m.lookup(OtherMethod) != &m.other {
		t.Error("a worker named a method OtherMethod and got it apart")
	}
}

// BenchmarkNullCallMetrics alternates blocks of 1,000 null calls on two
// pools of one worker each, one that counts its calls (Metrics) and one
// that does not, so that both see the same load, and reports the ratio of
// their times per call (pin it: taskset -c 0).
func BenchmarkNullCallMetrics(b *testing.B) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"socket", Config{}},
		{"shm", Config{Transport: TransportShm}},
		{"shm/notimings", Config{Transport: TransportShm, NoCallTimings: true}},
	} {
		b.Run(tc.name, func(b *testing.B) { benchNullCallMetrics(b, tc.cfg) })
	}
}

func benchNullCallMetrics(b *testing.B, cfg Config) {
	benchNullCallAB(b, "counted", cfg, hooks{}, "bare", cfg, hooks{noMetrics: true})
}

// BenchmarkNullCallUsage is BenchmarkNullCallMetrics for Config.CallUsage:
// null calls on a pool that asks its worker for each call's usage and one
// that does not, alternated.
func BenchmarkNullCallUsage(b *testing.B) {
	benchNullCallAB(b, "usage", Config{CallUsage: true}, hooks{}, "plain", Config{}, hooks{})
}

// benchNullCallAB alternates blocks of 1,000 null calls on pool a and pool
// b, one worker each, and reports the ratio of their times per call.
func benchNullCallAB(b *testing.B, nameA string, cfgA Config, hA hooks, nameB string, cfgB Config, hB hooks) {
	pool := func(cfg Config, h hooks) *Pool {
		exe, err := os.Executable()
		if err != nil {
			b.Fatal(err)
		}
		cfg.Command, cfg.Workers, cfg.Env, cfg.Logger = exe, 1, HelperEnviron("policy"), slogDiscard()
		p, err := newPool(context.Background(), cfg, h)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { p.Close(context.Background()) })
		return p
	}
	pa, pb := pool(cfgA, hA), pool(cfgB, hB)
	ctx := context.Background()
	const block = 1000
	var ta, tb time.Duration
	run := func(p *Pool) time.Duration {
		t0 := time.Now()
		for range block {
			if _, err := p.Call(ctx, "null"); err != nil {
				b.Fatal(err)
			}
		}
		return time.Since(t0)
	}
	for b.Loop() {
		ta += run(pa)
		tb += run(pb)
	}
	b.ReportMetric(float64(ta)/float64(tb), nameA+"/"+nameB)
	b.ReportMetric(float64(ta.Nanoseconds())/float64(b.N*block), nameA+"-ns/call")
	b.ReportMetric(float64(tb.Nanoseconds())/float64(b.N*block), nameB+"-ns/call")
}
