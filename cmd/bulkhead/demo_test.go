package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/examples/crashy"
	"github.com/bulkhead-go/bulkhead/examples/crashy/native"
	"github.com/bulkhead-go/bulkhead/internal/testutil"
	"golang.org/x/sys/unix"
)

func TestDemoFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string // in stderr
	}{
		{"negative calls", []string{"--calls", "-1"}, "--calls -1"},
		{"zero calls", []string{"--calls", "0"}, "--calls 0"},
		{"too many calls", []string{"--calls", "1000001"}, "--calls 1000001"},
		{"calls not a number", []string{"--calls", "many"}, "invalid argument"},
		{"crash rate over 1", []string{"--crash-rate", "1.5"}, "--crash-rate 1.5"},
		{"negative crash rate", []string{"--crash-rate", "-0.1"}, "--crash-rate -0.1"},
		{"NaN crash rate", []string{"--crash-rate", "NaN"}, "--crash-rate NaN"},
		{"idle rate over 1", []string{"--idle-crash-rate", "2"}, "--idle-crash-rate"},
		{"start-up rate over 0.5", []string{"--startup-crash-rate", "0.6"}, "--startup-crash-rate"},
		{"zero workers", []string{"--workers", "0"}, "--workers 0"},
		{"one node", []string{"--nodes", "1"}, "--nodes 1"},
		{"too many nodes", []string{"--nodes", "17"}, "--nodes 17"},
		{"nodes and shm", []string{"--nodes", "3", "--transport", "shm"}, "in-process pool"},
		{"nodes and a stall under their timeout", []string{"--nodes", "3", "--stall", "500ms"}, "--timeout 1s"},
		{"too many workers", []string{"--workers", "1025"}, "--workers 1025"},
		{"zero concurrency", []string{"--concurrency", "0"}, "--concurrency 0"},
		{"negative recycle", []string{"--recycle-after", "-1"}, "--recycle-after -1"},
		{"zero timeout", []string{"--timeout", "0s"}, "--timeout"},
		{"huge timeout", []string{"--timeout", "11m"}, "--timeout"},
		{"bad duration", []string{"--timeout", "soon"}, "invalid argument"},
		{"zero kill grace", []string{"--kill-grace", "0s"}, "--kill-grace"},
		{"stall not over timeout", []string{"--timeout", "1s", "--stall", "1s"}, "--stall"},
		{"negative progress", []string{"--progress-every", "-1s"}, "--progress-every"},
		{"unknown flag", []string{"--bogus"}, "unknown flag: --bogus"},
		{"unknown transport", []string{"--transport", "pigeon"}, `--transport "pigeon"`},
		{"unknown sandbox", []string{"--sandbox", "loose"}, `--sandbox "loose"`},
		{"positional argument", []string{"extra"}, "takes no arguments"},
		{"two errors at once", []string{"--calls", "-1", "--workers", "0"}, "--workers 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errs := run(t, append([]string{"demo"}, tt.args...)...)
			if code != 2 || !strings.Contains(errs, tt.want) || out != "" {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit 2, no stdout, and %q", code, out, errs, tt.want)
			}
			if !strings.Contains(errs, "bulkhead demo --help") {
				t.Errorf("stderr %q does not point to --help", errs)
			}
		})
	}
	code, out, _ := run(t, "demo", "--help")
	if code != 0 || !strings.Contains(out, "--crash-rate") || !strings.Contains(out, "(default 100ms; 1s with --nodes") {
		t.Errorf("demo --help: exit %d, %q; want --crash-rate and --timeout's two defaults", code, out)
	}
}

// A short run with a high crash rate, over each transport: every invariant
// of the summary holds.
func TestDemoShortRun(t *testing.T) {
	for _, transport := range []string{"socket", "shm"} {
		t.Run(transport, func(t *testing.T) { testShortRun(t, transport) })
	}
	t.Run("sandbox-strict", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("--sandbox strict gives each worker a cgroup, which needs root here")
		}
		testShortRun(t, "socket", "--sandbox", "strict")
	})
}

