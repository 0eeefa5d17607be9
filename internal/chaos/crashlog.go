package chaos

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
)

// crashMessage is the pool's record of a worker that died unexpectedly.
const crashMessage = "worker crashed"

// crashRecord is one "worker crashed" record of phase call.
type crashRecord struct {
	key  uint64 // the call its worker was running, from the journal; 0 if unknown
	text string // the record's attributes, with the end of the stderr tail
}

// recordCounter is a slog.Handler that counts the pool's "worker crashed"
// records by phase, finds which call each call-phase one was about (the
// last call its worker journaled), and passes every record on to next.
type recordCounter struct {
	next  slog.Handler
	dir   string      // the journals
	attrs []slog.Attr // from WithAttrs
	c     *crashCounts
}

type crashCounts struct {
	mu      sync.Mutex
	byPhase map[string]int
	calls   []crashRecord
}

func newRecordCounter(next slog.Handler, dir string) *recordCounter {
	return &recordCounter{next: next, dir: dir, c: &crashCounts{byPhase: map[string]int{}}}
}

// Enabled is true at every level: each record is counted, whatever next
// keeps.
func (h *recordCounter) Enabled(context.Context, slog.Level) bool { return true }

func (h *recordCounter) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == crashMessage {
		h.count(r)
	}
	if h.next.Enabled(ctx, r.Level) {
		return h.next.Handle(ctx, r)
	}
	return nil
}

// count runs on the goroutine that reaped the worker, before its pid can be
// reused, so that its journal is the newest with that pid.
func (h *recordCounter) count(r slog.Record) {
	phase, pid, stderr := "unknown", int64(0), ""
	var text strings.Builder
	visit := func(a slog.Attr) bool {
		switch a.Key {
		case "phase":
			phase = a.Value.String()
		case "pid":
			pid = a.Value.Int64()
		case "stderr_tail":
			stderr = a.Value.String()
			return true
		}
		fmt.Fprintf(&text, " %s=%q", a.Key, a.Value.String())
		return true
	}
	for _, a := range h.attrs {
		visit(a)
	}
	r.Attrs(visit)
	var rec crashRecord
	if phase == "call" {
		if len(stderr) > 300 {
			stderr = "..." + stderr[len(stderr)-300:]
		}
		fmt.Fprintf(&text, " stderr_tail=%q", stderr)
		rec = crashRecord{key: runningCall(h.dir, int(pid)), text: strings.TrimSpace(text.String())}
	}
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	h.c.byPhase[phase]++
	if phase == "call" {
		h.c.calls = append(h.c.calls, rec)
	}
}

func (h *recordCounter) WithAttrs(as []slog.Attr) slog.Handler {
	return &recordCounter{next: h.next.WithAttrs(as), dir: h.dir, attrs: append(h.attrs[:len(h.attrs):len(h.attrs)], as...), c: h.c}
}

func (h *recordCounter) WithGroup(name string) slog.Handler {
	return &recordCounter{next: h.next.WithGroup(name), dir: h.dir, attrs: h.attrs, c: h.c}
}

// snapshot returns the counts by phase and the call-phase records.
func (h *recordCounter) snapshot() (map[string]int, []crashRecord) {
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	m := make(map[string]int, len(h.c.byPhase))
	for k, v := range h.c.byPhase {
		m[k] = v
	}
	return m, append([]crashRecord(nil), h.c.calls...)
}

// crossCheckCrashes matches the pool's call-phase crash records with what
// the callers were told. Each record must be about a call whose caller got
// a call-phase *CrashError, or whose crash was replayed (flaky), or whose
// worker died of the call's own fault as its deadline passed (the caller
// got a *CanceledError: CrashedWhileCanceled); each caller's *CrashError
// (memory kills included: a kill that fails a call is a crash) must have
// its record; and Stats().CallCrashes must count the records.
func crossCheckCrashes(res *Result, calls []call, j *journal, recs []crashRecord) {
	mismatch := func(s string) {
		res.CrashCountMismatch++
		res.example(&res.CrashRecordExamples, s)
	}
	recorded := make(map[uint64]int, len(recs))
	for _, r := range recs {
		if r.key == 0 || r.key > uint64(len(calls)) {
			mismatch("a record for a worker that journaled no call: " + r.text)
			continue
		}
		recorded[r.key]++
		c := &calls[r.key-1]
		switch {
		case c.seen.crash != nil:
		case c.fault == FaultFlaky && c.err == nil:
		case c.seen.cancel != nil && j.fired[r.key] > 0:
			res.CrashedWhileCanceled++
		default:
			mismatch(fmt.Sprintf("a record for call %d (%s, deadline %v, fired %d), whose caller got %s: %s; record: %s",
				r.key, c.fault, c.deadline, j.fired[r.key], c.seen.outcome, describe(c), r.text))
		}
	}
	for i := range calls {
		c := &calls[i]
		if c.seen.crash != nil && recorded[uint64(i+1)] == 0 {
			mismatch(fmt.Sprintf("call %d (%s): a call-phase CrashError, but no crash record for its worker: %v", i+1, c.fault, c.err))
		}
	}
	if d := absDiff(res.CallCrashes, uint64(len(recs))); d != 0 {
		res.CrashCountMismatch += int(d)
		res.example(&res.CrashRecordExamples, fmt.Sprintf("Stats().CallCrashes %d, \"worker crashed\" phase=call records %d",
			res.CallCrashes, len(recs)))
	}
}

// describe says what a caller was told, with a *CanceledError's stop report.
func describe(c *call) string {
	if ca := c.seen.cancel; ca != nil {
		return fmt.Sprintf("Started %v, Reason %q", ca.Started, ca.Reason)
	}
	return fmt.Sprint(c.err)
}

func absDiff(a, b uint64) uint64 {
	if a > b {
		return a - b
	}
	return b - a
}
