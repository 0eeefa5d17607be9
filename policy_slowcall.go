package bulkhead

import (
	"context"
	"log/slog"
	"syscall"
	"time"

	"github.com/bulkhead-go/bulkhead/internal/wire"
)

// The slow-call log (Config.SlowCall), PHP-FPM's slowlog: a call that runs
// past SlowCall is logged once, with the stacks of its worker's threads,
// and left running. The stack is the worker's STACK frame (PROTOCOL.md
// section 3), asked for by SIGUSR2 when its HELLO offered it; the Go SDK
// writes it from a goroutine of its own, so a call stuck in C shows the C
// function it is in. It is read by whoever reads the connection: the slow
// call's own caller, blocked on its reply.

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

// reportSlow asks w for its stack, waits for it (stackWait at most, or
// until w exits or the pool closes), logs the slow call, and lets w go.
func (p *Pool) reportSlow(w *workerProc, id uint64, method string, running time.Duration) {
	defer p.wg.Done()
	stack, why := p.askStack(w)
	stack = symbolizeStack(stack, w.syms) // a C SDK worker's unexported frames
	attrs := []any{"pid", w.PID, "method", method, "request_id", id, "running", running, "slow_call", p.cfg.SlowCall}
	if stack != "" {
		attrs = append(attrs, "stack", stack)
	} else {
		attrs = append(attrs, "no_stack", why)
	}
	p.cfg.Logger.Log(context.Background(), slog.LevelWarn, "slow call", attrs...)
	p.mu.Lock()
	last := w.dropLocked()
	p.unlock()
	if last {
		w.Close()
	}
}

// askStack signals w for a STACK and returns it, or says why there is none.
func (p *Pool) askStack(w *workerProc) (stack, why string) {
	if w.Hello.Stack != wire.StackSIGUSR2 {
		return "", "the worker offers no stacks (HELLO \"stack\")"
	}
	select {
	case <-w.Conn.Stacks(): // an old one nobody took
	default:
	}
	if err := w.Proc.Signal(syscall.SIGUSR2); err != nil {
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
