package main

import (
	"fmt"
	"strings"
	"unicode"

	"github.com/bulkhead-go/bulkhead/status"
)

// topCrashes is how many of each pool's latest crashes top shows.
const topCrashes = 5

// topView is what top shows: a report, and the figures its source cannot
// give.
type topView struct {
	rep status.Report
	na  unknown
}

// unknown marks the figures a source does not give; top prints "n/a" for
// them, never a 0 that looks measured.
type unknown struct {
	calls          bool // a pool's calls and calls by outcome
	workerCalls    bool // a worker's calls
	usage          bool // a worker's CPU time and memory
	crashes        bool // the crash log
	activatorStats bool // an activator's counters
}

// na is n as text, or "n/a" when it is unknown.
func na(unknown bool, n uint64) string {
	if unknown {
		return "n/a"
	}
	return fmt.Sprint(n)
}

// renderTop draws a report as text, width columns wide at most. Strings
// from the report (names, methods, reasons come from workers) are cleaned
// of control characters, so that a worker cannot drive the terminal.
func renderTop(v topView, width int, from string, err error) string {
	rep := v.rep
	var b strings.Builder
	line := func(format string, a ...any) {
		s := clean(fmt.Sprintf(format, a...))
		if width > 0 && len(s) > width {
			s = s[:width]
		}
		b.WriteString(s + "\n")
	}
	when := "never"
	if !rep.Time.IsZero() {
		when = rep.Time.Local().Format("15:04:05")
	}
	line("bulkhead top  %s  updated %s", from, when)
	if err != nil {
		line("cannot read the report: %v", err)
	}
	for _, p := range rep.Pools {
		st := p.Stats
		b.WriteString("\n")
		by, nc := st.CallsByOutcome, v.na.calls
		line("pool %s: %s calls (ok %s, crashed %s, canceled %s, refused %s)  in flight %d  waiting %d  slow %d",
			p.Name, na(nc, st.Calls), na(nc, by["ok"]), na(nc, by["crash_call"]+by["crash_idle"]), na(nc, by["canceled"]),
			na(nc, by["overloaded"]+by["unhealthy"]+by["quarantined"]), st.InFlight, st.Waiting, st.SlowCalls)
		line("workers %d (busy %d)  spares %d  starting %d  stopping %d  started %d  crashes %d+%d idle  respawn p50 %s%s",
			st.Workers, st.Busy, st.Spares, st.Starting, st.Stopping, st.Started, st.CallCrashes, st.IdleCrashes,
			seconds(st.RespawnP50), map[bool]string{true: "  UNHEALTHY", false: ""}[st.Unhealthy])
		line("%8s  %-8s  %7s  %8s  %9s  %8s  %s", "PID", "STATE", "CALLS", "CPU", "RSS", "AGE", "CURRENT CALL")
		for _, w := range p.Workers {
			cur := ""
			if c := w.Current; c != nil {
				cur = fmt.Sprintf("%s #%d for %s", c.Method, c.RequestID, seconds(c.RunningSeconds))
			}
			cpu, rss := seconds(w.CPUSeconds), fmt.Sprintf("%.1f MiB", float64(w.RSSBytes)/(1<<20))
			if v.na.usage {
				cpu, rss = "n/a", "n/a"
			}
			line("%8d  %-8s  %7s  %8s  %9s  %8s  %s", w.PID, w.State, na(v.na.workerCalls, w.Calls), cpu, rss,
				seconds(w.AgeSeconds), cur)
		}
		if v.na.crashes {
			line("latest crashes: n/a (the source keeps no crash log)")
		}
		for i, c := range p.Crashes {
			if i == 0 {
				line("latest crashes:")
			}
			if i == topCrashes {
				break
			}
			how := c.Signal
			if how == "" {
				how = fmt.Sprintf("exit %d", c.ExitCode)
			}
			if c.Function != "" {
				how += " in " + c.Function
			}
			call := ""
			if c.Method != "" {
				call = fmt.Sprintf("%s #%d ", c.Method, c.RequestID)
			}
			line("  %s ago  pid %d  %s  %s  %s%s", seconds(c.AgoSeconds), c.PID, c.Phase, how, call, c.Fingerprint)
		}
	}
	for _, a := range rep.Activators {
		b.WriteString("\n")
		renderActivator(line, a, v.na.activatorStats)
	}
	return b.String()
}

// renderActivator draws an activator: its counters, then a line per class
// server.
func renderActivator(line func(string, ...any), a status.ActivatorReport, unknown bool) {
	st := a.Stats
	n := func(v int) string { return na(unknown, uint64(v)) }
	line("activator %s: servers %d  starting %s  objects %s  sessions %s  activations %s  launches %s (failed %s)  server crashes %s",
		a.Name, len(a.Servers), n(st.Starting), n(st.Objects), n(st.Sessions), na(unknown, st.Activations), na(unknown, st.Launches),
		na(unknown, st.LaunchFailures), na(unknown, st.ServerCrashes))
	line("%8s  %-10s  %5s  %7s  %-16s  %s", "PID", "STATE", "LOCKS", "OBJECTS", "SERVER", "CLASSES")
	for _, s := range a.Servers {
		line("%8d  %-10s  %5d  %7d  %-16s  %s", s.PID, s.State, s.Locks, s.Objects, s.Name, strings.Join(s.Classes, ", "))
	}
}

// seconds formats a duration in seconds for a column.
func seconds(s float64) string {
	switch {
	case s < 1:
		return fmt.Sprintf("%.0fms", s*1000)
	case s < 120:
		return fmt.Sprintf("%.1fs", s)
	case s < 7200:
		return fmt.Sprintf("%.1fm", s/60)
	}
	return fmt.Sprintf("%.1fh", s/3600)
}

// clean replaces control characters (escape sequences included) with '?'.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return '?'
		}
		return r
	}, s)
}
