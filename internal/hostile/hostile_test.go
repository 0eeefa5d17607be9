package hostile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/internal/shmpipe"
	"github.com/bulkhead-go/bulkhead/internal/wire"
)

// knownBroken lists the cases that fail today, by "mode/transport", with the
// issue item that fixes them. They are skipped unless HOSTILE_ALL=1, so that
// the branch stays green; a fix removes its lines. Run them all with
//
//	HOSTILE_ALL=1 go test -race -run TestHostileWorkers ./internal/hostile
var knownBroken = map[string]string{}

// Timing of every case. A call has callDeadline; its answer (whatever it
// is) must come within callDeadline+bound, and anything that waits on the
// pool (New, Close, CanceledError.Wait) within its own limits plus bound.
const (
	callDeadline = 600 * time.Millisecond
	bound        = 2 * time.Second
	startTimeout = time.Second
	killGrace    = 200 * time.Millisecond
	termGrace    = 100 * time.Millisecond
	dumpGrace    = 100 * time.Millisecond
	bigArg       = 8 << 20 // a call larger than any socket buffer or ring

	// A case may allocate this much in all, and keep this much more live
	// once its pool is closed: a lie about a size must not make the
	// dispatcher allocate it.
	maxAllocated = 96 << 20
	maxLive      = 8 << 20
)

// want is the outcome a case expects of its last call (or of New).
type want int

const (
	wantOK        want = iota // the call succeeds
	wantProtocol              // *CrashError caused by a protocol violation (wire.ErrProtocol, shmpipe.ErrCorrupt)
	wantCrash                 // *CrashError, whatever the cause
	wantCanceled              // *CanceledError for the deadline: the worker is silent, nothing to detect
	wantRemote                // *RemoteError: a well-formed ERROR
	wantStart                 // New fails with *StartError
	wantOKOrCrash             // racy by nature: the answer or the crash may come first
)

func (w want) String() string {
	return [...]string{"success", "*CrashError (protocol)", "*CrashError", "*CanceledError",
		"*RemoteError", "*StartError from New", "success or *CrashError"}[w]
}

// Which transports a case runs over.
const (
	both = iota
	sockOnly
	shmOnly
)

type tcase struct {
	mode  string // HOSTILE_MODE of hostile.c
	want  want
	on    int  // both, sockOnly, shmOnly
	calls int  // calls made (default 1); all but the last must succeed
	big   bool // the last call carries bigArg bytes
	// deadline replaces callDeadline, for a case that takes long when
	// all goes well.
	deadline time.Duration
	check    func(t *testing.T, r *result)
}

// result is what a case observed, for its check.
type result struct {
	reply   bulkhead.Reply
	err     error
	pids    []int // the worker's pid before each call
	after   int   // and after the last
	cpu     time.Duration
	elapsed time.Duration
}

