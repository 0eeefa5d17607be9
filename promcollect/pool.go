// Package promcollect exports a bulkhead.Pool's figures to Prometheus. It is
// a package of its own so that the core library does not import
// client_golang: only a program that imports promcollect pulls it in.
//
// The collector reads the pool's counters when it is scraped (Pool.Stats,
// Pool.Metrics): nothing is added to the call path by registering it. The
// method label takes only the methods that the workers named in their HELLO
// (and "(other)"), never a caller's string, so its cardinality is bounded
// by the worker program, not by the traffic.
//
//	reg := prometheus.NewRegistry()
//	reg.MustRegister(promcollect.NewPool(pool, prometheus.Labels{"pool": "render"}))
//	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
package promcollect

import (
	"time"

	"github.com/bulkhead-go/bulkhead"
	"github.com/prometheus/client_golang/prometheus"
)

// Pool is a prometheus.Collector of one pool.
type Pool struct {
	p *bulkhead.Pool
	d poolDescs
}

// poolDescs are the descriptions of the pool's metrics.
type poolDescs struct {
	calls, duration, queueWait, inFlight, waiting, workers            *prometheus.Desc
	starts, startFailures, crashes, recycles, memoryKills, promotions *prometheus.Desc
	redispatched, replayed, abandoned, hung, slow                     *prometheus.Desc
	quarantined, quarantines, unhealthy, streak, respawn              *prometheus.Desc
}

// NewPool returns a collector of p's figures. constLabels are put on every
// metric: give each pool a "pool" label when one registry collects several.
func NewPool(p *bulkhead.Pool, constLabels prometheus.Labels) *Pool {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("bulkhead_"+name, help, labels, constLabels)
	}
	return &Pool{p: p, d: poolDescs{
		calls:         d("calls_total", "Calls by method and outcome (ok, remote_error, crash_call, crash_idle, canceled, overloaded, unhealthy, quarantined, start_failed, closed, other).", "method", "outcome"),
		duration:      d("call_duration_seconds", "Time Pool.Call took, waiting for a worker included, by method.", "method"),
		queueWait:     d("queue_wait_seconds", "How long calls that found no free worker waited for one."),
		inFlight:      d("calls_in_flight", "Calls holding a worker."),
		waiting:       d("calls_waiting", "Calls waiting for a worker."),
		workers:       d("workers", "Workers by state: starting, spare, idle, busy, stopping.", "state"),
		starts:        d("worker_starts_total", "Workers that said HELLO, spares included."),
		startFailures: d("worker_start_failures_total", "Workers that did not get as far as HELLO."),
		crashes:       d("worker_crashes_total", "Workers that died on their own, by phase (startup, call, idle) and signal (SIGSEGV..., or exit for an exit status).", "phase", "signal"),
		recycles:      d("worker_recycles_total", "Workers drained and replaced on purpose, by reason (calls, lifetime, memory, idle).", "reason"),
		memoryKills:   d("worker_memory_kills_total", "Workers killed mid-call for exceeding MaxMemory."),
		promotions:    d("spare_promotions_total", "Warm spares put into service in place of a lost or recycled worker."),
		redispatched:  d("calls_redispatched_total", "Calls sent to another worker because theirs died before starting them."),
		replayed:      d("calls_replayed_total", "Idempotent calls run again after a crash."),
		abandoned:     d("calls_abandoned_total", "Calls whose ctx ended after a worker had them."),
		hung:          d("calls_hung_total", "Started calls abandoned at their deadline, whose worker was stopped."),
		slow:          d("calls_slow_total", "Calls that ran longer than Config.SlowCall (logged with their worker's stack)."),
		quarantined:   d("quarantined_fingerprints", "Call fingerprints in quarantine now."),
		quarantines:   d("quarantines_total", "Fingerprints put in quarantine."),
		unhealthy:     d("unhealthy", "1 while calls fail fast because workers keep failing (the crash-loop breaker is open)."),
		streak:        d("failure_streak", "Start-up failures and idle crashes since the last completed call."),
		respawn:       d("respawn_p50_seconds", "Median time from losing a worker to its replacement's HELLO, over recent replacements."),
	}}
}

