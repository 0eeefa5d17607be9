// Package status serves a live view of bulkhead pools over HTTP: a JSON
// report of every pool and worker (pid, state, calls served, the current
// call and for how long, CPU time, resident memory, age) with the latest
// crashes (signal, call, fingerprint, stderr head and tail), and an HTML page
// that shows the workers as a grid and refreshes itself, with no JavaScript
// framework: a few lines of script poll the JSON.
//
//	st := status.New(status.Pool("render", pool), status.Activator("objects", act))
//	mux.Handle("/status", st)      // the page
//	mux.Handle("/status.json", st) // the report
//
// A request whose path ends in ".json", or that has a "json" query
// parameter, gets the report; any other gets the page.
package status

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/activation"
)

// Source is one pool or activator the handler reports on, with the name it
// shows. One of Pool and Activator is set.
type Source struct {
	Name      string
	Pool      *bulkhead.Pool
	Activator *activation.Activator
}

// Pool names a pool for New.
func Pool(name string, p *bulkhead.Pool) Source { return Source{Name: name, Pool: p} }

// Activator names an activator for New: its class servers and objects.
func Activator(name string, a *activation.Activator) Source { return Source{Name: name, Activator: a} }

// Handler serves the page and the report. Its sources are fixed by New, so
// it holds no lock; each request reads the pools' snapshots.
type Handler struct {
	sources []Source
	now     func() time.Time
}

// New returns a handler of the pools in sources, shown in that order.
func New(sources ...Source) *Handler {
	return &Handler{sources: sources, now: time.Now}
}

// ServeHTTP serves the report (a path ending in ".json", or a "json" query
// parameter) or the page.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	if strings.HasSuffix(r.URL.Path, ".json") || r.URL.Query().Has("json") {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", " ")
		_ = enc.Encode(h.Report()) // a client that hung up is no error of ours
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'")
	_, _ = w.Write([]byte(page))
}

// Report is the JSON document: every pool and activator at one moment.
type Report struct {
	Time       time.Time         `json:"time"`
	Pools      []PoolReport      `json:"pools"`
	Activators []ActivatorReport `json:"activators,omitempty"`
}

// ActivatorReport is one activator: its counters and class servers.
type ActivatorReport struct {
	Name    string               `json:"name"`
	Stats   ActivatorStatsReport `json:"stats"`
	Servers []ServerReport       `json:"servers"`
}

// ActivatorStatsReport is activation.ActivatorStats with the report's
// snake_case keys, like StatsReport's.
type ActivatorStatsReport struct {
	Servers         int    `json:"servers"`
	Starting        int    `json:"starting"`
	Objects         int    `json:"objects"`
	Sessions        int    `json:"sessions"`
	ROTEntries      int    `json:"rot_entries"`
	Launches        uint64 `json:"launches"`
	LaunchFailures  uint64 `json:"launch_failures"`
	Activations     uint64 `json:"activations"`
	StoppingRetries uint64 `json:"stopping_retries"`
	Redispatched    uint64 `json:"redispatched"`
	Disconnected    uint64 `json:"disconnected"`
	ServerCrashes   uint64 `json:"server_crashes"`
	ServerStops     uint64 `json:"server_stops"`
}

// ServerReport is one class server process.
type ServerReport struct {
	PID     int      `json:"pid"`
	Name    string   `json:"name"`
	State   string   `json:"state"` // registered, running, stopping
	Locks   int      `json:"locks"` // objects, LockServer locks and class handles
	Objects int      `json:"objects"`
	Classes []string `json:"classes"`
}

// PoolReport is one pool.
type PoolReport struct {
	Name    string         `json:"name"`
	Stats   StatsReport    `json:"stats"`
	Workers []WorkerReport `json:"workers"`
	Crashes []CrashReport  `json:"crashes"` // newest first
}

