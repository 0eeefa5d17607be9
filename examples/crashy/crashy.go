// Package crashy is a bulkhead worker around the crash-prone C library in
// crashy/native. Its one method, "checksum", hashes bytes in C and, at rates
// the dispatcher chooses, dies for real instead: a NULL dereference
// (SIGSEGV), abort() (SIGABRT), exit() from C, or an endless loop. It can
// also die between calls, and at start-up before it says HELLO.
//
// Every worker appends a fixed-size record to its own journal file for each
// call it starts and for each fault it is about to trigger (journal.go), so
// that a dispatcher can check, after the run, that no call was lost or run
// twice. bulkhead's demo (cmd/bulkhead) runs it; examples/crashy/cmd/
// crashy-worker is the same worker as a program of its own.
package crashy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"time"

	"github.com/bulkhead-go/bulkhead/examples/crashy/native"
	"github.com/bulkhead-go/bulkhead/worker"
	"github.com/fxamacker/cbor/v2"
	"golang.org/x/sys/unix"
)

// Method is the name of the worker's one method. Its arguments are a call id
// (uint64, non-zero, recorded in the journal) and the bytes to hash; its
// result is native.Checksum of the bytes (FNV-1a 64, as an int64).
const Method = "checksum"

// Options chooses how often a crashy worker fails. Every rate is a
// probability from 0 to 1.
type Options struct {
	// Segv, Abort, Exit and Hang are the chances, per call, that the call
	// dies in native code by a NULL dereference, abort(), exit(3) or an
	// endless loop. Their sum must not exceed 1.
	// Zero value: never.
	Segv, Abort, Exit, Hang float64

	// Idle is the chance, per call, that the worker dies IdleDelay after
	// the call returns, by segv, abort or exit with equal odds. Under load
	// the next call may already be on the worker by then.
	// Zero value: never.
	Idle float64

	// IdleDelay is how long after a call an idle fault strikes.
	// Zero value: 1 millisecond. At most 1 minute.
	IdleDelay time.Duration

	// Startup is the chance that Register kills the process, by segv,
	// abort or exit with equal odds, before it says HELLO.
	// Zero value: never.
	Startup float64

	// Journal is a directory in which the worker creates its own journal
	// file. Zero value: no journal.
	Journal string
}

// The environment variables that carry Options to a worker process.
const (
	EnvSegv      = "CRASHY_SEGV"
	EnvAbort     = "CRASHY_ABORT"
	EnvExit      = "CRASHY_EXIT"
	EnvHang      = "CRASHY_HANG"
	EnvIdle      = "CRASHY_IDLE"
	EnvIdleDelay = "CRASHY_IDLE_DELAY"
	EnvStartup   = "CRASHY_STARTUP"
	EnvJournal   = "CRASHY_JOURNAL"
)

const (
	defaultIdleDelay = time.Millisecond
	maxIdleDelay     = time.Minute
)

// Validate reports every out-of-range field.
func (o Options) Validate() error {
	var errs []error
	rate := func(name string, v, hi float64) {
		if math.IsNaN(v) || v < 0 || v > hi {
			errs = append(errs, fmt.Errorf("crashy: %s rate %v: want 0 to %v", name, v, hi))
		}
	}
	rate("segv", o.Segv, 1)
	rate("abort", o.Abort, 1)
	rate("exit", o.Exit, 1)
	rate("hang", o.Hang, 1)
	rate("idle", o.Idle, 1)
	rate("startup", o.Startup, 1)
	if sum := o.Segv + o.Abort + o.Exit + o.Hang; sum > 1+1e-9 {
		errs = append(errs, fmt.Errorf("crashy: per-call fault rates add up to %v: want at most 1", sum))
	}
	if o.IdleDelay < 0 || o.IdleDelay > maxIdleDelay {
		errs = append(errs, fmt.Errorf("crashy: idle delay %v: want 0 (1ms) to %v", o.IdleDelay, maxIdleDelay))
	}
	return errors.Join(errs...)
}

// Environ returns o as environment variables, for a dispatcher's Config.Env.
func (o Options) Environ() []string {
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	return []string{
		EnvSegv + "=" + f(o.Segv),
		EnvAbort + "=" + f(o.Abort),
		EnvExit + "=" + f(o.Exit),
		EnvHang + "=" + f(o.Hang),
		EnvIdle + "=" + f(o.Idle),
		EnvIdleDelay + "=" + o.IdleDelay.String(),
		EnvStartup + "=" + f(o.Startup),
		EnvJournal + "=" + o.Journal,
	}
}

