package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/promcollect"
	"github.com/bulkhead-go/bulkhead/status"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// checkListen validates --listen: a host and a port, the port a number
// (0 picks a free one).
func checkListen(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--listen %q: want host:port, such as 127.0.0.1:9090 (%v)", addr, err)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("--listen %q: port %q is not a number from 0 to 65535", addr, port)
	} else if host == "" && n != 0 {
		return fmt.Errorf("--listen %q: give the host too (127.0.0.1 to serve this machine only)", addr)
	}
	return nil
}

// obsServer serves the demo pool's metrics and status while the demo runs.
type obsServer struct {
	srv  *http.Server
	ln   net.Listener
	done chan struct{} // closed when Serve has returned
}

// listenObs listens on addr and serves, for pool: /metrics (Prometheus
// text, with the Go runtime's and the process's own collectors), /status
// (the live page) and /status.json (its report); / redirects to /status.
func listenObs(addr string, pool *bulkhead.Pool, stderr io.Writer) (*obsServer, error) {
	return serveObs(addr, promcollect.NewPool(pool, prometheus.Labels{"pool": "demo"}),
		status.New(status.Pool("demo", pool)), stderr)
}

// serveObs listens on addr and serves the Prometheus collector c, with the
// Go runtime's and the process's own, at /metrics, and st at /status and
// /status.json; / redirects to /status.
func serveObs(addr string, c prometheus.Collector, st http.Handler, stderr io.Writer) (*obsServer, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(c, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.Handle("/status", st)
	mux.Handle("/status.json", st)
	mux.Handle("GET /{$}", http.RedirectHandler("/status", http.StatusFound))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--listen: %w", err)
	}
	o := &obsServer{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}, ln: ln, done: make(chan struct{})}
	go func() {
		defer close(o.done)
		if err := o.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintln(stderr, "bulkhead demo: serving --listen:", errorText(err))
		}
	}()
	return o, nil
}

// Addr is the address it listens on, its port chosen if --listen gave 0.
func (o *obsServer) Addr() string { return o.ln.Addr().String() }

// Close stops serving: requests under way get a second to finish.
func (o *obsServer) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if o.srv.Shutdown(ctx) != nil {
		o.srv.Close()
	}
	<-o.done
}
