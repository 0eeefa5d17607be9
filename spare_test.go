package bulkhead

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func TestSpareConfig(t *testing.T) {
	tests := []struct {
		spares int
		ok     bool
	}{
		{-1, false},
		{0, true},
		{1, true},
		{maxSpares, true},
		{maxSpares + 1, false},
		{1 << 30, false},
	}
	for _, tt := range tests {
		cfg := Config{Command: "true", Workers: 1, Spares: tt.spares}
		s, err := cfg.settings()
		if tt.ok != (err == nil) {
			t.Fatalf("Spares %d: err = %v, want ok %v", tt.spares, err, tt.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "Config.Spares") {
			t.Fatalf("Spares %d: error %q does not name the field", tt.spares, err)
		}
		if err == nil && s.Spares != tt.spares {
			t.Fatalf("Spares %d: settings say %d", tt.spares, s.Spares)
		}
	}
}

// spareGate holds spare spawns before they launch while it is shut, so
// that a test can tell which processes exist.
type spareGate struct {
	once    sync.Once
	mu      sync.Mutex
	shut    bool
	open    chan struct{}
	blocked chan struct{} // receives once per spawn held
}

func newSpareGate() *spareGate {
	return &spareGate{open: make(chan struct{}), blocked: make(chan struct{}, 64)}
}

func (g *spareGate) hook(spare bool) {
	g.mu.Lock()
	shut := g.shut
	g.mu.Unlock()
	if spare && shut {
		g.blocked <- struct{}{}
		<-g.open
	}
}

func (g *spareGate) close() { g.mu.Lock(); g.shut = true; g.mu.Unlock() }
func (g *spareGate) release() {
	g.once.Do(func() { g.mu.Lock(); g.shut = false; g.mu.Unlock(); close(g.open) })
}

// held waits until a spare spawn is held. Bounded, not a sleep.
func (g *spareGate) held(t *testing.T) {
	t.Helper()
	select {
	case <-g.blocked:
	case <-time.After(20 * time.Second):
		t.Fatal("no spare spawn was started")
	}
}

func sparePIDs(p *Pool) (serving, spares []int) {
	for _, w := range p.Workers() {
		if w.Spare {
			spares = append(spares, w.PID)
		} else {
			serving = append(serving, w.PID)
		}
	}
	return serving, spares
}

func waitSpares(t *testing.T, p *Pool, n int) []int {
	t.Helper()
	until(t, "spares", func() bool { return p.Stats().Spares == n })
	_, spares := sparePIDs(p)
	return spares
}

// A crash is served by the promoted spare: the caller's next call runs on
// the spare's process while the spawn of the next spare is held before it
// launches anything, so no exec can have been on the caller's path. Then
// the spare is replenished.
func TestSparePromotedOnCrash(t *testing.T) {
	g := newSpareGate()
	p, logs := testPool(t, Config{Workers: 1, Spares: 1}, hooks{spawning: g.hook})
	spare := waitSpares(t, p, 1)[0]
	first := pidOf(t, p)
	if first == spare {
		t.Fatal("a call ran on the spare")
	}
	g.close()
	t.Cleanup(g.release) // before the pool's Close (cleanups run last first)
	started := p.Stats().Started

	_, err := p.Call(context.Background(), "crash")
	if ce, ok := isCrash(err); !ok || ce.Phase != PhaseCall || ce.PID != first {
		t.Fatalf("crash call: %v", err)
	}
	g.held(t) // the next spare's spawn is held
	if got := pidOf(t, p); got != spare {
		t.Fatalf("after the crash the call ran on pid %d, want the spare %d", got, spare)
	}
	s := p.Stats()
	if s.Promoted != 1 || s.Started != started || s.Workers != 1 || s.Spares != 0 || s.CallCrashes != 1 {
		t.Fatalf("stats after promotion: %+v (started before: %d)", s, started)
	}
	if s.Respawns != 1 {
		t.Fatalf("promotion not counted as a replacement: %+v", s)
	}
	logs.wait(t, "spare worker promoted", 1)

	g.release()
	next := waitSpares(t, p, 1)[0]
	if next == spare || next == first {
		t.Fatalf("replenished spare has pid %d (old spare %d, crashed %d)", next, spare, first)
	}
	if s := p.Stats(); s.Started != started+1 || s.Workers != 1 || s.FailureStreak != 0 {
		t.Fatalf("stats after replenishing: %+v", s)
	}
	if got := pidOf(t, p); got != spare {
		t.Fatalf("call ran on pid %d, want the promoted spare %d", got, spare)
	}
}

// A spare that dies while waiting is replaced; its death counts as an idle
// crash (a worker that cannot stay up idle is failing, spare or not), and
// the serving worker is untouched.
func TestSpareIdleCrash(t *testing.T) {
	p, logs := testPool(t, Config{Workers: 1, Spares: 1}, hooks{})
	spare := waitSpares(t, p, 1)[0]
	serving := pidOf(t, p)
	if err := syscall.Kill(spare, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	rec := logs.wait(t, "worker crashed", 1)[0]
	if rec["spare"] != true || rec["phase"] != "idle" {
		t.Fatalf("crash record %v", rec)
	}
	until(t, "a new spare", func() bool {
		_, s := sparePIDs(p)
		return len(s) == 1 && s[0] != spare
	})
	if s := p.Stats(); s.IdleCrashes != 1 || s.FailureStreak != 1 || s.Promoted != 0 || s.Workers != 1 {
		t.Fatalf("stats %+v", s)
	}
	if got := pidOf(t, p); got != serving {
		t.Fatalf("serving worker changed: %d, want %d", got, serving)
	}
	if s := p.Stats(); s.FailureStreak != 0 {
		t.Fatalf("a completed call did not reset the streak: %+v", s)
	}
}

// Close stops spares and a spare spawn under way; the test's leak checks
// (processes, zombies, descriptors, goroutines) cover what is left.
func TestSparesClose(t *testing.T) {
	g := newSpareGate()
	p, logs := testPool(t, Config{Workers: 2, Spares: 2}, hooks{spawning: g.hook})
	waitSpares(t, p, 2)
	// New returns once one worker is ready: wait for the second, or the
	// spawn held below may be its, not the lost spare's.
	until(t, "both serving workers", func() bool { return p.Stats().Workers == 2 })
	pidOf(t, p)
	g.close()
	// Lose one spare: its replacement's spawn is held when Close starts.
	_, spares := sparePIDs(p)
	if err := syscall.Kill(spares[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	g.held(t)
	closed := make(chan error, 1)
	go func() { closed <- p.Close(context.Background()) }()
	until(t, "Close to begin", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.closed
	})
	g.release()
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if n := len(logs.wait(t, "worker stopped", 3)); n != 3 {
		t.Fatalf("%d workers stopped, want 2 serving + 1 spare", n)
	}
	if kids := children(); len(kids) > 0 {
		t.Fatalf("children after Close: %v", kids)
	}
}

// A recycled worker is replaced by a spare at once.
func TestSpareRecycle(t *testing.T) {
	p, _ := testPool(t, Config{Workers: 1, Spares: 1, MaxCalls: 1}, hooks{})
	spare := waitSpares(t, p, 1)[0]
	first := pidOf(t, p) // its only call: recycled as it ends
	if got := pidOf(t, p); got != spare || got == first {
		t.Fatalf("after recycling the call ran on %d, want the spare %d", got, spare)
	}
	if s := p.Stats(); s.Promoted < 1 || s.RecycledByReason["calls"] < 1 {
		t.Fatalf("stats %+v", s)
	}
}

// A lazy pool (MinWorkers 0) keeps its spare from the start: the first
// call runs on it.
func TestSpareLazyFirstCall(t *testing.T) {
	p, _ := testPool(t, Config{MaxWorkers: 1, Spares: 1}, hooks{})
	if s := p.Stats(); s.Workers != 0 {
		t.Fatalf("lazy pool started a serving worker: %+v", s)
	}
	spare := waitSpares(t, p, 1)[0]
	if got := pidOf(t, p); got != spare {
		t.Fatalf("first call ran on %d, want the spare %d", got, spare)
	}
	waitSpares(t, p, 1)
	if s := p.Stats(); s.Workers != 1 || s.Promoted != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// Spares run without the worker-side idle timeout, whatever Config.Env
// says: waiting to be promoted is not idleness.
func TestSpareNoWorkerIdleTimeout(t *testing.T) {
	p, _ := testPool(t, Config{Workers: 1, Spares: 1}, hooks{}, "BULKHEAD_IDLE_TIMEOUT_MS=3600000")
	waitSpares(t, p, 1)
	getenv := func() string {
		r, err := p.Call(context.Background(), "getenv", "BULKHEAD_IDLE_TIMEOUT_MS")
		if err != nil {
			t.Fatal(err)
		}
		var v string
		if err := r.Decode(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	if v := getenv(); v != "3600000" {
		t.Fatalf("serving worker's idle timeout %q", v)
	}
	if _, err := p.Call(context.Background(), "crash"); err == nil {
		t.Fatal("crash call succeeded")
	}
	if v := getenv(); v != "0" {
		t.Fatalf("promoted spare's idle timeout %q, want 0", v)
	}
}

// While the pool is unhealthy no spares are started (the probe alone tests
// the command); once it heals the spares come back.
func TestSpareUnhealthy(t *testing.T) {
	heal := filepath.Join(t.TempDir(), "heal")
	p, logs := testPool(t, Config{MaxWorkers: 1, Spares: 2, UnhealthyAfter: 3, RestartDelay: time.Millisecond,
		MaxRestartDelay: 20 * time.Millisecond, CrashLoopWindow: time.Hour}, hooks{},
		"POLICY_START=exit", "POLICY_HEAL="+heal)
	logs.wait(t, "pool unhealthy: calls fail fast while one worker at a time is probed", 1)
	until(t, "spare spawns to stop", func() bool {
		s := p.Stats()
		return s.Starting <= 1
	})
	var ue *UnhealthyError
	if _, err := p.Call(context.Background(), "pid"); !errors.As(err, &ue) {
		t.Fatalf("call while unhealthy: %v", err)
	}
	if err := os.WriteFile(heal, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	logs.wait(t, "pool half-open: a probe worker started; calls are admitted again", 1)
	if pidOf(t, p) == 0 {
		t.Fatal("no pid")
	}
	waitSpares(t, p, 2)
	if s := p.Stats(); s.Unhealthy || s.Workers != 1 {
		t.Fatalf("stats after healing %+v", s)
	}
}

// A spare that says HELLO while a caller waits for a serving spawn serves
// it at once; the serving spawn, when it is ready, becomes the spare.
func TestSpareArrivesBeforeServingSpawn(t *testing.T) {
	spareG, servingG := newSpareGate(), newSpareGate()
	spareG.close()
	servingG.close()
	t.Cleanup(spareG.release)
	t.Cleanup(servingG.release)
	h := hooks{spawning: func(spare bool) {
		if spare {
			spareG.hook(true)
		} else {
			servingG.hook(true)
		}
	}}
	p, _ := testPool(t, Config{MaxWorkers: 1, Spares: 1}, h)
	spareG.held(t) // New's spare
	res := callAsync(p, "pid")
	servingG.held(t) // the queued call's spawn
	spareG.release()
	r := <-res
	if r.err != nil {
		t.Fatal(r.err)
	}
	if s := p.Stats(); s.Promoted != 1 || s.Workers != 1 || s.Spares != 0 || s.Started != 1 {
		t.Fatalf("stats after the spare served: %+v", s)
	}
	servingG.release()
	spares := waitSpares(t, p, 1)
	if spares[0] == r.pid {
		t.Fatalf("pid %d is both the spare and the serving worker", r.pid)
	}
	if s := p.Stats(); s.Workers != 1 || s.Started != 2 || s.Starting != 0 {
		t.Fatalf("stats after the serving spawn became the spare: %+v", s)
	}
	if got := pidOf(t, p); got != r.pid {
		t.Fatalf("call ran on %d, want %d", got, r.pid)
	}
}

// BenchmarkCrashToCall is crash -> a null call succeeds again on a
// one-worker pool: a replacement process is started while the caller waits.
func BenchmarkCrashToCall(b *testing.B) { benchCrashToCall(b, 0) }

// BenchmarkCrashToCallSpare is the same with a warm spare, which is
// promoted; the timer stops while the next spare starts.
func BenchmarkCrashToCallSpare(b *testing.B) { benchCrashToCall(b, 1) }

func benchCrashToCall(b *testing.B, spares int) {
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	p, err := New(ctx, Config{Command: exe, Env: HelperEnviron("policy"), Workers: 1, Spares: spares,
		Logger: slogDiscard()})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close(ctx)
	var crashT, nullT time.Duration
	n := 0
	for b.Loop() {
		if spares > 0 {
			b.StopTimer()
			for p.Stats().Spares < spares {
				runtime.Gosched()
			}
			b.StartTimer()
		}
		t0 := time.Now()
		if _, err := p.Call(ctx, "crash"); err == nil {
			b.Fatal("crash call succeeded")
		}
		t1 := time.Now()
		if _, err := p.Call(ctx, "null"); err != nil {
			b.Fatal(err)
		}
		crashT += t1.Sub(t0)
		nullT += time.Since(t1)
		n++
	}
	b.ReportMetric(float64(crashT.Microseconds())/float64(n), "crash-us")
	b.ReportMetric(float64(nullT.Microseconds())/float64(n), "null-us")
}

// A worker lost under a call is replaced as soon as the caller sees its
// connection break; and an orphan holding the worker's stderr (KillGrace is
// an hour) delays neither the reaping nor the call's *CrashError: the
// worker's output is drained when the pidfd says it died, not waited for.
func TestReplacementStartsBeforeReap(t *testing.T) {
	var armed sync.Mutex
	arm := false
	spawned := make(chan struct{}, 8)
	h := hooks{spawning: func(bool) {
		armed.Lock()
		defer armed.Unlock()
		if arm {
			spawned <- struct{}{}
		}
	}}
	p, _ := testPool(t, Config{Workers: 1, KillGrace: time.Hour}, h)
	pidOf(t, p)
	armed.Lock()
	arm = true
	armed.Unlock()
	path := filepath.Join(t.TempDir(), "orphan")
	t.Cleanup(func() { // on failure too, before the pool's Close, which waits for the reaping
		if b, err := os.ReadFile(path); err == nil {
			if pid, err := strconv.Atoi(string(b)); err == nil {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	res := callAsync(p, "orphan", path)
	select {
	case <-spawned:
	case <-time.After(20 * time.Second):
		t.Fatal("no replacement spawn")
	}
	var r result
	select {
	case r = <-res:
	case <-time.After(20 * time.Second):
		t.Fatal("the call waited for the orphan that holds the worker's stderr")
	}
	if r.err == nil {
		t.Fatal("orphan call succeeded")
	} else if ce, ok := isCrash(r.err); !ok || ce.Phase != PhaseCall {
		t.Fatalf("orphan call: %v", r.err)
	}
	if pidOf(t, p) == 0 {
		t.Fatal("no pid")
	}
	if s := p.Stats(); s.Respawns != 1 || s.CallCrashes != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// Whatever way a serving worker leaves, the spare takes its place.
func TestSparePromotedOnEveryLoss(t *testing.T) {
	var serving atomic.Int64
	rss := func(pid int) (int64, error) {
		if int64(pid) == serving.Load() {
			return 1 << 40, nil
		}
		return 1 << 20, nil
	}
	tests := []struct {
		name string
		cfg  Config
		lose func(t *testing.T, p *Pool, logs *records, pid int)
	}{
		{"crash during a call", Config{}, func(t *testing.T, p *Pool, _ *records, _ int) {
			if _, err := p.Call(context.Background(), "crash"); err == nil {
				t.Fatal("crash call succeeded")
			}
		}},
		{"death between calls", Config{}, func(t *testing.T, p *Pool, logs *records, pid int) {
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			logs.wait(t, "worker crashed", 1)
		}},
		{"abandoned call", Config{TermGrace: 10 * time.Second}, func(t *testing.T, p *Pool, _ *records, _ int) {
			g := newGate(t)
			ctx, cancel := context.WithCancel(context.Background())
			res := make(chan error, 1)
			go func() { _, err := p.Call(ctx, "gate", g.path); res <- err }()
			<-g.started
			if g.w != nil {
				defer g.w.Close()
			}
			cancel()
			var ce *CanceledError
			if err := <-res; !errors.As(err, &ce) {
				t.Fatalf("gate call: %v", err)
			}
		}},
		{"memory", Config{MaxMemory: 1 << 30}, func(t *testing.T, p *Pool, logs *records, _ int) {
			p.sweep()
			logs.wait(t, "worker stopped", 1)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Workers, tt.cfg.Spares = 1, 1
			p, logs := testPool(t, tt.cfg, hooks{rss: rss, noMonitor: true})
			spare := waitSpares(t, p, 1)[0]
			pid := pidOf(t, p)
			serving.Store(int64(pid))
			tt.lose(t, p, logs, pid)
			if got := pidOf(t, p); got != spare {
				t.Fatalf("after the loss the call ran on %d, want the spare %d", got, spare)
			}
			if s := p.Stats(); s.Promoted != 1 {
				t.Fatalf("stats %+v", s)
			}
			waitSpares(t, p, 1)
		})
	}
}
