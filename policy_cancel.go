package bulkhead

import (
	"github.com/bulkhead-go/bulkhead/internal/dispatch"
	"time"

	"github.com/bulkhead-go/bulkhead/internal/wire"
)

// The soft cancel (Config.CancelGrace): a call whose ctx ends while a worker
// has it returns at once, and the worker is sent CANCEL and given the grace
// to answer before it is stopped as a hung worker would be. The call keeps
// its hold on the worker meanwhile (an extra hold, which the grace's
// goroutine releases), so that no other call waits behind an abandoned one
// without knowing it.

// orphanEnd is how a call left to the worker ended: its answer, or the
// connection's end.
type orphanEnd struct {
	typ     wire.Type
	payload []byte
	err     error
}

// cancelSoft leaves pd to w for the grace. It returns nil if pd's answer
// came meanwhile, for the caller to take.
func (p *Pool) cancelSoft(w *workerProc, pd *dispatch.Pending, method string, cause error, fp *fingerprint) *CanceledError {
	id := pd.ID()
	ended := make(chan orphanEnd, 1)
	ok := w.Conn.AbandonQueued(pd, func(typ wire.Type, payload []byte, err error) {
		ended <- orphanEnd{typ: typ, payload: errorBody(typ, payload), err: err}
	})
	if !ok {
		return nil
	}
	p.stats.abandoned.Add(1)
	e := &CanceledError{Method: method, RequestID: id, PID: w.PID, Err: cause, ExitCode: -1, stopped: make(chan struct{})}
	p.mu.Lock()
	p.holdCallLocked(w) // the grace's hold; the caller releases its own
	p.wg.Add(1)
	p.unlock()
	w.Conn.SendControl(wire.TypeCancel, id)
	go func() {
		defer p.wg.Done()
		p.graceOf(w, e, ended, fp)
	}()
	return e
}

// errorBody keeps an ERROR's payload (it says whether the call was
// skipped); a REPLY's is dropped.
func errorBody(typ wire.Type, payload []byte) []byte {
	if typ != wire.TypeError {
		return nil
	}
	return append([]byte(nil), payload...)
}

// graceOf waits for the worker to answer the abandoned call, or the grace to
// run out, or the pool to close; then it fills e, closes e.stopped and
// releases the grace's hold.
func (p *Pool) graceOf(w *workerProc, e *CanceledError, ended <-chan orphanEnd, fp *fingerprint) {
	t := time.NewTimer(p.cfg.CancelGrace)
	defer t.Stop()
	select {
	case end := <-ended:
		describeOrphan(w, e, end, "canceled; the worker was sent CANCEL and left running: ")
		close(e.stopped)
		p.release(w, end.err == nil)
		return
	case <-t.C:
	case <-p.done:
	}
	p.mu.Lock()
	alone := w.inflight == 1
	p.retireLocked(w, "hung: no answer within CancelGrace after CANCEL", RecycleNone)
	w.hung++
	w.holdLocked()
	p.unlock()
	w.Conn.MarkAbandoned(e.RequestID)
	w.Conn.Shutdown()
	p.stopHung(w, e, fp, alone) // closes e.stopped
	p.release(w, false)
}

// describeOrphan fills e from how a call left queued or canceled ended.
func describeOrphan(w *workerProc, e *CanceledError, end orphanEnd, prefix string) {
	switch {
	case end.err != nil:
		e.Started = w.HasStarted(e.RequestID)
		e.Reason = prefix + "its connection ended before it answered: " + end.err.Error()
	case end.typ == wire.TypeReply:
		e.Started = true
		e.Reason = prefix + "it ran the call anyway; the result was dropped"
	default:
		body, derr := wire.DecodeError(end.payload)
		e.Started = derr != nil || !skipped(ErrorCode(body.Code), body.Details)
		if e.Started {
			e.Reason = prefix + "it ran the call anyway, which failed: " + body.Message
		} else {
			e.Reason = prefix + "it skipped the call: " + body.Message
		}
	}
}
