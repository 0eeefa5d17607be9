package chaos

// Result is the audit of a soak. The first keys are the invariants: each
// must be 0, and AnsweredOnce must equal Calls.
type Result struct {
	Calls            int `json:"calls"`
	AnsweredOnce     int `json:"answered_once"`
	Lost             int `json:"lost"`
	Duplicated       int `json:"duplicated"`
	Misclassified    int `json:"misclassified"`
	LeakedFDs        int `json:"leaked_fds"`
	LeakedGoroutines int `json:"leaked_goroutines"`
	LeakedProcesses  int `json:"leaked_processes"`
	Zombies          int `json:"zombies"`
	// SpuriousCrashes counts call-phase *CrashErrors for calls whose
	// fault no worker fired: the worker did not crash, lie or get killed
	// for the call's own doing.
	SpuriousCrashes int `json:"spurious_crashes"`
	// CrashCountMismatch is how far Stats().CallCrashes is from what the
	// callers saw (CallCrashErrors + Replayed), plus how far the pool's
	// "worker crashed" phase=call log records are from Stats().CallCrashes.
	CrashCountMismatch int `json:"crash_count_mismatch"`
	// DispatcherCrashes counts child processes running the pool (the
	// driver, Isolate) that died: a panic, a fatal error, a signal.
	// DispatcherHangs counts those that did not finish in time and were
	// stopped with SIGQUIT (a goroutine dump). Their calls are Unaudited.
	DispatcherCrashes int `json:"dispatcher_crashes"`
	// StoppedBeforeEffect counts canceled calls reported Started whose
	// worker was stopped between marking them started and their first
	// effect (the journal record): Started is conservative there, as the
	// start marker is by design ("it may have run"), never the unsafe
	// opposite. Not an invariant.
	StoppedBeforeEffect int `json:"stopped_before_effect"`
	// Collateral counts calls lost with a worker that the pool stopped
	// for another call's cancellation (CrashError.AbandonedBy): with
	// Config.Pipeline, or a worker that runs calls at once, a call may
	// already be on a worker that is stopped for its neighbour. Not an
	// invariant; the default soak, which has neither, sees none.
	Collateral      int `json:"collateral"`
	DispatcherHangs int `json:"dispatcher_hangs"`
	Unaudited       int `json:"unaudited"`
	// Quarantined counts poison calls refused by quarantine, without
	// reaching a worker.
	Quarantined int  `json:"quarantined"`
	OK          bool `json:"ok"`
	// Planned is the calls asked for; Calls is the calls issued and
	// audited, fewer if Timeout cut the run short (Truncated) or a
	// dispatcher died (Unaudited).
	Planned   int  `json:"planned"`
	Truncated bool `json:"truncated,omitempty"`

	// What callers were told, beyond Outcomes: successes with the right
	// result; *CanceledError after Wait, started or not; call-phase
	// *CrashErrors other than memory kills (which the pool counts as
	// recycles, not crashes).
	Succeeded          int `json:"succeeded"`
	CanceledStarted    int `json:"canceled_started"`
	CanceledNotStarted int `json:"canceled_not_started"`
	CanceledQueued     int `json:"canceled_queued"` // of CanceledNotStarted: never sent to a worker (PID 0)
	CallCrashErrors    int `json:"call_crash_errors"`
	// The pool's own count of workers that died during a call, and its
	// "worker crashed" log records by phase (counted by a slog handler).
	CallCrashes  uint64         `json:"call_crashes"`
	IdleCrashes  uint64         `json:"idle_crashes"`
	CrashRecords map[string]int `json:"crash_records"`
	// CrashedWhileCanceled counts call-phase crash records for calls
	// whose caller got a *CanceledError while the worker died of the
	// call's own fault (it fired): not a mismatch.
	CrashedWhileCanceled int `json:"crashed_while_canceled"`

	Faults                  map[string]int    `json:"faults"`
	Outcomes                map[string]int    `json:"outcomes"`
	JournalRecords          int               `json:"journal_records"`
	FaultsFired             int               `json:"faults_fired"`
	QuarantinedFingerprints int               `json:"quarantined_fingerprints"`
	WorkersStarted          uint64            `json:"workers_started"`
	Recycled                uint64            `json:"recycled"`
	RecycledByReason        map[string]uint64 `json:"recycled_by_reason"`
	MemoryKills             uint64            `json:"memory_kills"`
	Hung                    uint64            `json:"hung"`
	Replayed                uint64            `json:"replayed"`
	Redispatched            uint64            `json:"redispatched"`
	Workers                 int               `json:"workers"`
	Callers                 int               `json:"callers"`
	FaultRate               float64           `json:"fault_rate"`
	Seed                    uint64            `json:"seed"`
	Transport               string            `json:"transport"`
	DeadlineRace            bool              `json:"deadline_race"`
	WorkMS                  float64           `json:"work_ms,omitempty"`
	DeadlineMinMS           float64           `json:"deadline_min_ms,omitempty"`
	DeadlineMaxMS           float64           `json:"deadline_max_ms,omitempty"`
	// Segments is how many driver processes ran the pool (Isolate); 0
	// when it ran in the soak's own process.
	Segments       int     `json:"segments"`
	Seconds        float64 `json:"seconds"`
	CallsPerSecond float64 `json:"calls_per_second"`

	Examples                []string `json:"misclassified_examples,omitempty"`
	CrashRecordExamples     []string `json:"crash_record_examples,omitempty"`
	DispatcherCrashExamples []string `json:"dispatcher_crash_examples,omitempty"`
}

// maxExamples bounds each list of examples.
const maxExamples = 10

func newResult(o *Options) *Result {
	r := &Result{Calls: o.Calls, Planned: o.Calls, Workers: o.Workers, Callers: o.Callers,
		FaultRate: o.FaultRate, Seed: o.Seed, Transport: o.Transport, DeadlineRace: o.Race.Enabled,
		Faults: map[string]int{}, Outcomes: map[string]int{}, CrashRecords: map[string]int{},
		RecycledByReason: map[string]uint64{}}
	if o.Race.Enabled {
		r.WorkMS = ms(o.Race.Work.Seconds())
		r.DeadlineMinMS = ms(o.Race.DeadlineMin.Seconds())
		r.DeadlineMaxMS = ms(o.Race.DeadlineMax.Seconds())
	}
	return r
}

func ms(seconds float64) float64 { return seconds * 1000 }

// ok reports whether every invariant holds.
func (r *Result) ok() bool {
	return !r.Truncated && r.AnsweredOnce == r.Calls && r.Lost == 0 && r.Duplicated == 0 &&
		r.Misclassified == 0 && r.SpuriousCrashes == 0 && r.CrashCountMismatch == 0 &&
		r.DispatcherCrashes == 0 && r.DispatcherHangs == 0 && r.Unaudited == 0 &&
		r.LeakedFDs == 0 && r.LeakedGoroutines == 0 && r.LeakedProcesses == 0 && r.Zombies == 0
}

func (r *Result) example(list *[]string, s string) {
	if len(*list) < maxExamples {
		*list = append(*list, s)
	}
}
