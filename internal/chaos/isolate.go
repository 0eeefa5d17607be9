package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// DriverEnv, set in a process's environment, holds the Options (JSON) of a
// soak it must run as a driver: the process that runs the pool, a child of
// RunIsolated.
const DriverEnv = "BULKHEAD_CHAOS_DRIVER"

// driverCannotRun is a driver's exit status when its soak could not run
// (bad options, a pool that would not start): not a dispatcher crash.
const driverCannotRun = 3

// IsDriver reports whether this process was started as a soak driver.
func IsDriver() bool { return os.Getenv(DriverEnv) != "" && !IsWorker() }

// RunDriver runs the soak that DriverEnv describes, writes its Result to
// stdout as one JSON object and exits 0; or exits driverCannotRun, with the
// reason on stderr. A program whose Command is used with RunIsolated calls
// it when IsDriver reports true, before anything else.
func RunDriver() {
	var o Options
	if err := json.Unmarshal([]byte(os.Getenv(DriverEnv)), &o); err != nil {
		fmt.Fprintln(os.Stderr, "chaos driver: options:", err)
		os.Exit(driverCannotRun)
	}
	os.Unsetenv(DriverEnv) // not for the workers
	res, err := Run(context.Background(), o)
	if err == nil {
		err = json.NewEncoder(os.Stdout).Encode(res)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos driver:", err)
		os.Exit(driverCannotRun)
	}
	os.Exit(0)
}

// Isolation configures RunIsolated.
type Isolation struct {
	// SegmentCalls is the calls each driver process runs; a dispatcher
	// crash costs the audit of one segment, and the soak goes on with the
	// next. Zero: every call in one driver.
	SegmentCalls int
	// Stderr receives the drivers' stderr as it comes (the pool's records
	// with Options.Verbose); nil: it is kept only for the report.
	Stderr io.Writer
	// StderrDir keeps the whole stderr of each driver that failed.
	// Zero: os.TempDir().
	StderrDir string
	// Grace is how long a driver may run past Options.Timeout (its calls
	// run to their own deadlines, then Close) before it is taken for hung,
	// sent SIGQUIT for a goroutine dump, and killed 10 s later.
	// Zero: 3 minutes.
	Grace time.Duration
}

// RunIsolated runs the soak in driver processes (Options.Command, with
// DriverEnv set), one segment of calls after another, so that a dispatcher
// that crashes or hangs is counted and reported with its stderr instead of
// taking the soak with it. The Result sums the segments' audits.
func RunIsolated(ctx context.Context, o Options, iso Isolation) (*Result, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	if iso.SegmentCalls < 0 {
		return nil, fmt.Errorf("segment calls = %d: must not be negative", iso.SegmentCalls)
	}
	seg := iso.SegmentCalls
	if seg == 0 || seg > o.Calls {
		seg = o.Calls
	}
	if iso.Grace == 0 {
		iso.Grace = 3 * time.Minute
	}
	total := newResult(&o)
	total.Calls = 0
	deadline := time.Now().Add(o.Timeout)
	for done := 0; done < o.Calls; total.Segments++ {
		so := o
		so.Calls, so.Seed, so.Logger = min(seg, o.Calls-done), o.Seed+uint64(total.Segments), nil
		if so.Timeout = time.Until(deadline); so.Timeout <= 0 || ctx.Err() != nil {
			total.Truncated = true
			break
		}
		r, failure, err := runDriver(ctx, so, iso)
		if err != nil {
			return nil, fmt.Errorf("segment %d: %w", total.Segments, err)
		}
		if failure != nil {
			failure.count(total, so)
		} else {
			merge(total, r)
		}
		done += so.Calls
	}
	if total.Seconds > 0 {
		total.CallsPerSecond = float64(total.Calls) / total.Seconds
	}
	total.OK = total.ok()
	return total, nil
}

// driverFailure is a driver process that crashed or hung.
type driverFailure struct {
	hung    bool
	status  string // how it ended
	excerpt string // the part of its stderr that tells why
	stderr  string // the file with all of it
}