var cases = []tcase{
	// Baselines: the harness itself.
	{mode: "honest", want: wantOK, calls: 3},
	{mode: "hang", want: wantCanceled},

	// Frame headers that lie.
	{mode: "len_over_max", want: wantProtocol},
	{mode: "len_max_dribble", want: wantCanceled},
	{mode: "len_truncated_hang", want: wantCanceled},
	{mode: "len_truncated_close", want: wantCrash},
	{mode: "flags", want: wantProtocol},
	{mode: "reserved", want: wantProtocol},
	{mode: "unknown_type", want: wantProtocol},
	{mode: "type_zero", want: wantProtocol},

	// Frames a worker never sends.
	{mode: "hello_again", want: wantProtocol},
	{mode: "call_from_worker", want: wantProtocol},
	{mode: "cancel_from_worker", want: wantProtocol},
	{mode: "quit_from_worker", want: wantProtocol},
	{mode: "object_frame", want: wantProtocol},
	{mode: "ping_payload", want: wantProtocol},
	{mode: "pong_payload", want: wantProtocol},

	// Request ids that lie.
	{mode: "reply_id_zero", want: wantProtocol},
	{mode: "reply_id_unsent", want: wantProtocol},
	// The duplicate is read by the next call's reader: the worker is lost
	// for the protocol error, and that call, which it had not started, may
	// be redispatched and succeed elsewhere.
	{mode: "reply_dup", want: wantOKOrCrash, calls: 2, check: replacedAfterFirst},
	{mode: "reply_then_error", want: wantOKOrCrash, calls: 2, check: replacedAfterFirst},
	{mode: "reply_stale", want: wantProtocol, calls: 2},

	// REPLY values that lie.
	{mode: "cbor_deep", want: wantProtocol},
	{mode: "cbor_huge_map", want: wantProtocol},
	{mode: "cbor_huge_array", want: wantProtocol},
	{mode: "cbor_huge_bytes", want: wantProtocol},
	{mode: "cbor_indef_string", want: wantProtocol},
	{mode: "cbor_trailing", want: wantProtocol},
	{mode: "cbor_bad_utf8", want: wantProtocol},
	{mode: "cbor_tag", want: wantProtocol},
	{mode: "cbor_simple", want: wantProtocol},
	{mode: "cbor_empty", want: wantProtocol},

	// ERROR bodies that lie.
	{mode: "error_not_map", want: wantProtocol},
	{mode: "error_bad_utf8", want: wantProtocol},
	{mode: "error_deep_details", want: wantProtocol},
	{mode: "error_trailing", want: wantProtocol},
	{mode: "error_dup_key", want: wantProtocol},
	{mode: "error_code_huge", want: wantRemote, check: func(t *testing.T, r *result) {
		var re *bulkhead.RemoteError
		if errors.As(r.err, &re) && re.Code != math.MaxUint64 {
			t.Errorf("RemoteError.Code = %d, want the worker's 2^64-1 as it is", re.Code)
		}
	}},

	// Floods and stalls.
	{mode: "ping_flood", want: wantOK, deadline: 10 * time.Second, check: func(t *testing.T, r *result) {
		if n, err := r.reply.Value(); err != nil || n != uint64(100000) {
			t.Errorf("the worker counted %v PONGs (%v), want 100000", n, err)
		}
	}},
	{mode: "ping_flood_noread", want: wantCanceled},
	{mode: "noread", want: wantCanceled, big: true},
	{mode: "sigstop", want: wantCanceled},
	{mode: "close_live", want: wantCrash, check: killed},
	{mode: "fork_child", want: wantOKOrCrash},
	{mode: "fork_setsid", want: wantOKOrCrash},

	// Start markers that lie.
	{mode: "marker_huge", want: wantCrash},
	{mode: "marker_huge_hang", want: wantCanceled},
	{mode: "marker_backwards", want: wantOKOrCrash, calls: 2},

	// Rings that lie (PROTOCOL.md section 9).
	{mode: "ring_head_minus1", want: wantProtocol, on: shmOnly},
	{mode: "ring_head_beyond", want: wantProtocol, on: shmOnly},
	{mode: "ring_tail_beyond", want: wantOK, on: shmOnly, calls: 2, check: func(t *testing.T, r *result) {
		// The first call's worker broke pipe 0: the second call went to
		// another worker (it never reached the liar).
		if r.pids[1] == r.after {
			t.Errorf("the worker %d that moved its tail beyond the head still serves", r.after)
		}
	}},
	{mode: "ring_tail_own", want: wantOK, on: shmOnly, calls: 2, check: func(t *testing.T, r *result) {
		// Storing into the dispatcher's own index changes nothing.
		if r.pids[0] != r.after {
			t.Errorf("worker %d replaced by %d: a store into our own tail must be ignored", r.pids[0], r.after)
		}
	}},
	{mode: "ring_closed_flap", want: wantCrash, on: shmOnly},
	{mode: "ring_seq_scribble", want: wantCanceled, on: shmOnly, check: func(t *testing.T, r *result) {
		if r.cpu > r.elapsed/2 {
			t.Errorf("waiting %v for a worker that scribbles the doorbells used %v of CPU", r.elapsed, r.cpu)
		}
	}},

	// HELLOs that lie: the worker never gets a call.
	{mode: "hello_silent", want: wantStart, on: sockOnly},
	{mode: "hello_first_reply", want: wantStart, on: sockOnly},
	{mode: "hello_not_map", want: wantStart, on: sockOnly},
	{mode: "hello_proto2", want: wantStart, on: sockOnly},
	{mode: "hello_bad_cookie", want: wantStart, on: sockOnly},
	{mode: "hello_conc0", want: wantStart, on: sockOnly},
	{mode: "hello_conc_huge", want: wantStart, on: sockOnly},
	{mode: "hello_huge_name", want: wantStart, on: sockOnly},
	{mode: "hello_bad_utf8", want: wantStart, on: sockOnly},
	{mode: "hello_trailing", want: wantStart, on: sockOnly},
	{mode: "hello_oversize", want: wantStart, on: sockOnly},
	{mode: "hello_shm_unoffered", want: wantStart, on: sockOnly},
}

