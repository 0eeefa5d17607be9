package bulkhead

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestPolicyConfig(t *testing.T) {
	bad := []struct {
		name string
		cfg  Config
		want string
	}{
		{"workers and max", Config{Workers: 2, MaxWorkers: 4}, "not both"},
		{"min above max", Config{MinWorkers: 5, MaxWorkers: 4}, "more than MaxWorkers"},
		{"huge max", Config{MaxWorkers: 1 << 20}, "MaxWorkers"},
		{"negative queue", Config{MaxQueue: -1}, "MaxQueue"},
		{"huge queue", Config{MaxQueue: 1 << 30}, "MaxQueue"},
		{"unhealthy", Config{UnhealthyAfter: 5000}, "UnhealthyAfter"},
		{"signal", Config{DumpSignal: 99}, "DumpSignal"},
		{"memory", Config{MaxMemory: -1}, "MaxMemory"},
		{"replays", Config{MaxReplays: 101}, "MaxReplays"},
		{"idempotent", Config{Idempotent: []string{""}}, "Idempotent"},
		{"restart cap", Config{RestartDelay: time.Second, MaxRestartDelay: time.Millisecond}, "MaxRestartDelay"},
		{"term grace", Config{TermGrace: -1}, "TermGrace"},
		{"open files", Config{Limits: Limits{OpenFiles: 3}}, "OpenFiles"},
		{"address space", Config{Limits: Limits{AddressSpace: 1 << 20}}, "AddressSpace"},
		{"cpu", Config{Limits: Limits{CPUTime: -time.Second}}, "CPUTime"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Command = "true"
			_, err := tt.cfg.settings()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
	sizes := []struct {
		name               string
		cfg                Config
		min, max, maxQueue int
	}{
		{"default", Config{}, runtime.NumCPU(), runtime.NumCPU(), 1024 * runtime.NumCPU()},
		{"workers", Config{Workers: 3}, 3, 3, 3072},
		{"lazy", Config{MaxWorkers: 4}, 0, 4, 4096},
		{"min only", Config{MinWorkers: 2}, 2, 2, 2048},
		{"range", Config{MinWorkers: 1, MaxWorkers: 8, MaxQueue: 10}, 1, 8, 10},
	}
	for _, tt := range sizes {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Command = "true"
			s, err := tt.cfg.settings()
			if err != nil {
				t.Fatal(err)
			}
			if s.min != tt.min || s.max != tt.max || s.MaxQueue != tt.maxQueue {
				t.Fatalf("min %d max %d queue %d; want %d %d %d", s.min, s.max, s.MaxQueue, tt.min, tt.max, tt.maxQueue)
			}
			if s.MaxCalls != 0 || s.QuarantineAfter != 0 || s.monitored() || s.DumpSignal != syscall.SIGQUIT {
				t.Fatalf("a policy is on by default: %+v", s)
			}
		})
	}
}

// MinWorkers 0 starts nothing; queued calls start workers up to
// MaxWorkers; IdleTimeout shrinks the pool back.
func TestSizingLazyGrowShrink(t *testing.T) {
	clock := newClock()
	p, logs := testPool(t, Config{MaxWorkers: 3, IdleTimeout: time.Minute}, hooks{now: clock.now, noMonitor: true})
	if s := p.Stats(); s.Workers != 0 || s.Started != 0 || s.Starting != 0 {
		t.Fatalf("lazy pool started workers: %+v", s)
	}
	var gates []*gate
	var results []<-chan result
	for range 3 {
		g := newGate(t)
		gates = append(gates, g)
		results = append(results, callAsync(p, "gate", g.path))
		<-g.started // each call holds a worker: the next one must start another
	}
	pids := map[int]bool{}
	for i, g := range gates {
		g.open(t)
		r := <-results[i]
		if r.err != nil {
			t.Fatal(r.err)
		}
		pids[r.pid] = true
	}
	if len(pids) != 3 || p.Stats().Workers != 3 {
		t.Fatalf("pids %v, stats %+v: want 3 workers", pids, p.Stats())
	}
	clock.advance(30 * time.Second)
	p.sweep()
	if s := p.Stats(); s.Recycled != 0 {
		t.Fatalf("recycled before IdleTimeout: %+v", s)
	}
	clock.advance(time.Minute)
	p.sweep()
	logs.wait(t, "worker stopped", 3)
	s := p.Stats()
	if s.Workers != 0 || s.RecycledByReason["idle"] != 3 {
		t.Fatalf("after idle timeout: %+v", s)
	}
	if pidOf(t, p) == 0 { // and it starts again on demand
		t.Fatal("no pid")
	}
}

