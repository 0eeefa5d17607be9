package chaos

import (
	"fmt"
	"io"
)

// Summary writes a human-readable account of r.
func Summary(w io.Writer, r *Result) {
	verdict := "PASS"
	if !r.OK {
		verdict = "FAIL"
	}
	fmt.Fprintf(w, "%s: %d calls in %.1fs (%.0f/s), %d workers, %d callers, fault rate %.2f, seed %d\n",
		verdict, r.Calls, r.Seconds, r.CallsPerSecond, r.Workers, r.Callers, r.FaultRate, r.Seed)
	fmt.Fprintf(w, "answered once %d, lost %d, duplicated %d, misclassified %d\n", r.AnsweredOnce, r.Lost, r.Duplicated, r.Misclassified)
	fmt.Fprintf(w, "leaked: fds %d, goroutines %d, processes %d, zombies %d\n", r.LeakedFDs, r.LeakedGoroutines, r.LeakedProcesses, r.Zombies)
	fmt.Fprintf(w, "workers started %d, recycled %d %v, memory kills %d, hung %d, replayed %d, quarantined calls %d (%d fingerprints)\n",
		r.WorkersStarted, r.Recycled, r.RecycledByReason, r.MemoryKills, r.Hung, r.Replayed, r.Quarantined, r.QuarantinedFingerprints)
	for _, e := range r.Examples {
		fmt.Fprintln(w, "  ", e)
	}
}