func testShortRun(t *testing.T, transport string, extra ...string) {
	checkLeaks(t)
	args := append([]string{"demo", "--calls", "300", "--crash-rate", "0.05", "--workers", "2", "--transport", transport, "--json", "--quiet"}, extra...)
	code, out, errs := run(t, args...)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	var s summary
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		t.Fatalf("stdout is not one summary object: %v\n%s", err, out)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"calls", "ok", "crashed", "timeouts", "lost", "duplicated", "p50_us", "p99_us", "respawn_p50_us", "redispatched"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON has no %q key", k)
		}
	}
	check := func(ok bool, what string) {
		t.Helper()
		if !ok {
			t.Errorf("%s\n%s", what, out)
		}
	}
	check(s.Calls == 300 && s.Requested == 300, "calls != 300")
	check(s.Lost == 0 && s.Duplicated == 0 && s.Wrong == 0 && s.Clean, "lost, duplicated or wrong")
	check(s.OK+s.Crashed+s.Timeouts+s.NoWorker+s.Refused.total()+s.Errors == s.Calls, "outcomes do not add up to calls")
	check(s.Errors == 0, "errors other than crashes, timeouts and failed starts")
	check(s.OK > 0 && s.Crashed > 0, "want both ok and crashed calls at a 5% crash rate")
	k := s.CrashedByKind
	check(k.Segv+k.Abort+k.Exit == s.Crashed && k.Other == 0, "crashes of an unknown kind")
	check(s.MaxStarts == 1, "no call journalled exactly once?")
	check(s.TimeoutsStarted+s.TimeoutsWaiting == s.Timeouts, "timeouts do not add up")
	// Every injected hang is stopped as hung; a started call can also time
	// out otherwise (its worker crashed just as its deadline passed, and it
	// returned before the reaping), which is no hang.
	check(uint64(s.TimeoutsHang) <= s.Hung && s.Hung <= uint64(s.TimeoutsStarted),
		"Stats.Hung is not between the injected hangs and the timed-out calls a worker had started")
	check(s.TimeoutsHang <= s.TimeoutsStarted && s.TimeoutsHang <= s.FaultsInjected.Call.Hang, "more hang timeouts than hangs")
	check(0 < s.P50us && s.P50us <= s.P99us, "latency percentiles")
	check(s.WorkersStarted >= 2 && s.Respawns > 0 && s.RespawnP50 > 0, "no replacement measured")
	check(!s.Interrupted && !s.Stalled && s.PoolStartAttempts >= 1 && s.Transport == transport, "run state")
}

// The human summary names every check and says the run was clean.
func TestDemoText(t *testing.T) {
	checkLeaks(t)
	code, out, errs := run(t, "demo", "--calls", "100", "--crash-rate", "0.05", "--workers", "2", "--progress-every", "1ms")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	for _, want := range []string{"ok ", "crashed ", "timeouts ", "lost ", "duplicated ", "latency ", "respawn p50 ", "redispatched ", "no call lost"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	// Not a terminal: whole progress lines, the last one complete.
	lines := strings.Split(strings.TrimSpace(errs), "\n")
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, "100/100 calls") || strings.Contains(errs, "\r") {
		t.Errorf("progress on stderr: %q", errs)
	}
}

// The cluster demo's text summary gives the calls per node sorted, for
// people, not as a Go map.
func TestClusterDemoTextPerNode(t *testing.T) {
	cs := &clusterSummary{summary: &summary{}, Nodes: 3, NodesUsed: 3,
		CallsPerNode: map[string]int{"node2": 888, "node0": 322, "node1": 780}}
	var b strings.Builder
	cs.writeText(&b)
	if want := "nodes used     3 of 3; calls started per node: node0 322, node1 780, node2 888\n"; !strings.Contains(b.String(), want) {
		t.Errorf("summary lacks %q:\n%s", want, b.String())
	}
}

