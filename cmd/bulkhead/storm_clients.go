package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/bulkhead-go/bulkhead/client"
	"github.com/bulkhead-go/bulkhead/daemon"
)

// The storm across client processes: COM's lifetime races through the
// daemon, with each client a process of its own.

// stormClientEnv names the daemon's socket to a storm client process.
const stormClientEnv = "BULKHEAD_STORM_CLIENT"

// runStorm runs the storm in this process, or from o.Clients processes.
func runStorm(ctx context.Context, o stormOptions) (*stormResult, error) {
	switch {
	case o.Nodes > 0:
		return runStormNodes(ctx, o)
	case o.Clients == 0:
		return runStormInProcess(ctx, o)
	}
	return runStormDaemon(ctx, o)
}

// runStormDaemon serves the storm's classes from a daemon in this process
// and runs o.Clients client processes against it.
func runStormDaemon(ctx context.Context, o stormOptions) (*stormResult, error) {
	dir, err := os.MkdirTemp("", "bulkhead-storm")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	cfg := &daemon.Config{Socket: filepath.Join(dir, "storm.sock"), Activator: stormConfig(o),
		ClassAllow: map[string]daemon.Access{}}
	for _, c := range append(stormClasses, "Iso") {
		cfg.ClassAllow[c] = daemon.Access{}
	}
	s, err := daemon.New(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	ln, err := daemon.Listen(cfg, "")
	if err != nil {
		s.Shutdown(context.Background())
		return nil, err
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	start := time.Now()
	res, err := stormChildren(ctx, o, cfg.Socket)
	elapsed := time.Since(start)
	if err == nil {
		err = stormServerStats(ctx, cfg.Socket, res)
	}
	s.Shutdown(context.Background())
	if serr := <-served; err == nil {
		err = serr
	}
	if err != nil {
		return nil, err
	}
	res.Goroutines, res.Seconds = o.Goroutines, elapsed.Seconds()
	res.PerSecond = float64(res.Activations) / elapsed.Seconds()
	if res.ServerCrashes > 0 && res.Failures == 0 {
		res.Failures, res.FirstFailure = res.ServerCrashes, "a class server crashed"
	}
	return res, nil
}

// stormChildren runs the client processes, each with its share of the
// activations and goroutines, and sums what they report.
func stormChildren(ctx context.Context, o stormOptions, socket string) (*stormResult, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	var (
		mu    sync.Mutex
		total stormResult
		errs  []error
		wg    sync.WaitGroup
	)
	per, g := o.Activations/o.Clients, o.Goroutines/o.Clients
	for k := range o.Clients {
		n := per
		if k == o.Clients-1 {
			n = o.Activations - per*(o.Clients-1)
		}
		args := []string{"storm", "--json", "--activations", strconv.Itoa(n), "--goroutines", strconv.Itoa(g),
			"--calls", strconv.Itoa(o.Calls), "--single-every", strconv.Itoa(o.SingleEvery),
			"--timeout", o.Timeout.String()}
		cmd := exec.CommandContext(ctx, exe, args...)
		cmd.Env = append(os.Environ(), stormClientEnv+"="+socket, "STORM_OFFSET="+strconv.Itoa(k*per))
		cmd.Stderr = os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // none outlives the storm
		wg.Go(func() {
			out, err := cmd.Output()
			var r stormResult
			if err == nil {
				err = json.Unmarshal(out, &r)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("storm client %d: %w (%s)", k, err, out))
				return
			}
			total.Activations += r.Activations
			total.Calls += r.Calls
			total.Failures += r.Failures
			total.Disconnected += r.Disconnected
			if total.FirstFailure == "" {
				total.FirstFailure = r.FirstFailure
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		return nil, errs[0]
	}
	return &total, nil
}

// stormServerStats adds the daemon's activator counters to res.
func stormServerStats(ctx context.Context, socket string, res *stormResult) error {
	c, err := client.Dial(ctx, socket, client.Options{Name: "storm"})
	if err != nil {
		return err
	}
	defer c.Close()
	st, err := c.Stats(ctx)
	if err != nil {
		return err
	}
	a, _ := st["activator"].(map[any]any)
	n := func(k string) uint64 { v, _ := a[k].(uint64); return v }
	res.Launches, res.StoppingRetries, res.Redispatched = n("Launches"), n("StoppingRetries"), n("Redispatched")
	res.ServerStops, res.ServerCrashes = n("ServerStops"), n("ServerCrashes")
	return nil
}

// runStormChild is one client process: its share of the storm through the
// daemon at socket, reported as JSON.
func runStormChild(ctx context.Context, w io.Writer, o stormOptions, socket string) error {
	o.offset, _ = strconv.Atoi(os.Getenv("STORM_OFFSET"))
	if o.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Timeout)
		defer cancel()
	}
	var (
		next atomic.Int64
		t    stormTally
		wg   sync.WaitGroup
	)
	for g := range o.Goroutines {
		wg.Go(func() { stormClient(ctx, throughDaemon(ctx, socket), o, g, &next, &t) })
	}
	wg.Wait()
	return json.NewEncoder(w).Encode(stormResult{Activations: t.activations.Load(), Calls: t.calls.Load(),
		Failures: t.failures.Load(), Disconnected: t.disconnected.Load(), FirstFailure: t.first})
}
