// Package conform runs any worker program, in any language, against the wire
// protocol of docs/PROTOCOL.md, the way a dispatcher would and the way a
// broken one might: the handshake and version, every message type, the frame
// and value limits, deadlines, cancellation, the start marker, quitting, the
// end of the stream, the idle timeout, a bad environment, and the
// shared-memory transport when the worker offers it. It knows nothing of the
// worker's methods unless told: Options.Echo and Options.Sleep name methods
// that unlock the checks needing a REPLY or a call that runs for a while.
//
// Each check starts its own worker process, so that a worker that fails one
// cannot fail the next for it. `bulkhead conform` is its command line.
package conform

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// Options says which worker to run and what it serves.
type Options struct {
	// Command is the worker program: a path, or a name looked up in PATH.
	Command string
	// Args are its arguments. Zero value: none.
	Args []string
	// Env is added to the worker's environment, which is otherwise only the
	// BULKHEAD_* variables and PATH. Zero value: nothing added.
	Env []string
	// Echo names a method that returns its first argument unchanged. Zero
	// value: none; the value vectors are then only checked to be accepted.
	Echo string
	// Sleep names a method whose first argument is a number of milliseconds
	// it runs for, stopping early when cancelled or past its deadline. Zero
	// value: none; the deadline and CANCEL checks of a running call are
	// skipped.
	Sleep string
	// Timeout bounds every wait for the worker: a frame, an exit. Zero
	// value: 5 seconds.
	Timeout time.Duration
	// Only runs the checks whose names contain it. Zero value: all.
	Only string
	// Service says the program is also a service when started without the
	// protocol's environment (README: one binary, the service and its own
	// worker): the check that it refuses to run without BULKHEAD_FD is
	// skipped, since it would start the service. Zero value: a program
	// that is only a worker.
	Service bool
	// Classes says the worker is a class server: it registers classes
	// after HELLO (PROTOCOL.md section 10), and the object checks run on
	// the first. Zero value: a plain worker, which must refuse object
	// frames.
	Classes bool
	// ActivateArgs are the arguments of the checks' ACTIVATEs, for a
	// class whose constructor needs some (a generated class server takes
	// its constructor's name first). Zero value: none.
	ActivateArgs []any
}

// Status is a check's outcome.
type Status int

const (
	Pass Status = iota
	Fail
	Skip // not applicable to this worker (said why in Detail)
)

func (s Status) String() string { return [...]string{"PASS", "FAIL", "SKIP"}[s] }

// Result is one check's outcome.
type Result struct {
	Name   string
	Status Status
	Detail string // why it failed or was skipped; for a failure, the worker's stderr tail too
}

// Report is every check's outcome, in the order they ran.
type Report struct {
	Worker  string
	Results []Result
}

// Failed counts the failures.
func (r Report) Failed() int {
	n := 0
	for _, x := range r.Results {
		if x.Status == Fail {
			n++
		}
	}
	return n
}

// Print writes the pass/fail table and a summary line.
func (r Report) Print(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "bulkhead conform: %s\n\n", r.Worker)
	fmt.Fprintf(tw, "CHECK\tRESULT\tDETAIL\n")
	var pass, skip int
	for _, x := range r.Results {
		detail := x.Detail
		if x.Status == Fail {
			detail = strings.ReplaceAll(detail, "\n", "\n\t\t")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", x.Name, x.Status, detail)
		switch x.Status {
		case Pass:
			pass++
		case Skip:
			skip++
		}
	}
	fmt.Fprintf(tw, "\n%d checks: %d passed, %d failed, %d skipped\n", len(r.Results), pass, r.Failed(), skip)
	return tw.Flush()
}

// kit is one run's state: the options and the vectors.
type kit struct {
	opts    Options
	vectors []vector
}

// errSkip marks a check that does not apply; its text says why.
type errSkip struct{ why string }

func (e errSkip) Error() string { return e.why }

// Run runs every check against the worker and reports each. It fails only
// when the vectors cannot be read or ctx ends; a worker's failures are in the
// report.
func Run(ctx context.Context, opts Options) (Report, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	vs, err := parseVectors(embeddedVectors)
	if err != nil {
		return Report{}, err
	}
	k := &kit{opts: opts, vectors: vs}
	rep := Report{Worker: strings.Join(append([]string{opts.Command}, opts.Args...), " ")}
	for _, c := range k.checks() {
		if opts.Only != "" && !strings.Contains(c.name, opts.Only) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		rep.Results = append(rep.Results, k.run(c))
	}
	return rep, nil
}

// check is one named check; it returns nil, errSkip or the failure.
type check struct {
	name string
	fn   func(k *kit) error
}

// run runs one check and turns what it returned into a Result.
func (k *kit) run(c check) Result {
	err := c.fn(k)
	switch e := err.(type) {
	case nil:
		return Result{Name: c.name, Status: Pass}
	case errSkip:
		return Result{Name: c.name, Status: Skip, Detail: e.why}
	case *failure:
		return Result{Name: c.name, Status: Fail, Detail: e.Error()}
	}
	return Result{Name: c.name, Status: Fail, Detail: err.Error()}
}

// failure is a check's failure with the worker's stderr tail.
type failure struct {
	err    error
	stderr string
}

func (f *failure) Error() string {
	if f.stderr == "" {
		return f.err.Error()
	}
	tail := f.stderr
	if len(tail) > 600 {
		tail = "..." + tail[len(tail)-600:]
	}
	return fmt.Sprintf("%v\nworker stderr: %s", f.err, strings.TrimSpace(tail))
}

func (f *failure) Unwrap() error { return f.err }

// with runs fn on a fresh worker started with l, then stops the worker; a
// failure carries the worker's stderr.
func (k *kit) with(l launch, fn func(s *session) error) error {
	s, err := k.start(l)
	if err != nil {
		return err
	}
	defer s.close()
	if err := fn(s); err != nil {
		if _, skip := err.(errSkip); skip {
			return err
		}
		return &failure{err: err, stderr: s.stderr.String()}
	}
	return nil
}
