package daemon

import (
	"sort"

	"github.com/bulkhead-go/bulkhead"
)

// status is the status op's answer: the pools and class servers p may use,
// then their workers (PHP-FPM's status page, per pool then per process).
func (s *Server) status(p Peer) map[string]any {
	var pools []map[string]any
	for _, e := range s.visiblePools(p) {
		var ws []map[string]any
		for _, w := range e.pool.Workers() {
			ws = append(ws, map[string]any{"pid": w.PID, "state": workerState(w), "in_flight": w.InFlight,
				"capacity": w.Capacity, "since": w.Since.UnixNano(), "name": w.Name, "calls": w.Calls})
		}
		st := e.pool.Stats()
		pools = append(pools, map[string]any{"name": e.name, "workers": ws, "in_flight": st.InFlight, "waiting": st.Waiting,
			"crashes": st.CallCrashes + st.IdleCrashes})
	}
	pools = append(pools, s.failingStatus(p)...)
	out := map[string]any{"pools": pools}
	if s.act != nil {
		var servers []map[string]any
		for _, si := range s.act.Servers() {
			if !s.anyClassAllowed(si.Classes, p) {
				continue
			}
			servers = append(servers, map[string]any{"name": si.Name, "pid": si.PID, "state": si.State,
				"objects": si.Objects, "locks": si.Locks, "classes": si.Classes})
		}
		out["servers"] = servers
		out["classes"] = s.configuredClasses(p)
	}
	return out
}

// configuredClasses are the classes p may use, running or not: their
// server's name and instancing.
func (s *Server) configuredClasses(p Peer) []map[string]any {
	s.mu.Lock()
	servers := s.cfg.Activator.Servers
	s.mu.Unlock()
	var out []map[string]any
	for _, sc := range servers {
		for _, cc := range sc.Classes {
			if s.classAllowed(cc.Name, p) {
				out = append(out, map[string]any{"name": cc.Name, "server": sc.Name, "instancing": cc.Instancing.String()})
			}
		}
	}
	return out
}

func workerState(w bulkhead.WorkerInfo) string {
	switch {
	case w.Stopping:
		return "stopping"
	case w.Spare:
		return "spare"
	case w.InFlight > 0:
		return "busy"
	}
	return "idle"
}

// stats is the stats op's answer.
func (s *Server) stats(p Peer) map[string]any {
	pools := make(map[string]any)
	for _, e := range s.visiblePools(p) {
		pools[e.name] = statsOf(e.pool)
	}
	out := map[string]any{"pools": pools}
	if s.act != nil && s.anyClassAllowedAll(p) {
		out["activator"] = s.act.Stats()
	}
	return out
}

// poolStats is a pool's entry in the stats op: Pool.Stats's fields, then
// the calls finished, in all and by outcome (Outcome.String), from
// Pool.Metrics.
type poolStats struct {
	bulkhead.Stats
	Calls          uint64
	CallsByOutcome map[string]uint64
}

func statsOf(p *bulkhead.Pool) poolStats {
	ps := poolStats{Stats: p.Stats(), CallsByOutcome: make(map[string]uint64, bulkhead.NumOutcomes)}
	for _, m := range p.Metrics().Methods {
		for o, n := range m.Outcomes {
			if n > 0 {
				ps.CallsByOutcome[bulkhead.Outcome(o).String()] += n
				ps.Calls += n
			}
		}
	}
	return ps
}

// visiblePools are the pools p may use, by name.
func (s *Server) visiblePools(p Peer) []*poolEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*poolEntry
	for _, e := range s.pools {
		if e.access.allows(p) {
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// failingStatus are status's entries of the failing pools p may use, by
// name: no workers, state "failing", the last start's error.
func (s *Server) failingStatus(p Peer) []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, f := range s.failing {
		if f.p.Access.allows(p) {
			out = append(out, f.failingStatus())
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i]["name"].(string) < out[j]["name"].(string) })
	return out
}

func (s *Server) anyClassAllowed(classes []string, p Peer) bool {
	for _, c := range classes {
		if s.classAllowed(c, p) {
			return true
		}
	}
	return false
}

func (s *Server) anyClassAllowedAll(p Peer) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.cfg.ClassAllow {
		if a.allows(p) {
			return true
		}
	}
	return false
}
