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
func daemonReport(ctx context.Context, socket string, timeout time.Duration) (topView, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := client.Dial(ctx, socket, client.Options{})
	if err != nil {
		return topView{}, err
	}
	defer c.Close()
	st, err := c.Status(ctx)
	if err != nil {
		return topView{}, err
	}
	stats, err := c.Stats(ctx)
	if err != nil {
		return topView{}, err
	}
	return reportOf(st, stats, time.Now()), nil
}

// reportOf converts the daemon's status and stats maps. Whatever a field's
// type, a value that is not what the protocol says reads as zero: the
// daemon is trusted no further than that. Figures the daemon does not send
// (per-worker CPU and memory, the crash log; calls from a daemon that
// predates them) are marked unknown, shown as n/a.
func reportOf(st, stats map[string]any, now time.Time) topView {
	rep := status.Report{Time: now}
	na := unknown{usage: true, crashes: true}
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
			RespawnP50: num(s["RespawnP50"]) / 1e9, Calls: uint64(num(s["Calls"])), CallsByOutcome: map[string]uint64{}}
		if by, ok := s["CallsByOutcome"].(map[any]any); ok {
			for k, v := range by {
				pr.Stats.CallsByOutcome[str(k)] += uint64(num(v))
			}
		} else {
			na.calls = true
		}
		ws, _ := p["workers"].([]any)
		for _, y := range ws {
			w, _ := y.(map[any]any)
			wr := status.WorkerReport{PID: int(num(w["pid"])), Name: str(w["name"]), State: str(w["state"]),
				InFlight: int(num(w["in_flight"])), Capacity: int(num(w["capacity"])), Calls: uint64(num(w["calls"]))}
			if _, ok := w["calls"]; !ok {
				na.workerCalls = true
			}
			if since := num(w["since"]); since > 0 {
				wr.AgeSeconds = now.Sub(time.Unix(0, int64(since))).Seconds()
			}
			pr.Workers = append(pr.Workers, wr)
		}
		rep.Pools = append(rep.Pools, pr)
	}
	if servers, ok := st["servers"]; ok {
		ar, known := activatorOf(servers, stats["activator"])
		rep.Activators = append(rep.Activators, ar)
		na.activatorStats = !known
	}
	return topView{rep, na}
}

// activatorOf converts the daemon's class servers and activator stats (absent
// unless the peer may use every class) into the activator "daemon"; known
// says whether the stats came.
func activatorOf(servers, stats any) (ar status.ActivatorReport, known bool) {
	ar = status.ActivatorReport{Name: "daemon", Servers: []status.ServerReport{}}
	list, _ := servers.([]any)
	for _, x := range list {
		s, _ := x.(map[any]any)
		sr := status.ServerReport{PID: int(num(s["pid"])), Name: str(s["name"]), State: str(s["state"]),
			Locks: int(num(s["locks"])), Objects: int(num(s["objects"]))}
		classes, _ := s["classes"].([]any)
		for _, c := range classes {
			sr.Classes = append(sr.Classes, str(c))
		}
		ar.Servers = append(ar.Servers, sr)
	}
	a, known := stats.(map[any]any)
	n := func(k string) uint64 { return uint64(num(a[k])) }
	ar.Stats = status.ActivatorStatsReport{Servers: int(n("Servers")), Starting: int(n("Starting")), Objects: int(n("Objects")),
		Sessions: int(n("Sessions")), ROTEntries: int(n("ROTEntries")), Launches: n("Launches"), LaunchFailures: n("LaunchFailures"),
		Activations: n("Activations"), StoppingRetries: n("StoppingRetries"), Redispatched: n("Redispatched"),
		Disconnected: n("Disconnected"), ServerCrashes: n("ServerCrashes"), ServerStops: n("ServerStops")}
	return ar, known
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
func topSource(cfg topConfig) func(context.Context, time.Duration) (topView, error) {
	if cfg.socket != "" {
		return func(ctx context.Context, d time.Duration) (topView, error) {
			return daemonReport(ctx, cfg.socket, d)
		}
	}
	return func(ctx context.Context, d time.Duration) (topView, error) {
		rep, err := fetchReport(ctx, cfg.report, d)
		return topView{rep: rep}, err
	}
}

// where names the source in the header.
func (c topConfig) where() string {
	if c.socket != "" {
		return fmt.Sprintf("daemon %s", c.socket)
	}
	return c.url
}