// Describe sends the descriptions of every metric the collector makes.
func (c *Pool) Describe(ch chan<- *prometheus.Desc) {
	d := &c.d
	for _, x := range []*prometheus.Desc{d.calls, d.duration, d.queueWait, d.inFlight, d.waiting, d.workers,
		d.starts, d.startFailures, d.crashes, d.recycles, d.memoryKills, d.promotions, d.redispatched,
		d.replayed, d.abandoned, d.hung, d.slow, d.quarantined, d.quarantines, d.unhealthy, d.streak, d.respawn} {
		ch <- x
	}
}

// Collect reads the pool's figures.
func (c *Pool) Collect(ch chan<- prometheus.Metric) {
	c.collectStats(ch, c.p.Stats())
	c.collectMetrics(ch, c.p.Metrics())
}

func (c *Pool) collectStats(ch chan<- prometheus.Metric, s bulkhead.Stats) {
	d := &c.d
	gauge := func(desc *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, v, labels...)
	}
	counter := func(desc *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(d.inFlight, float64(s.InFlight))
	gauge(d.waiting, float64(s.Waiting))
	gauge(d.workers, float64(s.Starting), "starting")
	gauge(d.workers, float64(s.Spares), "spare")
	gauge(d.workers, float64(s.Workers-s.Busy), "idle")
	gauge(d.workers, float64(s.Busy), "busy")
	gauge(d.workers, float64(s.Stopping), "stopping")
	counter(d.starts, s.Started)
	counter(d.startFailures, s.StartFailures)
	for reason, n := range s.RecycledByReason {
		counter(d.recycles, n, reason)
	}
	counter(d.memoryKills, s.MemoryKills)
	counter(d.promotions, s.Promoted)
	counter(d.redispatched, s.Redispatched)
	counter(d.replayed, s.Replayed)
	counter(d.abandoned, s.Abandoned)
	counter(d.hung, s.Hung)
	counter(d.slow, s.SlowCalls)
	gauge(d.quarantined, float64(s.Quarantined))
	counter(d.quarantines, s.Quarantines)
	gauge(d.unhealthy, b2f(s.Unhealthy))
	gauge(d.streak, float64(s.FailureStreak))
	gauge(d.respawn, s.RespawnP50.Seconds())
}

func (c *Pool) collectMetrics(ch chan<- prometheus.Metric, m bulkhead.Metrics) {
	d := &c.d
	bounds := bulkhead.DurationBuckets()
	for _, mm := range m.Methods {
		for o, n := range mm.Outcomes {
			ch <- prometheus.MustNewConstMetric(d.calls, prometheus.CounterValue, float64(n),
				mm.Method, bulkhead.Outcome(o).String())
		}
		ch <- histogram(d.duration, bounds, mm.Duration, mm.Method)
	}
	ch <- histogram(d.queueWait, bounds, m.QueueWait)
	for _, cr := range m.Crashes {
		sig := bulkhead.SignalName(cr.Signal)
		if sig == "" {
			sig = "exit"
		}
		ch <- prometheus.MustNewConstMetric(d.crashes, prometheus.CounterValue, float64(cr.Count), cr.Phase.String(), sig)
	}
}

// histogram is h as a Prometheus histogram: cumulative buckets, in seconds.
func histogram(desc *prometheus.Desc, bounds []time.Duration, h bulkhead.Histogram, labels ...string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(bounds))
	var cum uint64
	for i, b := range bounds {
		cum += h.Counts[i]
		buckets[b.Seconds()] = cum
	}
	return prometheus.MustNewConstHistogram(desc, h.Count, h.Sum.Seconds(), buckets, labels...)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