// replacedAfterFirst checks that the worker that lied on the first call is
// not the one serving at the end.
func replacedAfterFirst(t *testing.T, r *result) {
	if len(r.pids) > 0 && r.after == r.pids[0] {
		t.Errorf("worker %d lied and still serves", r.after)
	}
}

func killed(t *testing.T, r *result) {
	var ce *bulkhead.CrashError
	if errors.As(r.err, &ce) && !ce.Killed {
		t.Errorf("CrashError.Killed = false for a worker that hung up and lived: %v", r.err)
	}
}

// TestHostileWorkers runs every misbehaviour of hostile.c against a real
// pool, over each transport it applies to, and checks the error the caller
// gets, that it comes in time, and that nothing is left behind.
func TestHostileWorkers(t *testing.T) {
	if n := len(cases); n < 25 {
		t.Fatalf("%d cases", n)
	}
	bin := build(t)
	all := os.Getenv("HOSTILE_ALL") != ""
	for _, tc := range cases {
		for _, tr := range []bulkhead.Transport{bulkhead.TransportSocket, bulkhead.TransportShm} {
			if tc.on == sockOnly && tr != bulkhead.TransportSocket || tc.on == shmOnly && tr != bulkhead.TransportShm {
				continue
			}
			name := tc.mode + "/" + transportName(tr)
			t.Run(name, func(t *testing.T) {
				if why, ok := knownBroken[name]; ok && !all {
					t.Skip("known: " + why)
				}
				run(t, bin, tc, tr)
			})
		}
	}
}

func transportName(tr bulkhead.Transport) string {
	if tr == bulkhead.TransportShm {
		return "shm"
	}
	return "sock"
}

// build compiles hostile.c into the test's temporary directory.
func build(t *testing.T) string {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc not found in PATH; cannot build the hostile worker")
	}
	bin := filepath.Join(t.TempDir(), "hostile")
	cmd := exec.Command(gcc, "-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror", "-o", bin, "hostile.c")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
	}
	return bin
}

func run(t *testing.T, bin string, tc tcase, tr bulkhead.Transport) {
	snap := Take(t)
	dir := t.TempDir()
	cfg := bulkhead.Config{
		Command:      bin,
		Args:         []string{tc.mode},
		Env:          append(os.Environ(), "HOSTILE_DIR="+dir),
		Workers:      1,
		Transport:    tr,
		ShmRingSize:  64 << 10,
		ShmSpin:      100,
		StartTimeout: startTimeout,
		KillGrace:    killGrace,
		TermGrace:    termGrace,
		DumpGrace:    dumpGrace,
		Logger:       slog.New(slog.DiscardHandler),
	}

	p, ok, err := within(startTimeout+bound, func() (*bulkhead.Pool, error) {
		return bulkhead.New(context.Background(), cfg)
	})
	if !ok {
		t.Fatalf("New did not return within %v (hang)", startTimeout+bound)
	}
	if tc.want == wantStart {
		var se *bulkhead.StartError
		if !errors.As(err, &se) {
			t.Errorf("New = %v, %v; want %v", p, err, tc.want)
		}
		if p != nil {
			closePool(t, p)
		}
		finish(t, snap, dir, tc.big)
		return
	}
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if ws := p.Workers(); len(ws) != 1 || ws[0].Transport != tr {
		closePool(t, p)
		t.Fatalf("workers %+v: want one on transport %s", ws, transportName(tr))
	}

	r := &result{}
	calls := max(tc.calls, 1)
	for i := range calls {
		var args []any
		if tc.big && i == calls-1 {
			args = []any{make([]byte, bigArg)}
		}
		r.pids = append(r.pids, workerPID(p))
		var before, after syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &before)
		start := time.Now()
		deadline := callDeadline
		if tc.deadline > 0 {
			deadline = tc.deadline
		}
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		type answer struct {
			r   bulkhead.Reply
			err error
		}
		a, ok, _ := within(deadline+bound, func() (answer, error) {
			r, err := p.Call(ctx, "m", args...)
			return answer{r, err}, nil
		})
		r.elapsed = time.Since(start)
		cancel()
		syscall.Getrusage(syscall.RUSAGE_SELF, &after)
		r.cpu = time.Duration(after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano())
		if !ok {
			t.Errorf("call %d: no answer %v after its deadline (hang)", i+1, bound)
			closePool(t, p)
			finish(t, snap, dir, tc.big)
			return
		}
		r.reply, r.err = a.r, a.err
		if i < calls-1 && r.err != nil {
			t.Errorf("call %d of %d = %v; want success", i+1, calls, r.err)
		}
	}
	r.after = workerPID(p)
	judge(t, tc.want, r.reply, r.err)
	if tc.check != nil {
		tc.check(t, r)
	}
	var ce *bulkhead.CanceledError
	if errors.As(r.err, &ce) {
		limit := termGrace + dumpGrace + killGrace + bound
		if _, ok, _ := within(limit, func() (struct{}, error) { ce.Wait(); return struct{}{}, nil }); !ok {
			t.Errorf("CanceledError.Wait did not return within %v: the worker was not stopped", limit)
		}
	}
	closePool(t, p)
	finish(t, snap, dir, tc.big)
}

