package main

import (
	"context"
	"fmt"
	"time"

	"github.com/bulkhead-go/bulkhead/client"
	"github.com/bulkhead-go/bulkhead/status"
)

// daemonReport reads a bulkhead serve daemon's status and stats over its
// socket (docs/CLIENT-PROTOCOL.md) into a status.Report: pools with their
// counters and workers, and the class servers as an activator "daemon".
// The daemon's status has no CPU, memory or crash log per worker; those
// columns stay empty.
func daemonReport(ctx context.Context, socket string, timeout time.Duration) (status.Report, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := client.Dial(ctx, socket, client.Options{})
	if err != nil {
		return status.Report{}, err
	}
	defer c.Close()
	st, err := c.Status(ctx)
	if err != nil {
		return status.Report{}, err
	}
	stats, err := c.Stats(ctx)
	if err != nil {
		return status.Report{}, err
	}
	return reportOf(st, stats, time.Now()), nil
}

// reportOf converts the daemon's status and stats maps. Whatever a field's
// type, a value that is not what the protocol says reads as zero: the
// daemon is trusted no further than that.
func reportOf(st, stats map[string]any, now time.Time) status.Report {
	rep := status.Report{Time: now}
	counters, _ := stats["pools"].(map[any]any)
	pools, _ := st["pools"].([]any)
	for _, x := range pools {
		p, _ := x.(map[any]any)
		name := str(p["name"])
		pr := status.PoolReport{Name: name, Workers: []status.WorkerReport{}, Crashes: []status.CrashReport{}}
		s, _ := counters[name].(map[any]any)
		pr.Stats = status.StatsReport{Workers: int(num(s["Workers"])), Busy: int(num(s["Busy"])),
			Spares: int(num(s["Spares"])), Starting: int(num(s["Starting"])), Stopping: int(num(s["Stopping"])),
			InFlight: int(num(p["in_flight"])), Waiting: int(num(p["waiting"])), Started: uint64(num(s["Started"])),
			StartFailures: uint64(num(s["StartFailures"])), CallCrashes: uint64(num(s["CallCrashes"])),
			IdleCrashes: uint64(num(s["IdleCrashes"])), Hung: uint64(num(s["Hung"])), SlowCalls: uint64(num(s["SlowCalls"])),
			Recycled: uint64(num(s["Recycled"])), Unhealthy: s["Unhealthy"] == true,
			RespawnP50: num(s["RespawnP50"]) / 1e9, CallsByOutcome: map[string]uint64{}}
		ws, _ := p["workers"].([]any)
		for _, y := range ws {
			w, _ := y.(map[any]any)
			wr := status.WorkerReport{PID: int(num(w["pid"])), Name: str(w["name"]), State: str(w["state"]),
				InFlight: int(num(w["in_flight"])), Capacity: int(num(w["capacity"]))}
			if since := num(w["since"]); since > 0 {
				wr.AgeSeconds = now.Sub(time.Unix(0, int64(since))).Seconds()
			}
			pr.Workers = append(pr.Workers, wr)
		}
		rep.Pools = append(rep.Pools, pr)
	}
	return rep
}

// num reads a CBOR number as a float64, or 0.
func num(v any) float64 {
	switch n := v.(type) {
	case uint64:
		return float64(n)
	case int64:
		return float64(n)
	case float64:
		return n
	}
	return 0
}

// str reads a CBOR text string, or "".
func str(v any) string {
	s, _ := v.(string)
	return s
}

// topSource says where top reads: a URL's report, or a daemon's socket.
func topSource(cfg topConfig) func(context.Context, time.Duration) (status.Report, error) {
	if cfg.socket != "" {
		return func(ctx context.Context, d time.Duration) (status.Report, error) {
			return daemonReport(ctx, cfg.socket, d)
		}
	}
	return func(ctx context.Context, d time.Duration) (status.Report, error) {
		return fetchReport(ctx, cfg.report, d)
	}
}

// where names the source in the header.
func (c topConfig) where() string {
	if c.socket != "" {
		return fmt.Sprintf("daemon %s", c.socket)
	}
	return c.url
}
