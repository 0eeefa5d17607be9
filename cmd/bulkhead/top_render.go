package main

import (
	"fmt"
	"strings"
	"unicode"

	"github.com/bulkhead-go/bulkhead/status"
)

// topCrashes is how many of each pool's latest crashes top shows.
const topCrashes = 5

// renderTop draws a report as text, width columns wide at most. Strings
// from the report (names, methods, reasons come from workers) are cleaned
// of control characters, so that a worker cannot drive the terminal.
func renderTop(rep status.Report, width int, from string, err error) string {
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
		line("pool %s: %d calls (ok %d, crashed %d, canceled %d, refused %d)  in flight %d  waiting %d  slow %d",
			p.Name, st.Calls, st.CallsByOutcome["ok"], st.CallsByOutcome["crash_call"]+st.CallsByOutcome["crash_idle"],
			st.CallsByOutcome["canceled"], st.CallsByOutcome["overloaded"]+st.CallsByOutcome["unhealthy"]+st.CallsByOutcome["quarantined"],
			st.InFlight, st.Waiting, st.SlowCalls)
		line("workers %d (busy %d)  spares %d  starting %d  stopping %d  started %d  crashes %d+%d idle  respawn p50 %s%s",
			st.Workers, st.Busy, st.Spares, st.Starting, st.Stopping, st.Started, st.CallCrashes, st.IdleCrashes,
			seconds(st.RespawnP50), map[bool]string{true: "  UNHEALTHY", false: ""}[st.Unhealthy])
		line("%8s  %-8s  %7s  %8s  %9s  %8s  %s", "PID", "STATE", "CALLS", "CPU", "RSS", "AGE", "CURRENT CALL")
		for _, w := range p.Workers {
			cur := ""
			if c := w.Current; c != nil {
				cur = fmt.Sprintf("%s #%d for %s", c.Method, c.RequestID, seconds(c.RunningSeconds))
			}
			line("%8d  %-8s  %7d  %8s  %6.1f MiB  %8s  %s", w.PID, w.State, w.Calls, seconds(w.CPUSeconds),
				float64(w.RSSBytes)/(1<<20), seconds(w.AgeSeconds), cur)
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
	return b.String()
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
