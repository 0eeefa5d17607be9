package chaos

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/internal/wire"
)

// audit compares what each caller was told with the fault it injected and
// with what the workers journaled. race selects the deadline race's rules.
func audit(res *Result, calls []call, j *journal, race bool) {
	for i := range calls {
		c := &calls[i]
		key := uint64(i + 1)
		res.FaultsFired += j.fired[key]
		answers := int(c.answers.Load())
		if answers == 0 {
			res.Lost++
			res.example(&res.Examples, fmt.Sprintf("call %d (%s): never answered", key, c.fault))
			continue
		}
		if answers == 1 {
			res.AnsweredOnce++
		} else {
			res.Duplicated++
		}
		c.seen = see(c.err)
		s := c.seen
		var v verdict
		if race {
			v = classifyRace(c, key, s)
		} else {
			v = classify(c, key, s)
		}
		res.Outcomes[string(c.fault)+":"+s.outcome]++
		tally(res, c, s, v)
		judge(res, c, key, s, v, j.starts[key], j.fired[key])
	}
}

// seen is what a caller was told, taken apart.
type seen struct {
	outcome string
	crash   *bulkhead.CrashError // a call-phase crash, else nil
	cancel  *bulkhead.CanceledError
	quar    *bulkhead.QuarantinedError
	// collateral: a *CrashError for a call lost with a worker that the
	// pool stopped for another call's cancellation (CrashError.AbandonedBy).
	collateral *bulkhead.CrashError
}

// see takes err apart; a *CanceledError is waited for, so that Started
// and the stop report are final.
func see(err error) seen {
	var s seen
	var ce *bulkhead.CrashError
	switch {
	case err == nil:
		s.outcome = "ok"
	case errors.As(err, &ce) && ce.AbandonedBy != 0:
		s.outcome, s.collateral = "collateral", ce
	case errors.As(err, &ce) && ce.Phase == bulkhead.PhaseCall:
		s.outcome, s.crash = "crash", ce
	case errors.As(err, &s.cancel):
		s.outcome = "canceled"
		s.cancel.Wait()
	case errors.As(err, &s.quar):
		s.outcome = "quarantined"
	default:
		s.outcome = fmt.Sprintf("%T", err)
	}
	return s
}

// verdict says whether an outcome is one the call's fault may produce, and
// how many journaled starts it implies.
type verdict struct {
	ok     bool
	starts int
}

// classify judges a call of the default soak.
func classify(c *call, key uint64, s seen) verdict {
	replied := c.err == nil && c.decoded && c.reply == key
	switch c.fault {
	case FaultNone:
		return verdict{replied, 1}
	case FaultEnviron, FaultShadow, FaultWrite:
		return verdict{c.err == nil && c.decoded && c.reply == key, 1}
	case FaultFlaky:
		return verdict{replied, 2}
	case FaultPoison:
		if s.quar != nil {
			return verdict{true, 0}
		}
	case FaultHang:
		if s.cancel == nil || !errors.Is(c.err, context.DeadlineExceeded) {
			return verdict{false, 1}
		}
		if !s.cancel.Started {
			return verdict{true, 0} // its deadline passed before a worker took it
		}
		return verdict{strings.Contains(s.cancel.Stack, "goroutine "), 1}
	}
	return verdict{s.crash != nil && crashMatches(c.fault, s.crash, c.err), 1}
}

// classifyRace judges a call of the deadline race, where any call may
// lose to its deadline: success only with the right result, for a call
// that injects nothing; a *CanceledError for the deadline, started or not;
// a crash only the call's own fault explains; quarantine only for poison.
func classifyRace(c *call, key uint64, s seen) verdict {
	switch {
	case c.err == nil:
		return verdict{c.fault == FaultNone && c.decoded && c.reply == key, 1}
	case s.cancel != nil:
		if s.cancel.Started {
			return verdict{errors.Is(c.err, context.DeadlineExceeded), 1}
		}
		return verdict{errors.Is(c.err, context.DeadlineExceeded), 0}
	case s.quar != nil:
		return verdict{c.fault == FaultPoison, 0}
	case s.crash != nil:
		return verdict{crashMatches(c.fault, s.crash, c.err), 1}
	}
	return verdict{false, 1}
}

// crashMatches reports whether a call-phase crash is the one fault f causes.
func crashMatches(f Fault, ce *bulkhead.CrashError, err error) bool {
	protocol := ce.Killed && errors.Is(err, wire.ErrProtocol)
	switch f {
	case FaultSegv, FaultPoison:
		return ce.Signal == syscall.SIGSEGV && !ce.Killed
	case FaultAbort:
		return ce.Signal == syscall.SIGABRT
	case FaultExit:
		return ce.Signal == 0 && ce.ExitCode == ExitCode
	case FaultGarbage:
		return protocol && !strings.Contains(ce.Reason, "larger than")
	case FaultOversize:
		return protocol && strings.Contains(ce.Reason, "larger than")
	case FaultCloseSock:
		return ce.Killed && !protocol && strings.Contains(ce.Reason, "closed its connection")
	case FaultLeak:
		return ce.Limit == bulkhead.LimitMemory && errors.Is(err, bulkhead.ErrLimitExceeded)
	case FaultRingBack, FaultRingOver, FaultRingTorn:
		return protocol
	}
	return sandboxCrashMatches(f, ce, err)
}

// tally counts what the caller was told.
func tally(res *Result, c *call, s seen, v verdict) {
	switch {
	case c.err == nil && v.ok:
		res.Succeeded++
	case s.cancel != nil && s.cancel.Started:
		res.CanceledStarted++
	case s.cancel != nil:
		res.CanceledNotStarted++
		if s.cancel.PID == 0 {
			res.CanceledQueued++
		}
	case s.crash != nil:
		res.CallCrashErrors++
	case s.quar != nil:
		res.Quarantined++
	}
}

// judge checks one answered call against the journal: got starts and
// fired faults.
func judge(res *Result, c *call, key uint64, s seen, v verdict, got, fired int) {
	note := func(what string) {
		res.example(&res.Examples, fmt.Sprintf("call %d (%s, deadline %v): %s; journal %d, want %d, fired %d: %v",
			key, c.fault, c.deadline, what, got, v.starts, fired, c.err))
	}
	switch {
	case s.collateral != nil && got <= 1:
		// Run or not, it is lost with a worker stopped for another
		// call's cancellation, and says so.
		res.Collateral++
	case s.crash != nil && fired == 0:
		// The caller was told its worker crashed, but the worker never
		// injected this call's fault.
		res.SpuriousCrashes++
		note("a crash no fault explains")
	case !v.ok:
		res.Misclassified++
		note("misclassified as " + s.outcome)
	case got > v.starts && s.cancel != nil && !s.cancel.Started:
		res.Misclassified++
		note("canceled with Started false, but a worker started it")
	case got > v.starts:
		res.Duplicated++
		note("run more often than reported")
	case got < v.starts && c.err == nil:
		res.Lost++
		note("answered without running")
	case got < v.starts && s.cancel != nil && s.cancel.Started && s.cancel.ExitCode != 0:
		// Stopped after the marker, before the handler's first step.
		res.StoppedBeforeEffect++
	case got < v.starts:
		res.Misclassified++
		note("reported as started but never journaled")
	}
}
