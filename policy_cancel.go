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
	return p.leaveToWorker(w, pd, method, cause, fp, p.cfg.CancelGrace)
}

// leaveToWorker gives pd, whose caller's ctx ended, to the worker: it is
// sent CANCEL, and a goroutine the pool owns, holding the worker (its
// start marker and its slot) meanwhile, waits for its answer; with a grace,
// only that long before it stops the worker. It returns nil if pd's answer
// came meanwhile, for the caller to take.
func (p *Pool) leaveToWorker(w *workerProc, pd *dispatch.Pending, method string, cause error, fp *fingerprint, grace time.Duration) *CanceledError {
	id := pd.ID()
	ended := make(chan orphanEnd, 1)
	ok := w.Conn.AbandonQueued(pd, func(typ wire.Type, payload []byte, err error) {
		ended <- orphanEnd{typ: typ, payload: errorBody(typ, payload), err: err}
	})
	if !ok {
		return nil
	}
	p.stats.abandoned.Add(1)
	e := (&CanceledError{Method: method, RequestID: id, PID: w.PID, Err: cause, ExitCode: -1}).arm()
	p.mu.Lock()
	p.holdCallLocked(w) // the goroutine's hold; the caller releases its own
	p.wg.Add(1)
	p.unlock()
	w.Conn.SendControl(wire.TypeCancel, id)
	go func() {
		defer p.wg.Done()
		p.graceOf(w, e, ended, fp, grace)
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

// graceOf waits for the worker to answer the abandoned call, or the grace
// (if any) to run out, or the pool to close; then it fills e, closes
// e.stop and releases its hold. If the connection broke first, the
// start marker says whether the call started only once the worker is dead
// (a CALL in its buffer could still start), so it has the worker finished
// and waits for that.
func (p *Pool) graceOf(w *workerProc, e *CanceledError, ended <-chan orphanEnd, fp *fingerprint, grace time.Duration) {
	var timeout <-chan time.Time
	var closing <-chan struct{} // a queued call's worker answers it before Close stops it
	if grace > 0 {
		t := time.NewTimer(grace)
		defer t.Stop()
		timeout = t.C
		closing = p.done
	}
	prefix := "abandoned while queued on the worker, which was left running; "
	if grace > 0 {
		prefix = "canceled; the worker was sent CANCEL and left running: "
	}
	select {
	case end := <-ended:
		if end.err != nil {
			w.finish()
			<-w.Proc.Exited()
		}
		describeOrphan(w, e, end, prefix)
		close(e.stop)
		p.release(w, end.err == nil)
		return
	case <-timeout:
	case <-closing:
	}
	p.mu.Lock()
	alone := w.inflight == 1
	p.retireLocked(w, "hung: no answer within CancelGrace after CANCEL", RecycleNone)
	w.hung++
	w.holdLocked()
	p.unlock()
	w.Conn.MarkAbandoned(e.RequestID)
	w.Conn.Shutdown()
	p.stopHung(w, e, fp, alone) // closes e.stop
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
