package bulkhead

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/bulkhead-go/bulkhead/internal/proc"
	"github.com/bulkhead-go/bulkhead/internal/wire"
)

// stopHung stops a worker whose call outlived its ctx, step by step, fills e
// with how it ended, attributes the call to its fingerprint, and closes
// e.stop:
//
//  1. SIGTERM: a worker whose handler heeds its ctx exits cleanly; skipped
//     for a worker that says SIGTERM only cancels calls, when the call's
//     deadline has passed (the worker cancelled it then already);
//  2. after TermGrace, DumpSignal (SIGQUIT): a Go worker prints the stack of
//     every goroutine, the one stuck in native code included, and exits;
//  3. after DumpGrace, SIGKILL.
//
// It runs on a goroutine of the pool's (callOn starts it, Close waits for
// it), at most TermGrace+DumpGrace, so that the caller need not wait: e.Wait
// waits instead. e.Started is exact: the start marker is read once the worker
// is dead, since a CALL already in its socket could still be started while
// we look. A Go worker that had not started the call exits at SIGTERM.
func (p *Pool) stopHung(w *workerProc, e *CanceledError, fp *fingerprint, alone bool) {
	defer close(e.stop)
	defer p.attributeAlone(fp, alone, e)
	// w.hung keeps the worker's marker page and socket from being released
	// under us (onExit and release leave them to us); let them go at the end.
	defer func() {
		p.mu.Lock()
		w.hung--
		last := w.dropLocked()
		p.unlock()
		if last {
			w.Close()
		}
	}()

	exited := w.Proc.Exited()
	// A worker that says SIGTERM only cancels its calls (HELLO "sigterm")
	// cancelled this call at its deadline already (CALL carries it): a
	// SIGTERM cannot end it sooner, so go straight to the dump.
	skipTerm := w.Hello.SIGTERM == wire.SigtermCancel && errors.Is(e.Err, context.DeadlineExceeded)
	termGrace, step := p.cfg.TermGrace, "exited after SIGTERM"
	if skipTerm {
		termGrace, step = 0, "exited by itself"
	} else {
		_ = w.Proc.Signal(syscall.SIGTERM)
	}
	t := time.NewTimer(termGrace)
	defer t.Stop()
	dumped := false
	select {
	case <-exited:
	case <-t.C:
		_ = w.Proc.Signal(p.cfg.DumpSignal)
		dumped = true
		step = fmt.Sprintf("ignored SIGTERM for %v; exited after %v", p.cfg.TermGrace, p.cfg.DumpSignal)
		if skipTerm {
			step = fmt.Sprintf("%s; exited after %v", skippedTerm, p.cfg.DumpSignal)
		}
		t.Reset(p.cfg.DumpGrace)
		select {
		case <-exited:
		case <-t.C:
			w.Proc.Kill()
			<-exited
			step = fmt.Sprintf("ignored SIGTERM and %v; killed with SIGKILL", p.cfg.DumpSignal)
			if skipTerm {
				step = fmt.Sprintf("%s; ignored %v; killed with SIGKILL", skippedTerm, p.cfg.DumpSignal)
			}
		}
	}
	ex := proc.ExitOf(w.Proc.State())
	e.Started = w.HasStarted(e.RequestID)
	e.ExitCode, e.Signal = ex.Code, ex.Signal
	e.Reason = step + " (" + ex.String() + ")"
	if dumped {
		e.Stack = w.Stderr.String()
	}
	if !e.Started {
		p.cfg.Logger.Info("call abandoned before it started: worker stopped", "pid", w.PID, "method", e.Method,
			"request_id", e.RequestID, "cause", e.Err.Error(), "stopped", e.Reason)
		return
	}
	p.stats.hung.Add(1)
	attrs := []any{"pid", w.PID, "method", e.Method, "request_id", e.RequestID, "cause", e.Err.Error(), "stopped", e.Reason}
	if dumped {
		attrs = append(attrs, "stack_tail", e.Stack)
	}
	p.cfg.Logger.Warn("hung call: worker stopped", attrs...)
}

// skippedTerm starts CanceledError.Reason when stopHung skipped SIGTERM.
const skippedTerm = "skipped SIGTERM (the worker only cancels calls on it, and had cancelled this one at its deadline)"