// judge checks the error of the last call against w.
func judge(t *testing.T, w want, r bulkhead.Reply, err error) {
	t.Helper()
	var (
		ce  *bulkhead.CrashError
		cxe *bulkhead.CanceledError
		re  *bulkhead.RemoteError
	)
	var good bool
	switch w {
	case wantOK:
		good = err == nil
	case wantProtocol:
		good = errors.As(err, &ce) && (errors.Is(err, wire.ErrProtocol) || errors.Is(err, shmpipe.ErrCorrupt))
	case wantCrash:
		good = errors.As(err, &ce)
	case wantCanceled:
		good = errors.As(err, &cxe) && errors.Is(err, context.DeadlineExceeded)
	case wantRemote:
		good = errors.As(err, &re)
	case wantOKOrCrash:
		good = err == nil || errors.As(err, &ce)
	}
	if !good {
		t.Errorf("got %s; want %v", describe(err), w)
	}
	if err == nil && w == wantProtocol {
		// What a caller that trusted the reply would meet.
		v, derr := r.Value()
		t.Logf("the lie got through: Reply.Value() = %.40v, %v", v, derr)
	}
}

func describe(err error) string {
	if err == nil {
		return "success"
	}
	return fmt.Sprintf("%T: %v", err, err)
}

// within runs f and waits at most d for it. ok is false if it did not
// return in time; f then goes on running.
func within[T any](d time.Duration, f func() (T, error)) (v T, ok bool, err error) {
	type res struct {
		v   T
		err error
	}
	c := make(chan res, 1)
	go func() {
		v, err := f()
		c <- res{v, err}
	}()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case r := <-c:
		return r.v, true, r.err
	case <-timer.C:
		return v, false, nil
	}
}

func workerPID(p *bulkhead.Pool) int {
	if ws := p.Workers(); len(ws) > 0 {
		return ws[0].PID
	}
	return 0
}

// closePool closes p, killing what is left after a short while, and
// checks that Close returns in time.
func closePool(t *testing.T, p *bulkhead.Pool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*killGrace)
	defer cancel()
	limit := 4*killGrace + bound
	if _, ok, _ := within(limit, func() (struct{}, error) { return struct{}{}, p.Close(ctx) }); !ok {
		t.Errorf("Close did not return within %v", limit)
	}
}

// finish checks what the case left behind: a process the worker forked,
// heap, descriptors, goroutines, children.
func finish(t *testing.T, snap *Snapshot, dir string, big bool) {
	t.Helper()
	if b, err := os.ReadFile(filepath.Join(dir, "grandchild")); err == nil {
		pid, _ := strconv.Atoi(string(b))
		if pid > 0 && !ProcessGone(pid, bound) {
			t.Errorf("the worker's child %d still runs %v after Close: it holds the worker's connection", pid, bound)
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	live, allocated := snap.HeapGrowth()
	limit := uint64(maxAllocated)
	if big {
		limit += bigArg
	}
	if allocated > limit {
		t.Errorf("the case allocated %d MiB, more than %d MiB", allocated>>20, limit>>20)
	}
	if live > maxLive {
		t.Errorf("the live heap grew by %d KiB", live>>10)
	}
	snap.Leaks(t, bound)
}
