package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/examples/crashy"
	"github.com/bulkhead-go/bulkhead/examples/crashy/native"
)

// crashKind is how a crashed call's worker died, from its wait status.
type crashKind uint8

const (
	kindSegv  crashKind = iota // killed by SIGSEGV
	kindAbort                  // killed by SIGABRT
	kindExit                   // exit status native.FaultExitCode
	kindOther                  // anything else: a bug, or the OOM killer
)

func kindOf(e *bulkhead.CrashError) crashKind {
	switch {
	case e.Killed:
		return kindOther // the pool killed it: it broke the protocol
	case e.Signal == syscall.SIGSEGV:
		return kindSegv
	case e.Signal == syscall.SIGABRT:
		return kindAbort
	case e.Signal == 0 && e.ExitCode == native.FaultExitCode:
		return kindExit
	}
	return kindOther
}

// Kinds counts crashes by how the worker died.
type Kinds struct {
	Segv  int `json:"segv"`
	Abort int `json:"abort"`
	Exit  int `json:"exit"`
	Hang  int `json:"hang,omitempty"` // faults only: a hang is not a crash, it ends as a timeout
	Other int `json:"other,omitempty"`
}

func (k *Kinds) add(f native.Fault) {
	switch f {
	case native.FaultSegv:
		k.Segv++
	case native.FaultAbort:
		k.Abort++
	case native.FaultExit:
		k.Exit++
	case native.FaultHang:
		k.Hang++
	default:
		k.Other++
	}
}

func (k Kinds) total() int { return k.Segv + k.Abort + k.Exit + k.Hang + k.Other }

// Phases counts worker deaths as the pool saw them (Pool.Stats).
type Phases struct {
	Startup uint64 `json:"startup"` // failed starts
	Call    uint64 `json:"call"`
	Idle    uint64 `json:"idle"`
}

// Refused counts calls that failed fast, by error type.
type Refused struct {
	Overloaded  int `json:"overloaded"`  // *OverloadedError
	Unhealthy   int `json:"unhealthy"`   // *UnhealthyError
	Quarantined int `json:"quarantined"` // *QuarantinedError
}

func (r Refused) total() int { return r.Overloaded + r.Unhealthy + r.Quarantined }

// Faults counts the faults the workers journalled just before triggering
// them, by where they struck.
type Faults struct {
	Call    Kinds `json:"call"`
	Idle    Kinds `json:"idle"`
	Startup Kinds `json:"startup"`
}

// summary is the demo's result. Its JSON keys are the --json output.
type summary struct {
	Requested  int     `json:"requested"`
	Calls      int     `json:"calls"` // calls sent; fewer than requested only if interrupted
	OK         int     `json:"ok"`
	Crashed    int     `json:"crashed"`      // calls that got a *CrashError
	Timeouts   int     `json:"timeouts"`     // calls that ended by their deadline
	NoWorker   int     `json:"start_failed"` // *StartError: every worker was down and a replacement died at start-up
	Refused    Refused `json:"refused"`      // failed fast, nothing sent
	Errors     int     `json:"errors"`       // any other error
	NodeLost   int     `json:"-"`            // *cluster.NodeLostError (the cluster demo's node_lost_calls)
	FirstError string  `json:"first_error,omitempty"`
	Wrong      int     `json:"wrong"` // a result that is not the right checksum: must be 0
	Lost       int     `json:"lost"`  // must be 0
	Duplicated int     `json:"duplicated"`
	P50us      int64   `json:"p50_us"` // latency of ok calls
	P99us      int64   `json:"p99_us"`

	LostNoAnswer     int   `json:"lost_no_answer"`          // Call never returned
	LostUnstarted    int   `json:"lost_ok_but_not_started"` // success, yet no worker journalled the call
	CrashedByKind    Kinds `json:"crashed_by_kind"`
	CrashedUnstarted int   `json:"crashed_unstarted"`     // CrashError in phase idle: died before starting it, redispatch exhausted
	CrashedNoJournal int   `json:"crashed_not_journaled"` // CrashError, but no worker journalled the call: it died between the start marker and the handler
	TimeoutsStarted  int   `json:"timeouts_started"`      // a worker had started the call (a hang)
	TimeoutsHang     int   `json:"timeouts_hang"`         // of those, calls that hung in C by design
	TimeoutsWaiting  int   `json:"timeouts_not_started"`  // the deadline passed before a worker started it
	MaxStarts        int   `json:"max_starts"`            // the most times one call was journalled

	FaultsInjected Faults `json:"faults_injected"`
	DeadlyFaults   int    `json:"deadly_faults_journaled"` // workers whose last journalled fault kills (segv, abort, exit)
	RecycleAfter   int    `json:"recycle_after"`

	Transport        string  `json:"transport"`
	Workers          int     `json:"workers"`
	Concurrency      int     `json:"concurrency"`
	CrashRate        float64 `json:"crash_rate"`
	IdleCrashRate    float64 `json:"idle_crash_rate"`
	StartupCrashRate float64 `json:"startup_crash_rate"`
	TimeoutMs        float64 `json:"timeout_ms"`
	ElapsedMs        int64   `json:"elapsed_ms"`
	CallsPerSec      float64 `json:"calls_per_sec"`
	Interrupted      bool    `json:"interrupted"`
	Stalled          bool    `json:"stalled"`
	Clean            bool    `json:"clean"` // lost, duplicated and wrong are all 0

	// *PoolCounts are the in-process pool's counters; nil in a cluster,
	// whose pools are in the node processes, so that the JSON has none of
	// their keys rather than zeros that are not true.
	*PoolCounts
}