func (f *driverFailure) count(total *Result, o Options) {
	what := "crashed"
	if f.hung {
		what = "hung (sent SIGQUIT)"
		total.DispatcherHangs++
	} else {
		total.DispatcherCrashes++
	}
	total.Unaudited += o.Calls
	total.example(&total.DispatcherCrashExamples, fmt.Sprintf("segment %d (seed %d, %d calls): driver %s: %s; full stderr in %s\n%s",
		total.Segments, o.Seed, o.Calls, what, f.status, f.stderr, f.excerpt))
}

// runDriver runs one segment in a driver process. It returns the
// segment's Result, or a failure if the driver crashed or hung, or an error
// if the soak could not run at all.
func runDriver(ctx context.Context, o Options, iso Isolation) (*Result, *driverFailure, error) {
	dir, err := os.MkdirTemp("", "bulkhead-chaos-")
	if err != nil {
		return nil, nil, fmt.Errorf("journal directory: %w", err)
	}
	defer os.RemoveAll(dir)
	o.JournalDir = dir
	env, err := json.Marshal(o)
	if err != nil {
		return nil, nil, fmt.Errorf("encoding the options: %w", err)
	}
	errFile, err := os.CreateTemp(iso.StderrDir, "bulkhead-chaos-driver-*.stderr")
	if err != nil {
		return nil, nil, fmt.Errorf("driver stderr: %w", err)
	}
	defer errFile.Close()
	dctx, cancel := context.WithTimeout(ctx, o.Timeout+iso.Grace)
	defer cancel()
	cmd := exec.CommandContext(dctx, o.Command, o.Args...)
	cmd.Env = append(os.Environ(), DriverEnv+"="+string(env))
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = errFile
	if iso.Stderr != nil {
		cmd.Stderr = io.MultiWriter(errFile, iso.Stderr)
	}
	// Taken for hung: a goroutine dump first, then SIGKILL.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGQUIT) }
	cmd.WaitDelay = 10 * time.Second
	werr := cmd.Run()
	hung := dctx.Err() != nil && ctx.Err() == nil
	stderr, _ := os.ReadFile(errFile.Name())
	var res Result
	if werr == nil && !hung && json.Unmarshal(out.Bytes(), &res) == nil {
		os.Remove(errFile.Name())
		return &res, nil, nil
	}
	if ctx.Err() != nil {
		return nil, nil, fmt.Errorf("interrupted: %w", ctx.Err())
	}
	var ee *exec.ExitError
	if !hung && errors.As(werr, &ee) && ee.ExitCode() == driverCannotRun {
		os.Remove(errFile.Name())
		return nil, nil, fmt.Errorf("the driver could not run the soak: %s (%w)", bytes.TrimSpace(tail(stderr, 4096)), werr)
	}
	status := "exit status 0, but no result"
	if werr != nil {
		status = werr.Error()
	}
	return nil, &driverFailure{hung: hung, status: status, excerpt: excerpt(stderr), stderr: errFile.Name()}, nil
}

// excerpt picks what explains a driver's death from its stderr: from the
// first line that reports a panic, a fatal error or a signal, at most 4 KiB;
// else its tail. Only whole lines count, not log records quoting a
// worker's stderr.
func excerpt(stderr []byte) string {
	const limit = 4096
	at := -1
	for _, mark := range []string{"panic: ", "fatal error: ", "unexpected fault address", "SIGQUIT: quit", "SIGSEGV: "} {
		if i := lineStart(stderr, mark); i >= 0 && (at < 0 || i < at) {
			at = i
		}
	}
	if at < 0 {
		return strings.TrimSpace(string(tail(stderr, limit)))
	}
	e := stderr[at:]
	if len(e) > limit {
		e = e[:limit]
	}
	return strings.TrimSpace(string(e))
}

// lineStart returns where the first line that starts with mark starts, or -1.
func lineStart(b []byte, mark string) int {
	if bytes.HasPrefix(b, []byte(mark)) {
		return 0
	}
	if i := bytes.Index(b, []byte("\n"+mark)); i >= 0 {
		return i + 1
	}
	return -1
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
