package bulkhead

import (
	"bytes"
	"os"
	"slices"
	"strconv"
	"time"
)

// WorkerInfo describes one running worker.
type WorkerInfo struct {
	PID      int
	Name     string    // from its HELLO
	InFlight int       // calls it holds, those queued in its socket (Config.Pipeline) included
	Capacity int       // calls it runs at once
	Since    time.Time // when it said HELLO
	// Transport is the transport its frames use: TransportShm only if
	// Config asked for it and the worker accepted it in HELLO.
	Transport Transport
	// Spare is true for a warm spare (Config.Spares): started and
	// handshaken, taking no calls until it is promoted.
	Spare bool
	// Stopping is true for a worker taken out of service (recycled, lost,
	// or stopped for a hung call) that has not exited yet: it takes no new
	// calls.
	Stopping bool
	// State sums the above up for a status page: "busy" (serving, with
	// calls), "idle" (serving, without), "spare" or "stopping".
	State string
	// Calls is how many calls it has finished.
	Calls uint64
	// Current is the call it runs (with several in flight, the one sent
	// last), or nil when it holds none.
	Current *CurrentCall

	// CPU and RSS are read from /proc by Snapshot (Workers leaves them 0),
	// and stay 0 if the process could not be read.
	CPU time.Duration // user and system CPU time it has used
	RSS int64         // resident memory, in bytes
}

// CurrentCall is the call a worker runs, as a status page shows it.
type CurrentCall struct {
	Method    string // OtherMethod if no HELLO named it
	RequestID uint64
	// Running is how long since it was sent to the worker; 0 with
	// Config.NoCallTimings.
	Running time.Duration
}

// Workers lists the running workers, by pid.
func (p *Pool) Workers() []WorkerInfo {
	now := p.metrics.clock()
	p.mu.Lock()
	defer p.unlock()
	out := make([]WorkerInfo, 0, len(p.workers))
	for w := range p.workers {
		if w.Exited.Load() {
			continue // dead, not yet reaped
		}
		out = append(out, p.infoLocked(w, now))
	}
	slices.SortFunc(out, func(a, b WorkerInfo) int { return a.PID - b.PID })
	return out
}

// infoLocked describes w; now is the metrics clock's reading.
func (p *Pool) infoLocked(w *workerProc, now time.Duration) WorkerInfo {
	i := WorkerInfo{PID: w.PID, Name: w.Hello.Name, InFlight: w.inflight, Capacity: w.capacity, Since: w.born,
		Transport: w.transport(), Spare: w.state == spare, Stopping: w.state == retiring || w.state == lost,
		Calls: w.pol.calls}
	switch {
	case i.Spare:
		i.State = "spare"
	case i.Stopping:
		i.State = "stopping"
	case w.inflight > 0:
		i.State = "busy"
	default:
		i.State = "idle"
	}
	if w.inflight > 0 && !i.Spare {
		c := &CurrentCall{Method: OtherMethod, RequestID: w.current.Load()}
		if m := w.curMethod.Load(); m != nil && m.name != "" {
			c.Method = m.name
		}
		if since := w.curSince.Load(); since > 0 && !p.cfg.NoCallTimings {
			c.Running = max(now-time.Duration(since), 0)
		}
		i.Current = c
	}
	return i
}

// Snapshot is a pool at one moment, for a status page: its statistics,
// every worker with its CPU time and memory, and the latest crashes.
type Snapshot struct {
	Time    time.Time
	Stats   Stats
	Workers []WorkerInfo  // by pid
	Crashes []CrashRecord // the latest 32 at most, newest first
}

// Snapshot returns the pool's state. It reads each worker's /proc files
// with no lock held.
func (p *Pool) Snapshot() Snapshot {
	s := Snapshot{Time: time.Now(), Stats: p.Stats(), Workers: p.Workers()}
	p.mu.Lock()
	s.Crashes = p.crashes.listLocked()
	p.unlock()
	for i := range s.Workers {
		w := &s.Workers[i]
		w.CPU, _ = readCPU(w.PID)
		w.RSS, _ = readRSS(w.PID)
	}
	return s
}

// userHZ is the unit of /proc's CPU times: USER_HZ, 100 on every Linux.
const userHZ = 100

// readCPU reads a process's user and system CPU time from /proc/<pid>/stat
// (fields 14 and 15, after the command name in parentheses, which may hold
// spaces or parentheses itself).
func readCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, os.ErrInvalid
	}
	f := bytes.Fields(b[i+1:]) // f[0] is field 3, the state
	if len(f) < 13 {
		return 0, os.ErrInvalid
	}
	ut, err1 := strconv.ParseUint(string(f[11]), 10, 63)
	st, err2 := strconv.ParseUint(string(f[12]), 10, 63)
	if err1 != nil || err2 != nil {
		return 0, os.ErrInvalid
	}
	return time.Duration(ut+st) * time.Second / userHZ, nil
}