// OptionsFromEnv reads Options from the variables Environ writes, through
// getenv (os.Getenv in a worker). Unset variables keep their zero values.
func OptionsFromEnv(getenv func(string) string) (Options, error) {
	var o Options
	var errs []error
	rates := []struct {
		name string
		v    *float64
	}{
		{EnvSegv, &o.Segv}, {EnvAbort, &o.Abort}, {EnvExit, &o.Exit}, {EnvHang, &o.Hang},
		{EnvIdle, &o.Idle}, {EnvStartup, &o.Startup},
	}
	for _, r := range rates {
		s := getenv(r.name)
		if s == "" {
			continue
		}
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("crashy: %s=%q: %w", r.name, s, err))
			continue
		}
		*r.v = v
	}
	if s := getenv(EnvIdleDelay); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("crashy: %s=%q: %w", EnvIdleDelay, s, err))
		}
		o.IdleDelay = d
	}
	o.Journal = getenv(EnvJournal)
	if err := errors.Join(errs...); err != nil {
		return o, err
	}
	return o, o.Validate()
}

// Register validates o, opens the journal and registers Method on s.
//
// Register is also where the start-up fault strikes: with probability
// o.Startup the process dies here, as a native library that fails to load
// would. Call it before s.Serve, so that the worker dies before HELLO.
func Register(s *worker.Server, o Options) error {
	if err := o.Validate(); err != nil {
		return err
	}
	if o.IdleDelay == 0 {
		o.IdleDelay = defaultIdleDelay
	}
	var j *Journal
	if o.Journal != "" {
		var err error
		if j, err = CreateJournal(o.Journal); err != nil {
			return err
		}
	}
	if rand.Float64() < o.Startup {
		f := anyCrash()
		_ = j.Append(Record{Kind: KindStartup, Fault: f}) // best effort: it dies either way
		f.Trigger()
	}
	h := &handler{o: o, journal: j}
	s.Handle(Method, h.checksum)
	s.Handle(EchoMethod, echo)
	return nil
}

// EchoMethod returns its one argument as it came, and never crashes: for
// checking a pool end to end (bulkhead call ... demo echo '"hello"').
const EchoMethod = "echo"

func echo(_ context.Context, a worker.Args) (any, error) {
	if a.Len() != 1 {
		return nil, fmt.Errorf("echo takes one argument, got %d", a.Len())
	}
	return cbor.RawMessage(bytes.Clone(a.Raw(0))), nil
}

// handler serves Method.
type handler struct {
	o       Options
	journal *Journal // nil: none
}

func (h *handler) checksum(_ context.Context, args worker.Args) (any, error) {
	var id uint64
	var data []byte
	if err := args.Scan(&id, &data); err != nil {
		return nil, err
	}
	if id == 0 {
		return nil, errors.New("crashy: call id 0: want a non-zero id")
	}
	f := h.callFault()
	// Recorded before the fault, so that a call that dies is still known
	// to have started. A call that cannot be recorded does not run.
	if err := h.journal.Append(Record{Kind: KindCall, Fault: f, ID: id}); err != nil {
		return nil, err
	}
	triggerInCall(f) // returns only for FaultNone; a hang never returns
	sum := native.Checksum(data)
	if rand.Float64() < h.o.Idle {
		f := anyCrash()
		time.AfterFunc(h.o.IdleDelay, func() {
			_ = h.journal.Append(Record{Kind: KindIdle, Fault: f}) // best effort: it dies either way
			f.Trigger()
		})
	}
	return sum, nil
}

// callFault draws the fault, if any, for one call.
func (h *handler) callFault() native.Fault {
	u := rand.Float64()
	for _, c := range []struct {
		p float64
		f native.Fault
	}{{h.o.Segv, native.FaultSegv}, {h.o.Abort, native.FaultAbort}, {h.o.Exit, native.FaultExit}, {h.o.Hang, native.FaultHang}} {
		if u < c.p {
			return c.f
		}
		u -= c.p
	}
	return native.FaultNone
}

// triggerInCall performs a call's fault. Where the worker SDK makes the Go
// runtime's report of a fault in C end the worker by the signal
// (linux/amd64, worker/crashsig_linux_amd64.go), SIGSEGV and SIGABRT go
// through the runtime, as a C library's would, so that the report names
// the C function and the pool's crash record carries it
// (CrashError.Function; bulkhead demo --log). Elsewhere, and for the other
// faults, the signal's default action is restored first (Fault.Trigger).
func triggerInCall(f native.Fault) {
	if runtime.GOOS == "linux" && runtime.GOARCH == "amd64" {
		switch f {
		case native.FaultSegv:
			native.RawSegv()
		case native.FaultAbort:
			native.RawAbort()
		}
	}
	f.Trigger()
}

// anyCrash picks a fault that ends the process by itself.
func anyCrash() native.Fault {
	return [...]native.Fault{native.FaultSegv, native.FaultAbort, native.FaultExit}[rand.IntN(3)]
}

// Main runs a crashy worker configured from the environment and exits: it is
// the whole of a worker program. It turns core dumps off first: the crashes
// are deliberate, and a core file per crash would fill the disk. Status 64
// means bad options; see worker.Server.Run for the others.
func Main() {
	if !worker.IsWorker() {
		fmt.Fprintln(os.Stderr, worker.ErrNotWorker)
		os.Exit(78)
	}
	_ = unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{})
	o, err := OptionsFromEnv(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(64)
	}
	s := &worker.Server{Name: "crashy"}
	if err := Register(s, o); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(64)
	}
	s.Run()
}