// PoolCounts are the summary's counters from Pool.Stats.
type PoolCounts struct {
	RespawnP50        int64             `json:"respawn_p50_us"` // Pool.Stats().RespawnP50
	Respawns          int               `json:"respawns"`       // replacements that RespawnP50 is over
	Redispatch        uint64            `json:"redispatched"`   // calls re-sent because their worker died before starting them
	WorkerDeaths      Phases            `json:"worker_deaths"`
	WorkersStarted    uint64            `json:"workers_started"`
	Abandoned         uint64            `json:"abandoned"` // calls whose deadline passed (Pool.Stats)
	Hung              uint64            `json:"hung"`      // started calls abandoned at their deadline (Pool.Stats)
	Recycled          uint64            `json:"recycled"`  // workers drained and replaced on purpose
	RecycledByReason  map[string]uint64 `json:"recycled_by_reason"`
	Quarantines       uint64            `json:"quarantines"` // fingerprints put in quarantine
	QuarantineRefused uint64            `json:"quarantine_refused"`
	PoolStartAttempts int               `json:"pool_start_attempts,omitempty"` // in-process only: a node's daemon retries its pool itself
}

// tally checks every call against the workers' journals and builds the
// summary. The callers must be done, or stalled (their calls still out are
// lost).
func (r *demoRun) tally(journals [][]crashy.Record, lat []time.Duration, st bulkhead.Stats, elapsed time.Duration) *summary {
	cfg := r.cfg
	s := &summary{
		Requested: cfg.calls, Transport: transportName(cfg.transport), Workers: cfg.workers, Concurrency: cfg.concurrency,
		CrashRate: cfg.crashRate, IdleCrashRate: cfg.idleRate, StartupCrashRate: cfg.startupRate,
		TimeoutMs: float64(cfg.timeout) / float64(time.Millisecond), RecycleAfter: cfg.recycle,
	}
	starts, hung := s.readJournals(journals, cfg.calls)
	for id := 1; id <= cfg.calls; id++ {
		r.tallyCall(s, id, int(starts[id]), hung[id])
	}
	if e := r.firstErr.Load(); e != nil {
		s.FirstError = "; the first: " + *e
	}
	s.Lost = s.LostNoAnswer + s.LostUnstarted
	s.Clean = s.Lost == 0 && s.Duplicated == 0 && s.Wrong == 0
	slices.Sort(lat)
	s.P50us = percentile(lat, 0.50).Microseconds()
	s.P99us = percentile(lat, 0.99).Microseconds()
	s.addStats(st)
	s.ElapsedMs = elapsed.Milliseconds()
	s.CallsPerSec = math.Round(float64(s.Calls)/max(elapsed.Seconds(), 1e-9)*10) / 10
	return s
}

// answered is the sum of the summary's categories of a call made: ok,
// crashed, timeouts, no worker, refused, node lost, other errors, wrong
// results and never answered. Each call made is in exactly one, so it is
// Calls.
func (s *summary) answered() int {
	return s.OK + s.Crashed + s.Timeouts + s.NoWorker + s.Refused.total() + s.NodeLost + s.Errors + s.Wrong + s.LostNoAnswer
}

// readJournals counts the starts of each call id (saturating at 255: more
// than enough to see a duplicate), which calls were to hang in C, and the
// faults the workers injected.
func (s *summary) readJournals(journals [][]crashy.Record, calls int) (starts []uint8, hung []bool) {
	starts, hung = make([]uint8, calls+1), make([]bool, calls+1)
	for _, recs := range journals {
		for _, rec := range recs {
			switch rec.Kind {
			case crashy.KindCall:
				if rec.ID <= uint64(calls) {
					if starts[rec.ID] < 255 {
						starts[rec.ID]++
					}
					hung[rec.ID] = hung[rec.ID] || rec.Fault == native.FaultHang
				} else {
					s.Duplicated++ // an id the demo never sent: count it against the run
				}
				if rec.Fault != native.FaultNone {
					s.FaultsInjected.Call.add(rec.Fault)
				}
			case crashy.KindIdle:
				s.FaultsInjected.Idle.add(rec.Fault)
			case crashy.KindStartup:
				s.FaultsInjected.Startup.add(rec.Fault)
			}
		}
		if f := crashy.LastFault(recs); f != native.FaultNone && f != native.FaultHang {
			s.DeadlyFaults++
		}
	}
	return starts, hung
}

