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
	counted, bare := pool(cfg, hooks{}), pool(cfg, hooks{noMetrics: true})
	ctx := context.Background()
	const block = 1000
	var tc, tb time.Duration
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
		tc += run(counted)
		tb += run(bare)
	}
	b.ReportMetric(float64(tc)/float64(tb), "counted/bare")
	b.ReportMetric(float64(tc.Nanoseconds())/float64(b.N*block), "counted-ns/call")
	b.ReportMetric(float64(tb.Nanoseconds())/float64(b.N*block), "bare-ns/call")
}
