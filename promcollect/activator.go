package promcollect

import (
	"github.com/bulkhead-go/bulkhead/activation"
	"github.com/prometheus/client_golang/prometheus"
)

// Activator is a prometheus.Collector of an activation.Activator: its
// object servers, objects, locks and sessions, read at scrape time
// (Activator.Stats and Activator.Servers).
type Activator struct {
	a *activation.Activator
	d activatorDescs
}

type activatorDescs struct {
	servers, objects, locks, sessions, rot                               *prometheus.Desc
	launches, launchFailures, activations, stoppingRetries, redispatched *prometheus.Desc
	disconnected, crashes, stops                                         *prometheus.Desc
}

// NewActivator returns a collector of a's figures, with constLabels on
// every metric.
func NewActivator(a *activation.Activator, constLabels prometheus.Labels) *Activator {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("bulkhead_"+name, help, labels, constLabels)
	}
	return &Activator{a: a, d: activatorDescs{
		servers:         d("object_servers", "Class server processes by state: starting, registered, running, stopping.", "state"),
		objects:         d("objects", "Objects alive or being activated."),
		locks:           d("object_server_locks", "Lock counts of the running servers added up: objects, LockServer locks and class handles."),
		sessions:        d("object_sessions", "Open sessions, the activator's own included."),
		rot:             d("rot_entries", "Names in the running object table."),
		launches:        d("object_server_launches_total", "Class servers that said HELLO."),
		launchFailures:  d("object_server_launch_failures_total", "Class servers that failed to start."),
		activations:     d("activations_total", "Objects created."),
		stoppingRetries: d("activation_stopping_retries_total", "Activations a stopping server refused, retried on another."),
		redispatched:    d("activations_redispatched_total", "Activations retried because their server died before starting them."),
		disconnected:    d("object_calls_disconnected_total", "Calls that failed because their server was gone."),
		crashes:         d("object_server_crashes_total", "Class servers that exited without being asked."),
		stops:           d("object_server_stops_total", "Class servers stopped because their lock count reached zero."),
	}}
}

// Describe sends the descriptions of every metric the collector makes.
func (c *Activator) Describe(ch chan<- *prometheus.Desc) {
	d := &c.d
	for _, x := range []*prometheus.Desc{d.servers, d.objects, d.locks, d.sessions, d.rot, d.launches,
		d.launchFailures, d.activations, d.stoppingRetries, d.redispatched, d.disconnected, d.crashes, d.stops} {
		ch <- x
	}
}

// Collect reads the activator's figures.
func (c *Activator) Collect(ch chan<- prometheus.Metric) {
	d := &c.d
	s := c.a.Stats()
	byState := map[string]int{"starting": s.Starting, "registered": 0, "running": 0, "stopping": 0}
	locks := 0
	for _, srv := range c.a.Servers() {
		if _, ok := byState[srv.State]; ok {
			byState[srv.State]++
		}
		locks += srv.Locks
	}
	for state, n := range byState {
		ch <- prometheus.MustNewConstMetric(d.servers, prometheus.GaugeValue, float64(n), state)
	}
	gauge := func(desc *prometheus.Desc, v int) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, float64(v))
	}
	counter := func(desc *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(v))
	}
	gauge(d.objects, s.Objects)
	gauge(d.locks, locks)
	gauge(d.sessions, s.Sessions)
	gauge(d.rot, s.ROTEntries)
	counter(d.launches, s.Launches)
	counter(d.launchFailures, s.LaunchFailures)
	counter(d.activations, s.Activations)
	counter(d.stoppingRetries, s.StoppingRetries)
	counter(d.redispatched, s.Redispatched)
	counter(d.disconnected, s.Disconnected)
	counter(d.crashes, s.ServerCrashes)
	counter(d.stops, s.ServerStops)
}