// tallyCall checks call id, started n times by the journals, against what
// its caller was told.
func (r *demoRun) tallyCall(s *summary, id, n int, hung bool) {
	s.MaxStarts = max(s.MaxStarts, n)
	if n > 1 {
		s.Duplicated++
	}
	switch r.status[id].Load() {
	case statusNotSent:
		if n > 0 {
			s.Duplicated++ // started, yet never sent
		}
		return
	case statusOut:
		s.Calls++
		s.LostNoAnswer++
		return
	}
	s.Calls++
	res := r.result[id]
	switch res.out {
	case outOK:
		s.OK++
		if n == 0 {
			s.LostUnstarted++
		}
	case outWrong:
		s.Wrong++
	case outCrash:
		s.addCrash(res, n)
	case outTimeout:
		s.Timeouts++
		if res.started {
			s.TimeoutsStarted++
			if hung {
				s.TimeoutsHang++
			}
		} else {
			s.TimeoutsWaiting++
		}
	case outNoWorker:
		s.NoWorker++
	case outNodeLost:
		s.NodeLost++
	case outRefused:
		switch res.refusal {
		case refusedOverloaded:
			s.Refused.Overloaded++
		case refusedUnhealthy:
			s.Refused.Unhealthy++
		default:
			s.Refused.Quarantined++
		}
	default:
		s.Errors++
	}
}

// addCrash counts a crashed call by its kind; n is its journalled starts.
func (s *summary) addCrash(res callResult, n int) {
	s.Crashed++
	switch res.kind {
	case kindSegv:
		s.CrashedByKind.Segv++
	case kindAbort:
		s.CrashedByKind.Abort++
	case kindExit:
		s.CrashedByKind.Exit++
	default:
		s.CrashedByKind.Other++
	}
	if res.idle {
		s.CrashedUnstarted++
	} else if n == 0 {
		s.CrashedNoJournal++
	}
}

// addStats copies the pool's counters into the summary.
func (s *summary) addStats(st bulkhead.Stats) { s.PoolCounts = poolCounts(st) }

// poolCounts are the summary's counters of a pool with stats st.
func poolCounts(st bulkhead.Stats) *PoolCounts {
	s := &PoolCounts{}
	s.RespawnP50 = st.RespawnP50.Microseconds()
	s.Respawns = st.Respawns
	s.Redispatch = st.Redispatched
	s.Abandoned = st.Abandoned
	s.WorkersStarted = st.Started
	s.Hung = st.Hung
	s.Recycled = st.Recycled
	s.RecycledByReason = map[string]uint64{}
	for reason, n := range st.RecycledByReason {
		if n > 0 {
			s.RecycledByReason[reason] = n
		}
	}
	s.Quarantines = st.Quarantines
	s.QuarantineRefused = st.QuarantineRefused
	s.WorkerDeaths = Phases{Startup: st.StartFailures, Call: st.CallCrashes, Idle: st.IdleCrashes}
	return s
}

func transportName(t bulkhead.Transport) string {
	if t == bulkhead.TransportShm {
		return "shm"
	}
	return "socket"
}

// byReason formats non-zero counts by reason, sorted, or "".
func byReason(m map[string]uint64) string {
	if len(m) == 0 {
		return ""
	}
	keys := slices.Sorted(maps.Keys(m))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

// percentile returns the nearest-rank q-quantile of sorted d, or 0.
func percentile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(d)))) - 1
	return d[min(max(i, 0), len(d)-1)]
}

func (s *summary) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(s)
}