// The checks can fail: a journal that shows a call started twice, or a
// success no worker started, or a call never answered, is caught.
func TestTallyCatches(t *testing.T) {
	cfg := demoConfig{calls: 4, workers: 1, concurrency: 1}
	newRun := func() *demoRun {
		r := &demoRun{cfg: cfg, status: make([]atomic.Uint32, cfg.calls+1), result: make([]callResult, cfg.calls+1)}
		for id := 1; id <= cfg.calls; id++ {
			r.status[id].Store(statusDone)
			r.result[id] = callResult{out: outOK}
		}
		return r
	}
	started := func(ids ...uint64) []crashy.Record {
		var recs []crashy.Record
		for _, id := range ids {
			recs = append(recs, crashy.Record{Kind: crashy.KindCall, ID: id, PID: 1})
		}
		return recs
	}
	tests := []struct {
		name     string
		setup    func(r *demoRun)
		journals [][]crashy.Record
		lost     int
		dup      int
		wrong    int
	}{
		{"clean", nil, [][]crashy.Record{started(1, 2), started(3, 4)}, 0, 0, 0},
		{"run twice by two workers", nil, [][]crashy.Record{started(1, 2, 3), started(3, 4)}, 0, 1, 0},
		{"run twice by one worker", nil, [][]crashy.Record{started(1, 2, 3, 4, 4)}, 0, 1, 0},
		{"ok but never started", nil, [][]crashy.Record{started(1, 2, 4)}, 1, 0, 0},
		{"never answered", func(r *demoRun) { r.status[2].Store(statusOut) }, [][]crashy.Record{started(1, 3, 4)}, 1, 0, 0},
		{"wrong answer", func(r *demoRun) { r.result[4] = callResult{out: outWrong} }, [][]crashy.Record{started(1, 2, 3, 4)}, 0, 0, 1},
		{"id never sent", nil, [][]crashy.Record{started(1, 2, 3, 4, 99)}, 0, 1, 0},
	}
	for _, tt := range tests {
		r := newRun()
		if tt.setup != nil {
			tt.setup(r)
		}
		s := r.tally(tt.journals, nil, bulkhead.Stats{}, time.Second)
		if s.Lost != tt.lost || s.Duplicated != tt.dup || s.Wrong != tt.wrong || s.Clean != (tt.lost+tt.dup+tt.wrong == 0) {
			t.Errorf("%s: lost %d, duplicated %d, wrong %d, clean %v; want %d, %d, %d", tt.name, s.Lost, s.Duplicated, s.Wrong, s.Clean, tt.lost, tt.dup, tt.wrong)
		}
	}
	// Crash kinds come from the wait status.
	kinds := []struct {
		e    bulkhead.CrashError
		want crashKind
	}{
		{bulkhead.CrashError{Signal: syscall.SIGSEGV, ExitCode: -1}, kindSegv},
		{bulkhead.CrashError{Signal: syscall.SIGABRT, ExitCode: -1}, kindAbort},
		{bulkhead.CrashError{ExitCode: native.FaultExitCode}, kindExit},
		{bulkhead.CrashError{ExitCode: 1}, kindOther},
		{bulkhead.CrashError{Signal: syscall.SIGKILL, ExitCode: -1, Killed: true}, kindOther},
	}
	for _, k := range kinds {
		if got := kindOf(&k.e); got != k.want {
			t.Errorf("kindOf(%+v) = %v, want %v", k.e, got, k.want)
		}
	}
}

// The worker subcommand refuses to run outside a pool.
func TestWorkerOutsidePool(t *testing.T) {
	cmd := exec.Command(os.Args[0], workerArg)
	cmd.Env = testutil.HelperEnviron("cli")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 78 || !strings.Contains(string(out), "BULKHEAD_FD") {
		t.Fatalf("worker outside a pool: %v, %q; want exit 78 naming BULKHEAD_FD", err, out)
	}
}