// A worker due for recycling serves its call in flight to the end; its
// replacement is ready before it goes.
func TestRecycleFinishesInFlightCall(t *testing.T) {
	p, logs := testPool(t, Config{Workers: 1, ConcurrencyPerWorker: 2, MaxCalls: 1}, hooks{}, "POLICY_CONC=2")
	g := newGate(t)
	inflight := callAsync(p, "gate", g.path)
	<-g.started
	old := pidOf(t, p) // completes: the worker is due
	rec := logs.wait(t, "worker recycled", 1)[0]
	if rec["reason"] != "calls" || rec["pid"] != int64(old) {
		t.Fatalf("recycle record %v", rec)
	}
	// The replacement serves new calls while the old worker drains.
	if pid := pidOf(t, p); pid == old {
		t.Fatalf("the recycled worker %d took a new call", old)
	}
	g.open(t)
	r := <-inflight
	if r.err != nil || r.pid != old {
		t.Fatalf("in-flight call on the recycled worker: pid %d, err %v; want %d, nil", r.pid, r.err, old)
	}
	// The replacement, recycled after its own single call, may stop
	// first; look for the old worker's record among the first two.
	found := false
	for n := 1; n <= 2 && !found; n++ {
		for _, rec := range logs.wait(t, "worker stopped", n) {
			found = found || rec["pid"] == int64(old)
		}
	}
	if !found {
		t.Fatalf("no stop record for the recycled worker %d", old)
	}
	if s := p.Stats(); s.CallCrashes+s.IdleCrashes != 0 || s.RecycledByReason["calls"] < 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestRecycleMaxCallsWithJitter(t *testing.T) {
	p, _ := testPool(t, Config{Workers: 1, MaxCalls: 3, MaxCallsJitter: 2}, hooks{})
	served := map[int]int{}
	var order []int
	// A recycled worker serves on until its replacement is up, so run
	// calls until three workers have served; none may fail.
	until(t, "two recycles", func() bool {
		pid := pidOf(t, p)
		if served[pid] == 0 {
			order = append(order, pid)
		}
		served[pid]++
		return len(served) >= 3
	})
	for _, pid := range order[:len(order)-1] {
		if served[pid] < 3 {
			t.Fatalf("worker %d recycled after %d calls, before MaxCalls: %v", pid, served[pid], served)
		}
	}
	if s := p.Stats(); s.RecycledByReason["calls"] < 2 || s.CallCrashes+s.IdleCrashes != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestRecycleLifetime(t *testing.T) {
	clock := newClock()
	p, logs := testPool(t, Config{Workers: 1, MaxLifetime: time.Hour}, hooks{now: clock.now, noMonitor: true})
	first := pidOf(t, p)
	clock.advance(59 * time.Minute)
	p.sweep()
	if pidOf(t, p) != first {
		t.Fatal("recycled before MaxLifetime")
	}
	clock.advance(2 * time.Minute)
	p.sweep() // idle, and the pool's only worker: replaced first
	if rec := logs.wait(t, "worker recycled", 1)[0]; rec["reason"] != "lifetime" || rec["pid"] != int64(first) {
		t.Fatalf("record %v", rec)
	}
	second := pidOf(t, p)
	if second == first {
		t.Fatal("old worker still serving")
	}
	clock.advance(2 * time.Hour)
	pidOf(t, p) // the age check also runs as a call ends
	if rec := logs.wait(t, "worker recycled", 2)[1]; rec["pid"] != int64(second) {
		t.Fatalf("record %v", rec)
	}
	if n := p.Stats().RecycledByReason["lifetime"]; n != 2 {
		t.Fatalf("lifetime recycles = %d", n)
	}
}

// A memory kill fails a call: it is a crash, logged and counted as one, not
// an INFO "worker recycled".
func TestMemoryLimitKillsMidCall(t *testing.T) {
	p, logs := testPool(t, Config{Workers: 1, MaxMemory: 64 << 20, MonitorInterval: 5 * time.Millisecond}, hooks{})
	pid := pidOf(t, p)
	_, err := p.Call(context.Background(), "grow")
	ce, ok := isCrash(err)
	if !ok || ce.Limit != LimitMemory || !errors.Is(err, ErrLimitExceeded) || !ce.Killed || ce.PID != pid || ce.RequestID == 0 {
		t.Fatalf("err = %v (%+v), want a memory-limit CrashError", err, ce)
	}
	if !strings.Contains(ce.Reason, "MaxMemory") {
		t.Fatalf("reason %q", ce.Reason)
	}
	if pidOf(t, p) == pid {
		t.Fatal("killed worker still serving")
	}
	s := p.Stats()
	if s.MemoryKills != 1 || s.RecycledByReason["memory"] != 1 || s.CallCrashes != 1 {
		t.Fatalf("stats %+v", s)
	}
	rec := logs.wait(t, "worker crashed", 1)[0]
	if rec["level"] != slog.LevelError || rec["limit"] != "memory" || rec["phase"] != "call" || rec["pid"] != int64(pid) {
		t.Fatalf("crash record %v", rec)
	}
	logs.mu.Lock()
	defer logs.mu.Unlock()
	for _, r := range logs.recs {
		if r["msg"] == "worker recycled" {
			t.Fatalf("a memory kill logged as a recycle: %v", r)
		}
	}
}

// The monitor finds a worker over MaxMemory mid-call, but the call ends
// before it acts: the call succeeds and the worker is recycled, not killed.
func TestMemoryLimitRaceWithCallEnd(t *testing.T) {
	g := newGate(t)
	var inflight <-chan result
	var got result
	h := hooks{
		noMonitor: true,
		rss:       func(int) (int64, error) { return 1 << 30, nil },
		overMemory: func(int) {
			g.open(t)
			got = <-inflight
		},
	}
	p, logs := testPool(t, Config{Workers: 1, MaxMemory: 64 << 20}, h)
	inflight = callAsync(p, "gate", g.path)
	<-g.started
	p.sweep()
	if got.err != nil || got.pid == 0 {
		t.Fatalf("call: %+v", got)
	}
	logs.wait(t, "worker stopped", 1)
	if s := p.Stats(); s.MemoryKills != 0 || s.RecycledByReason["memory"] != 1 || s.CallCrashes != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestHangEscalation(t *testing.T) {
	tests := []struct {
		name   string
		method string
		dump   syscall.Signal
		reason string
		signal syscall.Signal
		stack  bool
	}{
		{"stack dump", "hang", 0, "exited after quit", 0, true},
		{"heeds SIGTERM", "termexit", 0, "exited after SIGTERM", 0, false},
		{"ignores both", "hang", syscall.SIGCONT, "killed with SIGKILL", syscall.SIGKILL, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			term := 30 * time.Millisecond // "hang" ignores SIGTERM anyway
			if !tt.stack {
				term = 10 * time.Second // a bound: it exits at once
			}
			p, logs := testPool(t, Config{Workers: 1, TermGrace: term, DumpSignal: tt.dump, StderrTail: 256 << 10,
				DumpGrace: map[bool]time.Duration{true: 50 * time.Millisecond, false: 10 * time.Second}[tt.dump != 0]}, hooks{})
			pid := pidOf(t, p)
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			_, err := p.Call(ctx, tt.method)
			var ce *CanceledError
			if errors.As(err, &ce) {
				ce.Wait()
			}
			if !errors.As(err, &ce) || !errors.Is(err, context.DeadlineExceeded) || !ce.Started || ce.PID != pid || ce.RequestID == 0 {
				t.Fatalf("err = %v, want a started CanceledError", err)
			}
			if !strings.Contains(ce.Reason, tt.reason) || ce.Signal != tt.signal {
				t.Fatalf("reason %q signal %v; want %q, %v", ce.Reason, ce.Signal, tt.reason, tt.signal)
			}
			if tt.dump == 0 && tt.stack && (!strings.Contains(ce.Stack, "SIGQUIT") || !strings.Contains(ce.Stack, "goroutine ") || ce.ExitCode != 2) {
				t.Fatalf("no goroutine dump (exit %d): %q", ce.ExitCode, ce.Stack)
			}
			if !tt.stack && ce.Stack != "" {
				t.Fatalf("stack without a dump: %q", ce.Stack)
			}
			rec := logs.wait(t, "hung call: worker stopped", 1)[0]
			if rec["pid"] != int64(pid) || (tt.dump == 0 && tt.stack && !strings.Contains(rec["stack_tail"].(string), "goroutine ")) {
				t.Fatalf("log record %v", rec)
			}
			if pidOf(t, p) == pid || p.Stats().Hung != 1 {
				t.Fatalf("hung worker still serving, or stats %+v", p.Stats())
			}
		})
	}
}

// The deadline passes while the CALL sits unstarted in the worker, which
// starts it only once the dispatcher begins to stop it (at SIGTERM). Read
// at the deadline, the start marker would say "not started"; read once the
// worker is dead, it tells the truth.
func TestAbandonedCallStartedLate(t *testing.T) {
	p, _ := testPool(t, Config{Workers: 1, TermGrace: 50 * time.Millisecond, KillGrace: 100 * time.Millisecond, StderrTail: 256 << 10}, hooks{},
		"POLICY_START=late_start")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := p.Call(ctx, "anything")
	var ce *CanceledError
	if errors.As(err, &ce) {
		ce.Wait()
	}
	if !errors.As(err, &ce) || !ce.Started || !strings.Contains(ce.Stack, "goroutine ") {
		t.Fatalf("err = %v (%+v), want a started CanceledError with a stack", err, ce)
	}
}

func TestBackpressureMaxQueue(t *testing.T) {
	p, _ := testPool(t, Config{Workers: 1, MaxQueue: 1}, hooks{})
	g := newGate(t)
	first := callAsync(p, "gate", g.path)
	<-g.started
	queued := callAsync(p, "pid")
	until(t, "one queued call", func() bool { return p.Stats().Waiting == 1 })
	_, err := p.Call(context.Background(), "pid")
	var oe *OverloadedError
	if !errors.As(err, &oe) || !errors.Is(err, ErrOverloaded) || oe.Queued != 1 || oe.Method != "pid" {
		t.Fatalf("err = %v, want OverloadedError", err)
	}
	g.open(t)
	if r := <-first; r.err != nil {
		t.Fatal(r.err)
	}
	if r := <-queued; r.err != nil {
		t.Fatal(r.err)
	}
	if s := p.Stats(); s.Overloaded != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestBackpressureQueueTimeout(t *testing.T) {
	t.Run("times out", func(t *testing.T) {
		fire := make(chan time.Time, 1)
		p, _ := testPool(t, Config{Workers: 1, QueueTimeout: time.Hour},
			hooks{queueTimer: func() <-chan time.Time { return fire }})
		g := newGate(t)
		first := callAsync(p, "gate", g.path)
		<-g.started
		queued := callAsync(p, "pid")
		until(t, "one queued call", func() bool { return p.Stats().Waiting == 1 })
		fire <- time.Time{}
		r := <-queued
		var oe *OverloadedError
		if !errors.As(r.err, &oe) || oe.Waited != time.Hour {
			t.Fatalf("err = %v, want OverloadedError after QueueTimeout", r.err)
		}
		g.open(t)
		<-first
	})
	t.Run("granted as it times out", func(t *testing.T) {
		fire := make(chan time.Time, 1)
		g := newGate(t)
		var first <-chan result
		var p *Pool
		h := hooks{
			queueTimer: func() <-chan time.Time { return fire },
			timedOut: func() {
				// The worker frees up and is granted to the waiter
				// before it can take itself off the queue.
				g.open(t)
				<-first
				until(t, "the grant", func() bool { return p.Stats().Waiting == 0 })
			},
		}
		p, _ = testPool(t, Config{Workers: 1, QueueTimeout: time.Hour}, h)
		first = callAsync(p, "gate", g.path)
		<-g.started
		queued := callAsync(p, "pid")
		until(t, "one queued call", func() bool { return p.Stats().Waiting == 1 })
		fire <- time.Time{}
		if r := <-queued; r.err != nil || r.pid == 0 {
			t.Fatalf("granted call: %+v", r)
		}
		if s := p.Stats(); s.Overloaded != 0 || s.InFlight != 0 {
			t.Fatalf("stats %+v", s)
		}
	})
}

func TestCrashLoopUnhealthyThenHeals(t *testing.T) {
	heal := filepath.Join(t.TempDir(), "heal")
	p, logs := testPool(t, Config{MaxWorkers: 1, UnhealthyAfter: 3, RestartDelay: time.Millisecond,
		MaxRestartDelay: 20 * time.Millisecond, CrashLoopWindow: time.Hour}, hooks{},
		"POLICY_START=exit", "POLICY_HEAL="+heal)
	var ue *UnhealthyError
	for i := 0; ue == nil; i++ {
		_, err := p.Call(context.Background(), "pid")
		if errors.As(err, &ue) {
			break
		}
		if !errors.Is(err, ErrStartFailed) || i > 50 {
			t.Fatalf("call %d: %v, want StartError until unhealthy", i, err)
		}
	}
	var se *StartError
	if !errors.Is(ue, ErrUnhealthy) || errors.Is(ue, ErrStartFailed) || !errors.As(ue.Last, &se) || ue.Failures < 3 || ue.Method != "pid" {
		t.Fatalf("unhealthy error %+v", ue)
	}
	if s := p.Stats(); !s.Unhealthy {
		t.Fatalf("stats %+v", s)
	}
	logs.wait(t, "pool unhealthy: calls fail fast while one worker at a time is probed", 1)
	if err := os.WriteFile(heal, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	logs.wait(t, "pool half-open: a probe worker started; calls are admitted again", 1)
	if pidOf(t, p) == 0 {
		t.Fatal("no pid")
	}
	logs.wait(t, "pool healthy again", 1)
	if s := p.Stats(); s.Unhealthy || s.FailureStreak != 0 {
		t.Fatalf("stats after healing %+v", s)
	}
}

// The grading, with an injected clock: backoff doubles to its cap;
// failures spread wider than the window do not trip; a failure while
// half-open trips at once; a completed call resets.
func TestCrashLoopGrading(t *testing.T) {
	clock := newClock()
	cfg := Config{Command: "true", UnhealthyAfter: 3, RestartDelay: 10 * time.Millisecond,
		MaxRestartDelay: 50 * time.Millisecond, CrashLoopWindow: time.Minute}
	s, err := cfg.settings()
	if err != nil {
		t.Fatal(err)
	}
	s.Logger = slogDiscard()
	p := &Pool{cfg: s, hooks: hooks{now: clock.now}}
	p.loop.init(s.UnhealthyAfter)
	fail := errors.New("boom")
	want := []time.Duration{10, 20, 40, 50, 50}
	for i, w := range want {
		clock.advance(time.Minute) // spread out: never within the window
		if d := p.failureLocked(fail); d != w*time.Millisecond {
			t.Fatalf("failure %d: delay %v, want %v", i+1, d, w*time.Millisecond)
		}
		if p.loop.unhealthy {
			t.Fatalf("failure %d: unhealthy though failures are a minute apart", i+1)
		}
	}
	p.healedLocked()
	for i := range 3 {
		clock.advance(time.Second)
		p.failureLocked(fail)
		if p.loop.unhealthy != (i == 2) {
			t.Fatalf("failure %d within the window: unhealthy = %v", i+1, p.loop.unhealthy)
		}
	}
	p.halfOpenLocked(&workerProc{})
	if p.loop.unhealthy || !p.loop.halfOpen {
		t.Fatal("probe start did not half-open the pool")
	}
	clock.advance(time.Hour)
	p.failureLocked(fail)
	if !p.loop.unhealthy {
		t.Fatal("a failure while half-open did not trip at once")
	}
	p.halfOpenLocked(&workerProc{})
	p.healedLocked()
	if p.loop.unhealthy || p.loop.halfOpen || p.loop.streak != 0 || p.loop.delay(&p.cfg) != 0 {
		t.Fatalf("not healed: %+v", p.loop)
	}
}

func TestQuarantine(t *testing.T) {
	clock := newClock()
	p, logs := testPool(t, Config{Workers: 1, QuarantineAfter: 2, QuarantineWindow: time.Minute, QuarantineFor: time.Hour},
		hooks{now: clock.now, noMonitor: true})
	ctx := context.Background()
	for i := range 2 {
		if _, err := p.Call(ctx, "crash", "poison"); !errors.Is(err, ErrWorkerCrashed) {
			t.Fatalf("death %d: %v", i+1, err)
		}
	}
	_, err := p.Call(ctx, "crash", "poison")
	var qe *QuarantinedError
	var last *CrashError
	if !errors.As(err, &qe) || !errors.Is(err, ErrQuarantined) || errors.Is(err, ErrWorkerCrashed) ||
		qe.Deaths != 2 || !errors.As(qe.Last, &last) || last.PID == 0 || last.RequestID == 0 {
		t.Fatalf("err = %v (%+v), want QuarantinedError", err, qe)
	}
	logs.wait(t, "request quarantined", 1)
	if _, err := p.Call(ctx, "crash", "other"); !errors.Is(err, ErrWorkerCrashed) {
		t.Fatalf("other arguments: %v", err)
	}
	q := p.Quarantined()
	if len(q) != 1 || q[0].Method != "crash" || q[0].Deaths != 2 || !q[0].Until.Equal(clock.now().Add(time.Hour)) {
		t.Fatalf("Quarantined() = %+v", q)
	}
	if s := p.Stats(); s.Quarantined != 1 || s.Quarantines != 1 || s.QuarantineRefused != 1 {
		t.Fatalf("stats %+v", s)
	}
	clock.advance(time.Hour)
	if len(p.Quarantined()) != 0 {
		t.Fatal("expired entry still listed")
	}
	if _, err := p.Call(ctx, "crash", "poison"); !errors.Is(err, ErrWorkerCrashed) {
		t.Fatalf("after expiry: %v", err)
	}

	// A caller's key groups calls whatever their arguments.
	kctx := WithFingerprint(ctx, "tenant-7/report")
	p.Call(kctx, "crash", 1)
	p.Call(kctx, "crash", 2)
	if _, err := p.Call(kctx, "crash", 3); !errors.As(err, &qe) || qe.Key != "tenant-7/report" {
		t.Fatalf("keyed: %v", err)
	}
	var keyed QuarantineEntry
	for _, e := range p.Quarantined() {
		if e.Key == "tenant-7/report" {
			keyed = e
		}
	}
	if !p.Unquarantine(keyed) {
		t.Fatal("Unquarantine found nothing")
	}
	if _, err := p.Call(kctx, "crash", 4); !errors.Is(err, ErrWorkerCrashed) {
		t.Fatalf("after Unquarantine: %v", err)
	}
}

// Deaths spread wider than the window never quarantine.
func TestQuarantineWindow(t *testing.T) {
	clock := newClock()
	p, _ := testPool(t, Config{Workers: 1, QuarantineAfter: 2, QuarantineWindow: time.Minute},
		hooks{now: clock.now, noMonitor: true})
	for i := range 3 {
		clock.advance(2 * time.Minute)
		if _, err := p.Call(context.Background(), "crash", "slow-poison"); !errors.Is(err, ErrWorkerCrashed) {
			t.Fatalf("death %d: %v", i+1, err)
		}
	}
	if q := p.Quarantined(); len(q) != 0 {
		t.Fatalf("quarantined: %+v", q)
	}
}

func TestIdempotentReplay(t *testing.T) {
	p, _ := testPool(t, Config{Workers: 1, Idempotent: []string{"flaky", "crash"}, MaxReplays: 2}, hooks{})
	ctx := context.Background()
	dir := t.TempDir()
	r, err := p.Call(ctx, "flaky", filepath.Join(dir, "a"))
	var s string
	if err != nil || r.Decode(&s) != nil || s != "ok" {
		t.Fatalf("idempotent call after one crash: %v", err)
	}
	if st := p.Stats(); st.Replayed != 1 || st.CallCrashes != 1 {
		t.Fatalf("stats %+v", st)
	}
	_, err = p.Call(ctx, "crash")
	ce, ok := isCrash(err)
	if !ok || ce.Replays != 2 {
		t.Fatalf("err = %v (%+v), want a crash after 2 replays", err, ce)
	}
	// Not declared idempotent: never replayed.
	_, err = p.Call(ctx, "flaky-unsafe", filepath.Join(dir, "b"))
	if ce, ok := isCrash(err); !ok || ce.Replays != 0 {
		t.Fatalf("non-idempotent: %v", err)
	}
	if st := p.Stats(); st.Replayed != 3 {
		t.Fatalf("Replayed = %d, want 3", st.Replayed)
	}
}

func TestResourceLimits(t *testing.T) {
	t.Run("core dumps off", func(t *testing.T) {
		p, _ := testPool(t, Config{Workers: 1, Limits: Limits{CoreSize: -1, OpenFiles: 100}}, hooks{})
		r, err := p.Call(context.Background(), "limits")
		var s string
		if err != nil || r.Decode(&s) != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"Max core file size        0                    0", "Max open files            100                  100"} {
			if !strings.Contains(s, want) {
				t.Fatalf("limits lack %q:\n%s", want, s)
			}
		}
	})
	t.Run("open files", func(t *testing.T) {
		p, _ := testPool(t, Config{Workers: 1, Limits: Limits{OpenFiles: 64}}, hooks{})
		_, err := p.Call(context.Background(), "fds")
		if ce, ok := isCrash(err); !ok || ce.Limit != LimitOpenFiles || !errors.Is(err, ErrLimitExceeded) {
			t.Fatalf("err = %v, want an open-files limit crash", err)
		}
	})
	t.Run("cpu", func(t *testing.T) {
		p, _ := testPool(t, Config{Workers: 1, Limits: Limits{CPUTime: time.Second}}, hooks{})
		_, err := p.Call(context.Background(), "burn")
		ce, ok := isCrash(err)
		if !ok || ce.Limit != LimitCPU || ce.Signal != syscall.SIGKILL || ce.Killed || !strings.Contains(ce.Reason, "cpu limit") {
			t.Fatalf("err = %v (%+v), want a CPU limit crash", err, ce)
		}
		if testing.Verbose() {
			t.Logf("ok: %+v", ce)
		}
	})
}

func TestClassifyLimit(t *testing.T) {
	ru := func(sec int64) *syscall.Rusage { return &syscall.Rusage{Utime: syscall.Timeval{Sec: sec}} }
	tests := []struct {
		name   string
		l      Limits
		sig    syscall.Signal
		pool   bool
		ru     *syscall.Rusage
		stderr string
		want   Limit
	}{
		{"xcpu", Limits{CPUTime: time.Second}, syscall.SIGXCPU, false, nil, "", LimitCPU},
		{"cpu kill", Limits{CPUTime: 2 * time.Second}, syscall.SIGKILL, false, ru(1), "", LimitCPU},
		{"early kill", Limits{CPUTime: 2 * time.Second}, syscall.SIGKILL, false, ru(0), "", LimitNone},
		{"pool kill", Limits{CPUTime: time.Second}, syscall.SIGKILL, true, ru(5), "", LimitNone},
		{"no cpu limit", Limits{}, syscall.SIGXCPU, false, nil, "", LimitNone},
		{"go oom", Limits{AddressSpace: 1 << 30}, 0, false, nil, "fatal error: runtime: out of memory", LimitAddressSpace},
		{"malloc", Limits{AddressSpace: 1 << 30}, 0, false, nil, "native.Leak: malloc of 5 bytes failed", LimitAddressSpace},
		{"oom unlimited", Limits{}, 0, false, nil, "fatal error: runtime: out of memory", LimitNone},
		{"files", Limits{OpenFiles: 64}, 0, false, nil, "open x: too many open files", LimitOpenFiles},
		{"segv", Limits{AddressSpace: 1 << 30, OpenFiles: 64}, syscall.SIGSEGV, false, nil, "", LimitNone},
	}
	for _, tt := range tests {
		if got := classifyLimit(&tt.l, tt.sig, tt.pool, tt.ru, tt.stderr); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestReadRSS(t *testing.T) {
	n, err := readRSS(os.Getpid())
	if err != nil || n < 1<<20 {
		t.Fatalf("readRSS(self) = %d, %v", n, err)
	}
	if _, err := readRSS(1 << 30); err == nil {
		t.Fatal("readRSS of no process succeeded")
	}
}

// BenchmarkCallPolicies measures what the policies add to a call: compare
// "off" with the others (go test -bench CallPolicies -run ^$).
func BenchmarkCallPolicies(b *testing.B) {
	cases := []struct {
		name string
		cfg  Config
		ctx  context.Context
	}{
		{"off", Config{}, context.Background()},
		{"quarantine-hash", Config{QuarantineAfter: 3}, context.Background()},
		{"quarantine-key", Config{QuarantineAfter: 3}, WithFingerprint(context.Background(), "k")},
		{"recycle", Config{MaxCalls: 1 << 40, MaxLifetime: time.Hour, IdleTimeout: time.Hour}, context.Background()},
	}
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			cfg := c.cfg
			cfg.Workers, cfg.Command, cfg.Logger = 1, exe, slogDiscard()
			cfg.Env = HelperEnviron("policy")
			p, err := New(context.Background(), cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close(context.Background())
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.Call(c.ctx, "null", 42, "x"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