func (s *summary) writeText(w io.Writer) {
	us := func(v int64) string { return (time.Duration(v) * time.Microsecond).String() }
	mark := func(n int) string {
		if n == 0 {
			return "ok"
		}
		return "FAILED"
	}
	head := fmt.Sprintf("%d calls", s.Calls)
	if s.Calls < s.Requested {
		head = fmt.Sprintf("%d of %d calls", s.Calls, s.Requested)
	}
	fmt.Fprintf(w, "\nbulkhead demo: %s from %d callers on %d crashy workers (%s), in %.1fs (%.0f calls/s)\n",
		head, s.Concurrency, s.Workers, s.Transport, float64(s.ElapsedMs)/1000, s.CallsPerSec)
	fmt.Fprintf(w, "crash rate %g per call (segv, abort, exit, hang alike), idle %g per call, start-up %g per worker; deadline %gms\n\n",
		s.CrashRate, s.IdleCrashRate, s.StartupCrashRate, s.TimeoutMs)

	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "ok\t%d\tright checksum, checked in Go\n", s.OK)
	k := s.CrashedByKind
	fmt.Fprintf(tw, "crashed\t%d\tsegv %d, abort %d, exit %d, other %d  (*CrashError)\n",
		s.Crashed, k.Segv, k.Abort, k.Exit, k.Other)
	if s.CrashedUnstarted+s.CrashedNoJournal > 0 {
		fmt.Fprintf(tw, "\t\tof which %d died before starting the call (redispatch exhausted), %d before its handler ran\n",
			s.CrashedUnstarted, s.CrashedNoJournal)
	}
	fmt.Fprintf(tw, "timeouts\t%d\t%d timed out running (%d in an injected hang; the worker was stopped), %d waiting for a worker  (*CanceledError)\n",
		s.Timeouts, s.TimeoutsStarted, s.TimeoutsHang, s.TimeoutsWaiting)
	fmt.Fprintf(tw, "no worker\t%d\tevery worker was down and a replacement died at start-up  (*StartError)\n", s.NoWorker)
	rf := s.Refused
	fmt.Fprintf(tw, "refused\t%d\tfailed fast, nothing sent: overloaded %d, unhealthy %d, quarantined %d\n",
		rf.total(), rf.Overloaded, rf.Unhealthy, rf.Quarantined)
	fmt.Fprintf(tw, "other errors\t%d\tany other error%s\n", s.Errors, s.FirstError)
	fmt.Fprintf(tw, "wrong results\t%d\t%s\n", s.Wrong, mark(s.Wrong))
	fmt.Fprintf(tw, "lost\t%d\t%s: %d never answered, %d answered ok but started by no worker\n", s.Lost, mark(s.Lost), s.LostNoAnswer, s.LostUnstarted)
	fmt.Fprintf(tw, "duplicated\t%d\t%s: no call started twice (the most any call was journalled: %d)\n", s.Duplicated, mark(s.Duplicated), s.MaxStarts)
	fmt.Fprintf(tw, "redispatched\t%d\tcalls whose worker died before starting them, sent to another\n", s.Redispatch)
	fmt.Fprintf(tw, "latency\tp50 %s\tp99 %s  (ok calls, waiting for a worker included)\n", us(s.P50us), us(s.P99us))
	fmt.Fprintf(tw, "respawn p50\t%s\tfrom losing a worker to its replacement's HELLO, over %d replacements\n", us(s.RespawnP50), s.Respawns)
	tw.Flush()

	fmt.Fprintf(w, "\nworker deaths, as the pool saw them: %d at start-up, %d during a call, %d between calls; %d workers started\n",
		s.WorkerDeaths.Startup, s.WorkerDeaths.Call, s.WorkerDeaths.Idle, s.WorkersStarted)
	fmt.Fprintf(w, "faults the workers journalled just before triggering them:\n")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "\tsegv\tabort\texit\thang\t\n")
	for _, row := range []struct {
		name string
		k    Kinds
	}{{"in a call", s.FaultsInjected.Call}, {"after a call (idle)", s.FaultsInjected.Idle}, {"at start-up", s.FaultsInjected.Startup}} {
		fmt.Fprintf(tw, "  %s\t%d\t%d\t%d\t%d\t\n", row.name, row.k.Segv, row.k.Abort, row.k.Exit, row.k.Hang)
	}
	tw.Flush()
	fmt.Fprintf(w, "recycled workers (drained and replaced on purpose): %d%s; quarantine: %d fingerprints, %d calls refused\n",
		s.Recycled, byReason(s.RecycledByReason), s.Quarantines, s.QuarantineRefused)
	if s.PoolStartAttempts > 1 {
		fmt.Fprintf(w, "the pool took %d attempts to start: every first worker died at start-up\n", s.PoolStartAttempts)
	}
	switch {
	case s.Stalled:
		fmt.Fprintf(w, "\nSTALLED: calls stopped returning; the ones still out are counted as lost\n")
	case s.Interrupted:
		fmt.Fprintf(w, "\ninterrupted: the calls not yet sent were not made\n")
	}
	if s.Clean {
		fmt.Fprintf(w, "\nno call lost, none run twice, every answer right.\n")
	} else {
		fmt.Fprintf(w, "\nCHECKS FAILED: %d lost, %d duplicated, %d wrong\n", s.Lost, s.Duplicated, s.Wrong)
	}
}
