package main

import (
	"net/http"
	"sort"

	"github.com/bulkhead-go/bulkhead/daemon"
	"github.com/bulkhead-go/bulkhead/promcollect"
	"github.com/bulkhead-go/bulkhead/status"
	"github.com/prometheus/client_golang/prometheus"
)

// The daemon's metrics and status page (serve --listen): the same handlers
// as the demo's, over the daemon's pools as they are at each request, so
// that a reload's new pools show at once.

// daemonCollector collects the daemon's current pools and its activator.
// It is unchecked (Describe sends nothing): the set of pools changes with
// a reload.
type daemonCollector struct{ s *daemon.Server }

func (daemonCollector) Describe(chan<- *prometheus.Desc) {}

func (d daemonCollector) Collect(ch chan<- prometheus.Metric) {
	pools, act := d.s.Sources()
	for name, p := range pools {
		promcollect.NewPool(p, prometheus.Labels{"pool": name}).Collect(ch)
	}
	if act != nil {
		promcollect.NewActivator(act, nil).Collect(ch)
	}
}

// daemonStatus serves status's page and report over the daemon's current
// pools and activator.
type daemonStatus struct{ s *daemon.Server }

func (d daemonStatus) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	pools, act := d.s.Sources()
	names := make([]string, 0, len(pools))
	for name := range pools {
		names = append(names, name)
	}
	sort.Strings(names)
	var src []status.Source
	for _, name := range names {
		src = append(src, status.Pool(name, pools[name]))
	}
	if act != nil {
		src = append(src, status.Activator("objects", act))
	}
	status.New(src...).ServeHTTP(w, r)
}