// StatsReport is a pool's counters (bulkhead.Stats), durations in seconds,
// with its calls by outcome (bulkhead.Metrics).
type StatsReport struct {
	Workers           int               `json:"workers"`
	Busy              int               `json:"busy"`
	Spares            int               `json:"spares"`
	Starting          int               `json:"starting"`
	Stopping          int               `json:"stopping"`
	InFlight          int               `json:"in_flight"`
	Waiting           int               `json:"waiting"`
	Calls             uint64            `json:"calls"` // calls finished, every outcome
	CallsByOutcome    map[string]uint64 `json:"calls_by_outcome"`
	Started           uint64            `json:"started"`
	StartFailures     uint64            `json:"start_failures"`
	CallCrashes       uint64            `json:"call_crashes"`
	IdleCrashes       uint64            `json:"idle_crashes"`
	Redispatched      uint64            `json:"redispatched"`
	Abandoned         uint64            `json:"abandoned"`
	Hung              uint64            `json:"hung"`
	SlowCalls         uint64            `json:"slow_calls"`
	Recycled          uint64            `json:"recycled"`
	Overloaded        uint64            `json:"overloaded"`
	Unhealthy         bool              `json:"unhealthy"`
	FailureStreak     int               `json:"failure_streak"`
	Quarantined       int               `json:"quarantined"`
	QuarantineRefused uint64            `json:"quarantine_refused"`
	Promoted          uint64            `json:"promoted"`
	RespawnP50        float64           `json:"respawn_p50_seconds"`
}

// WorkerReport is one worker.
type WorkerReport struct {
	PID        int            `json:"pid"`
	Name       string         `json:"name"`
	State      string         `json:"state"` // busy, idle, spare, stopping
	Calls      uint64         `json:"calls"` // calls it has finished
	InFlight   int            `json:"in_flight"`
	Capacity   int            `json:"capacity"`
	Transport  string         `json:"transport"`
	AgeSeconds float64        `json:"age_seconds"`
	CPUSeconds float64        `json:"cpu_seconds"`
	RSSBytes   int64          `json:"rss_bytes"`
	Current    *CurrentReport `json:"current,omitempty"`
}

// CurrentReport is the call a worker runs.
type CurrentReport struct {
	Method         string  `json:"method"`
	RequestID      uint64  `json:"request_id"`
	RunningSeconds float64 `json:"running_seconds"`
}

// CrashReport is one crash of the pool's log.
type CrashReport struct {
	Time        time.Time `json:"time"`
	AgoSeconds  float64   `json:"ago_seconds"`
	PID         int       `json:"pid"`
	Phase       string    `json:"phase"`
	Signal      string    `json:"signal,omitempty"` // SIGSEGV..., or "" for an exit status
	ExitCode    int       `json:"exit_code"`
	CoreDumped  bool      `json:"core_dumped,omitempty"`
	Method      string    `json:"method,omitempty"`
	RequestID   uint64    `json:"request_id,omitempty"`
	Fingerprint string    `json:"fingerprint,omitempty"`
	Function    string    `json:"function,omitempty"` // the native function it died in, if its report says
	CPUSeconds  float64   `json:"cpu_seconds"`        // over its life
	MaxRSSBytes int64     `json:"max_rss_bytes"`      // its peak, over its life
	Limit       string    `json:"limit,omitempty"`
	Reason      string    `json:"reason"`
	StderrHead  string    `json:"stderr_head"`
	StderrTail  string    `json:"stderr_tail"` // "" when the whole of stderr fit in the head
	Elided      string    `json:"stderr_elided,omitempty"`
}

// Report reads every pool.
func (h *Handler) Report() Report {
	now := h.now()
	rep := Report{Time: now, Pools: make([]PoolReport, 0, len(h.sources))}
	for _, src := range h.sources {
		switch {
		case src.Pool != nil:
			rep.Pools = append(rep.Pools, poolReport(src, now))
		case src.Activator != nil:
			rep.Activators = append(rep.Activators, activatorReport(src))
		}
	}
	return rep
}

