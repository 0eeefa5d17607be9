package bulkhead

import (
	"context"
	"log/slog"
	"strings"
	"syscall"
	"time"

	"github.com/bulkhead-go/bulkhead/internal/stackscan"
	"github.com/bulkhead-go/bulkhead/internal/wire"
)

// The slow-call log (Config.SlowCall), PHP-FPM's slowlog: a call that runs
// past SlowCall is logged once, with where its worker's threads are, and
// left running: observing it must not change it, so no signal goes to a
// thread that may be running the call (a signal ends a blocked sleep or
// wait early, EINTR, whatever SA_RESTART says).
//
// Two views. The scanned stacks (internal/stackscan), for any worker: each
// blocked thread's syscall, and the return addresses on its stack, named
// from the ELF files mapped, read from /proc and the worker's memory with
// neither a signal nor ptrace. And the worker's own STACK frame (PROTOCOL.md
// section 3) when its HELLO offers one: the Go SDK's comes from a goroutine
// of its own, asked for with SIGUSR2 sent to a thread the scan found in Go's
// runtime (idle; Go retries its own waits), so that a call stuck in C shows
// its cgo call; a worker whose only threads run calls is not signalled; the
// C SDK's STACK comes only when the program opted in (BH_STACK_ON_SIGUSR2,
// HELLO "SIGUSR2-call-thread"), signalled to the process as it asks. The STACK is read
// by whoever reads the connection: the slow call's own caller, blocked on
// its reply.

// stackWait bounds how long the pool waits for a worker's STACK.
const stackWait = 2 * time.Second

// findSlow starts a report for each call that has run past SlowCall and
// was not reported yet. The report holds the worker (its connection) until
// it is done.
func (p *Pool) findSlow() {
	now := p.metrics.clock()
	p.mu.Lock()
	defer p.unlock()
	if p.closed {
		return
	}
	for w := range p.workers {
		if w.inflight == 0 || w.state == dead {
			continue
		}
		id, since := w.current.Load(), time.Duration(w.curSince.Load())
		if id == 0 || id == w.slowID || since == 0 || now-since < p.cfg.SlowCall {
			continue
		}
		w.slowID = id
		method := OtherMethod
		if m := w.curMethod.Load(); m != nil && m.name != "" {
			method = m.name
		}
		p.stats.slowCalls.Add(1)
		w.holdLocked()
		p.wg.Add(1)
		go p.reportSlow(w, id, method, now-since)
	}
}

// reportSlow scans w's stacks, asks w for its STACK if it offers one
// (stackWait at most, or until w exits or the pool closes), logs the slow
// call, and lets w go.
func (p *Pool) reportSlow(w *workerProc, id uint64, method string, running time.Duration) {
	defer p.wg.Done()
	scan, scanned := p.scanStacks(w)
	stack, why := p.askStack(w, scan)
	stack = symbolizeStack(stack, w.syms, w.PID) // a C SDK worker's unexported frames
	attrs := []any{"pid", w.PID, "method", method, "request_id", id, "running", running, "slow_call", p.cfg.SlowCall}
	if stack != "" {
		attrs = append(attrs, "stack", stack)
	} else {
		attrs = append(attrs, "no_stack", why)
	}
	if scanned {
		attrs = append(attrs, "scanned_stack", scan.String())
	}
	p.cfg.Logger.Log(context.Background(), slog.LevelWarn, "slow call", attrs...)
	p.mu.Lock()
	last := w.dropLocked()
	p.unlock()
	if last {
		w.Close()
	}
}

// scanStacks scans w's threads; scanned is false if w exited meanwhile (its
// PID may then be another process's).
func (p *Pool) scanStacks(w *workerProc) (r stackscan.Report, scanned bool) {
	r = stackscan.Scan(w.PID)
	select {
	case <-w.Proc.Exited():
		return r, false
	default:
		return r, true
	}
}

// askStack signals w for a STACK and returns it, or says why there is none.
// A worker that answers from a thread of its own is signalled there alone,
// on a thread scan found waiting where a signal changes nothing: in Go's
// runtime (an idle thread; Go retries its own waits), or waiting for
// signals. Only a program that opted in to being interrupted (HELLO
// "SIGUSR2-call-thread") has its process signalled.
func (p *Pool) askStack(w *workerProc, scan stackscan.Report) (stack, why string) {
	var err error
	switch w.Hello.Stack {
	case wire.StackSIGUSR2:
		tid := safeThread(scan)
		if tid == 0 {
			return "", "no thread of the worker to signal without interrupting its call (the scanned stacks show it)"
		}
		drainStacks(w)
		err = w.Proc.SignalThread(tid, syscall.SIGUSR2)
	case wire.StackSIGUSR2CallThread:
		drainStacks(w)
		err = w.Proc.Signal(syscall.SIGUSR2)
	default:
		return "", "the worker offers no stacks (HELLO \"stack\")"
	}
	if err != nil {
		return "", "signalling it: " + err.Error()
	}
	t := time.NewTimer(stackWait)
	defer t.Stop()
	select {
	case s := <-w.Conn.Stacks():
		return s, ""
	case <-t.C:
		return "", "no STACK within " + stackWait.String()
	case <-w.Proc.Exited():
		return "", "it exited"
	case <-p.done:
		return "", "the pool closed"
	}
}

// drainStacks drops a STACK nobody took.
func drainStacks(w *workerProc) {
	select {
	case <-w.Conn.Stacks():
	default:
	}
}

// safeThread returns a thread of scan that a signal does not disturb: one
// blocked in Go's runtime (an idle M in futex or epoll, not one in a cgo
// call), or in a wait for signals; or 0.
func safeThread(scan stackscan.Report) int {
	for _, t := range scan.Threads {
		if len(t.Frames) == 0 || t.State.Running {
			continue
		}
		if strings.HasPrefix(t.Frames[0].Func, "runtime.") || stackscan.WaitsForSignals(t.State.NR) {
			return t.TID
		}
	}
	return 0
}