// SIGKILL the demo in mid-run: none of its workers outlives it.
func TestDemoKilled(t *testing.T) {
	cmd := exec.Command(os.Args[0], "demo", "--calls", "1000000", "--workers", "3", "--crash-rate", "0.02", "--progress-every", "20ms")
	cmd.Env = testutil.HelperEnviron("cli", "TMPDIR="+t.TempDir())
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()
	// Wait until calls are flowing, and workers have crashed and been
	// replaced: a progress line with some calls done. Then take the
	// workers alive at one such moment (all of them may be between
	// lives at another).
	var pids []int
	sc := bufio.NewScanner(stderr)
	for len(pids) == 0 && sc.Scan() {
		var done int
		if n, _ := fmt.Sscanf(sc.Text(), "%d/", &done); n == 1 && done >= 200 {
			pids = childrenOf(cmd.Process.Pid)
		}
	}
	if len(pids) == 0 {
		t.Fatalf("no worker processes seen; stderr: %v", sc.Err())
	}
	// Hold pidfds before the kill, so that the checks cannot hit a reused pid.
	var fds []int
	for _, pid := range pids {
		fd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			continue // it died just now; its replacement is not in the list
		}
		defer unix.Close(fd)
		fds = append(fds, fd)
	}
	if len(fds) == 0 {
		t.Fatal("every worker died before it could be watched")
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed = true
	cmd.Wait()
	for i, fd := range fds {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if n, _ := unix.Poll(pfd, 10_000); n != 1 {
			t.Errorf("worker %d outlived the demo", pids[i])
		}
	}
}

// TestClusterDemo runs `demo --nodes 3`: node processes (this binary, as
// the CLI), one SIGKILLed mid-run, and the checks of the issue.
func TestClusterDemo(t *testing.T) {
	t.Setenv(testutil.HelperEnv, "cli") // the node processes are this binary: run them as the CLI
	code, out, errs := run(t, "demo", "--nodes", "3", "--calls", "600", "--workers", "1", "--json", "--quiet")
	checkClusterDemo(t, code, out, errs)
}

func checkClusterDemo(t *testing.T, code int, out, errs string) {
	t.Helper()
	if code != 0 {
		t.Fatalf("exit %d: %s\n%s", code, out, errs)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	for _, k := range []string{"calls", "ok", "lost", "duplicated", "node_lost_calls", "nodes_used", "failover_ms"} {
		if _, ok := got[k]; !ok {
			t.Errorf("no key %q in %s", k, out)
		}
	}
	// No pool in the demo's process: no pool counters at the top, which
	// would be zeros; the drained nodes' own, by node.
	for _, k := range []string{"worker_deaths", "workers_started", "respawns", "respawn_p50_us", "redispatched", "pool_start_attempts"} {
		if v, ok := got[k]; ok {
			t.Errorf("key %q (%v) in a cluster's summary: no pool of the demo's counted it", k, v)
		}
	}
	np, _ := got["node_pools"].(map[string]any)
	if _, killed := np["node0"]; len(np) != 2 || killed {
		t.Errorf("node_pools %v: want the two nodes that drained", got["node_pools"])
	}
	for id, v := range np {
		if p, _ := v.(map[string]any); p == nil || p["workers_started"].(float64) < 1 {
			t.Errorf("node_pools[%s] = %v: want its pool's counters", id, v)
		}
	}
	if got["timeout_ms"] != 1000.0 {
		t.Errorf("timeout_ms %v; want the cluster's default, 1000", got["timeout_ms"])
	}
	if got["lost"] != 0.0 || got["duplicated"] != 0.0 || got["nodes_used"] != 3.0 || got["calls"] != got["requested"] {
		t.Errorf("lost %v duplicated %v nodes_used %v calls %v of %v", got["lost"], got["duplicated"], got["nodes_used"], got["calls"], got["requested"])
	}
}
