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
	fmt.Fprintf(w, "%s: %d calls in %.1fs (%.0f/s), %d workers, %d callers, fault rate %.2f, seed %d, transport %s\n",
		verdict, r.Calls, r.Seconds, r.CallsPerSecond, r.Workers, r.Callers, r.FaultRate, r.Seed, r.Transport)
	if r.DeadlineRace {
		fmt.Fprintf(w, "deadline race: work %.2fms, deadlines %.2f to %.2fms\n", r.WorkMS, r.DeadlineMinMS, r.DeadlineMaxMS)
	}
	fmt.Fprintf(w, "answered once %d, lost %d, duplicated %d, misclassified %d, spurious crashes %d, crash count mismatch %d\n",
		r.AnsweredOnce, r.Lost, r.Duplicated, r.Misclassified, r.SpuriousCrashes, r.CrashCountMismatch)
	fmt.Fprintf(w, "dispatcher crashes %d, hangs %d (segments %d, unaudited calls %d)\n",
		r.DispatcherCrashes, r.DispatcherHangs, r.Segments, r.Unaudited)
	fmt.Fprintf(w, "leaked: fds %d, goroutines %d, processes %d, zombies %d\n", r.LeakedFDs, r.LeakedGoroutines, r.LeakedProcesses, r.Zombies)
	fmt.Fprintf(w, "succeeded %d, canceled started %d, canceled not started %d (%d in the queue), call crash errors %d (stats %d, records %v)\n",
		r.Succeeded, r.CanceledStarted, r.CanceledNotStarted, r.CanceledQueued, r.CallCrashErrors, r.CallCrashes, r.CrashRecords)
	fmt.Fprintf(w, "workers started %d, recycled %d %v, memory kills %d, hung %d, replayed %d, quarantined calls %d (%d fingerprints)\n",
		r.WorkersStarted, r.Recycled, r.RecycledByReason, r.MemoryKills, r.Hung, r.Replayed, r.Quarantined, r.QuarantinedFingerprints)
	for _, e := range r.Examples {
		fmt.Fprintln(w, "  ", e)
	}
	for _, e := range r.CrashRecordExamples {
		fmt.Fprintln(w, "   record:", e)
	}
	for _, e := range r.DispatcherCrashExamples {
		fmt.Fprintln(w, "   dispatcher:", e)
	}
}
