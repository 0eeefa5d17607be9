package chaos

// merge adds the audit of one segment, r, to total.
func merge(total, r *Result) {
	ints := []struct{ dst, src *int }{
		{&total.Calls, &r.Calls}, {&total.AnsweredOnce, &r.AnsweredOnce}, {&total.Lost, &r.Lost},
		{&total.Duplicated, &r.Duplicated}, {&total.Misclassified, &r.Misclassified},
		{&total.LeakedFDs, &r.LeakedFDs}, {&total.LeakedGoroutines, &r.LeakedGoroutines},
		{&total.LeakedProcesses, &r.LeakedProcesses}, {&total.Zombies, &r.Zombies},
		{&total.SpuriousCrashes, &r.SpuriousCrashes}, {&total.CrashCountMismatch, &r.CrashCountMismatch},
		{&total.DispatcherCrashes, &r.DispatcherCrashes}, {&total.DispatcherHangs, &r.DispatcherHangs},
		{&total.Unaudited, &r.Unaudited}, {&total.Quarantined, &r.Quarantined},
		{&total.Succeeded, &r.Succeeded}, {&total.CanceledStarted, &r.CanceledStarted},
		{&total.CanceledNotStarted, &r.CanceledNotStarted}, {&total.CanceledQueued, &r.CanceledQueued}, {&total.CallCrashErrors, &r.CallCrashErrors},
		{&total.CrashedWhileCanceled, &r.CrashedWhileCanceled},
		{&total.JournalRecords, &r.JournalRecords}, {&total.FaultsFired, &r.FaultsFired},
		{&total.QuarantinedFingerprints, &r.QuarantinedFingerprints},
	}
	for _, f := range ints {
		*f.dst += *f.src
	}
	uints := []struct{ dst, src *uint64 }{
		{&total.CallCrashes, &r.CallCrashes}, {&total.IdleCrashes, &r.IdleCrashes},
		{&total.WorkersStarted, &r.WorkersStarted}, {&total.Recycled, &r.Recycled},
		{&total.MemoryKills, &r.MemoryKills}, {&total.Hung, &r.Hung}, {&total.Replayed, &r.Replayed},
		{&total.Redispatched, &r.Redispatched},
	}
	for _, f := range uints {
		*f.dst += *f.src
	}
	addMap(total.CrashRecords, r.CrashRecords)
	addMap(total.Faults, r.Faults)
	addMap(total.Outcomes, r.Outcomes)
	addMap(total.RecycledByReason, r.RecycledByReason)
	total.Truncated = total.Truncated || r.Truncated
	total.Seconds += r.Seconds
	for _, l := range []struct{ dst, src *[]string }{
		{&total.Examples, &r.Examples}, {&total.CrashRecordExamples, &r.CrashRecordExamples},
		{&total.DispatcherCrashExamples, &r.DispatcherCrashExamples},
	} {
		for _, e := range *l.src {
			total.example(l.dst, e)
		}
	}
}

func addMap[V int | uint64](dst, src map[string]V) {
	for k, v := range src {
		dst[k] += v
	}
}