func poolReport(src Source, now time.Time) PoolReport {
	snap := src.Pool.Snapshot()
	pr := PoolReport{Name: src.Name, Stats: statsReport(snap.Stats, src.Pool.Metrics()),
		Workers: make([]WorkerReport, 0, len(snap.Workers)), Crashes: make([]CrashReport, 0, len(snap.Crashes))}
	for _, w := range snap.Workers {
		wr := WorkerReport{PID: w.PID, Name: w.Name, State: w.State, Calls: w.Calls, InFlight: w.InFlight,
			Capacity: w.Capacity, Transport: "socket", AgeSeconds: now.Sub(w.Since).Seconds(),
			CPUSeconds: w.CPU.Seconds(), RSSBytes: w.RSS}
		if w.Transport == bulkhead.TransportShm {
			wr.Transport = "shm"
		}
		if c := w.Current; c != nil {
			wr.Current = &CurrentReport{Method: c.Method, RequestID: c.RequestID, RunningSeconds: c.Running.Seconds()}
		}
		pr.Workers = append(pr.Workers, wr)
	}
	for _, c := range snap.Crashes {
		cr := CrashReport{Time: c.Time, AgoSeconds: now.Sub(c.Time).Seconds(), PID: c.PID, Phase: c.Phase.String(),
			Signal: bulkhead.SignalName(c.Signal), ExitCode: c.ExitCode, CoreDumped: c.CoreDumped, Method: c.Method,
			RequestID: c.RequestID, Fingerprint: c.Fingerprint, Function: c.Function, Reason: c.Reason,
			CPUSeconds: c.CPU.Seconds(), MaxRSSBytes: c.MaxRSS}
		if c.Limit != bulkhead.LimitNone {
			cr.Limit = c.Limit.String()
		}
		cr.StderrHead, cr.Elided, cr.StderrTail = splitStderr(c.Stderr)
		pr.Crashes = append(pr.Crashes, cr)
	}
	return pr
}

func activatorReport(src Source) ActivatorReport {
	ar := ActivatorReport{Name: src.Name, Stats: ActivatorStatsReport(src.Activator.Stats()), Servers: []ServerReport{}}
	for _, sv := range src.Activator.Servers() {
		ar.Servers = append(ar.Servers, ServerReport{PID: sv.PID, Name: sv.Name, State: sv.State, Locks: sv.Locks,
			Objects: sv.Objects, Classes: sv.Classes})
	}
	return ar
}

func statsReport(s bulkhead.Stats, m bulkhead.Metrics) StatsReport {
	r := StatsReport{Workers: s.Workers, Busy: s.Busy, Spares: s.Spares, Starting: s.Starting, Stopping: s.Stopping,
		InFlight: s.InFlight, Waiting: s.Waiting, Started: s.Started, StartFailures: s.StartFailures,
		CallCrashes: s.CallCrashes, IdleCrashes: s.IdleCrashes, Redispatched: s.Redispatched, Abandoned: s.Abandoned,
		Hung: s.Hung, SlowCalls: s.SlowCalls, Recycled: s.Recycled, Overloaded: s.Overloaded, Unhealthy: s.Unhealthy,
		FailureStreak: s.FailureStreak, Quarantined: s.Quarantined, QuarantineRefused: s.QuarantineRefused,
		Promoted: s.Promoted, RespawnP50: s.RespawnP50.Seconds(),
		CallsByOutcome: make(map[string]uint64, bulkhead.NumOutcomes)}
	for _, mm := range m.Methods {
		for o, n := range mm.Outcomes {
			r.CallsByOutcome[bulkhead.Outcome(o).String()] += n
			r.Calls += n
		}
	}
	return r
}

// elision is the line bulkhead puts between the head and the tail of a
// stderr that did not fit Config.StderrTail.
var elision = regexp.MustCompile(`\n\.\.\. \[(\d+ bytes elided)\] \.\.\.\n`)

// splitStderr splits a crash's stderr into its head, what was elided, and
// its tail.
func splitStderr(s string) (head, elided, tail string) {
	m := elision.FindStringSubmatchIndex(s)
	if m == nil {
		return s, "", ""
	}
	return s[:m[0]], s[m[2]:m[3]], s[m[1]:]
}
