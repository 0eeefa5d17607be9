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
// with what the workers journaled.
func audit(res *Result, calls []call, starts []int) {
	for i := range calls {
		c := &calls[i]
		key := uint64(i + 1)
		answers := int(c.answers.Load())
		if answers == 0 {
			res.Lost++
			continue
		}
		if answers == 1 {
			res.AnsweredOnce++
		} else {
			res.Duplicated++
		}
		outcome, ok, want := classify(c, key)
		res.Outcomes[string(c.fault)+":"+outcome]++
		if outcome == "quarantined" {
			res.Quarantined++
		}
		got := starts[key]
		note := func(what string) {
			if len(res.Examples) < 10 {
				res.Examples = append(res.Examples, fmt.Sprintf("call %d (%s): %s; journal %d, want %d: %v", key, c.fault, what, got, want, c.err))
			}
		}
		switch {
		case !ok:
			res.Misclassified++
			note("misclassified as " + outcome)
		case got > want:
			res.Duplicated++
			note("run more often than reported")
		case got < want && c.err == nil:
			res.Lost++
			note("answered without running")
		case got < want:
			res.Misclassified++
			note("reported as started but never journaled")
		}
	}
}

// classify names the outcome a caller got, says whether it is the one the
// injected fault must produce, and how many journaled starts it implies.
func classify(c *call, key uint64) (outcome string, ok bool, starts int) {
	err := c.err
	var ce *bulkhead.CrashError
	var ca *bulkhead.CanceledError
	var qe *bulkhead.QuarantinedError
	crash := errors.As(err, &ce) && ce.Phase == bulkhead.PhaseCall
	switch {
	case err == nil:
		outcome = "ok"
	case crash:
		outcome = "crash"
	case errors.As(err, &ca):
		outcome = "canceled"
	case errors.As(err, &qe):
		outcome = "quarantined"
	default:
		outcome = fmt.Sprintf("%T", err)
	}
	replied := err == nil && c.decoded && c.reply == key
	protocol := crash && ce.Killed && errors.Is(err, wire.ErrProtocol)
	switch c.fault {
	case FaultNone:
		return outcome, replied, 1
	case FaultFlaky:
		return outcome, replied, 2
	case FaultSegv:
		return outcome, crash && ce.Signal == syscall.SIGSEGV && !ce.Killed, 1
	case FaultPoison:
		if qe != nil {
			return outcome, true, 0
		}
		return outcome, crash && ce.Signal == syscall.SIGSEGV && !ce.Killed, 1
	case FaultAbort:
		return outcome, crash && ce.Signal == syscall.SIGABRT, 1
	case FaultExit:
		return outcome, crash && ce.Signal == 0 && ce.ExitCode == ExitCode, 1
	case FaultGarbage:
		return outcome, protocol && !strings.Contains(ce.Reason, "larger than"), 1
	case FaultOversize:
		return outcome, protocol && strings.Contains(ce.Reason, "larger than"), 1
	case FaultCloseSock:
		return outcome, crash && ce.Killed && !protocol && strings.Contains(ce.Reason, "closed its connection"), 1
	case FaultLeak:
		return outcome, crash && ce.Limit == bulkhead.LimitMemory && errors.Is(err, bulkhead.ErrLimitExceeded), 1
	case FaultHang:
		if ca == nil || !errors.Is(err, context.DeadlineExceeded) {
			return outcome, false, 1
		}
		ca.Wait()
		if !ca.Started {
			return outcome, true, 0 // its deadline passed before a worker took it
		}
		return outcome, strings.Contains(ca.Stack, "goroutine "), 1
	}
	return outcome, false, 0
}
