package bulkhead

import (
	"strconv"
	"syscall"
	"time"
)

// CrashRecord is one worker death the pool did not cause: a crash during a
// call or between calls, or a start-up whose process died. The pool keeps
// the latest crashLogSize for a status page (Pool.Snapshot).
type CrashRecord struct {
	Time       time.Time
	PID        int
	Phase      Phase
	Signal     syscall.Signal // the signal that ended it, or 0: it exited with ExitCode
	ExitCode   int
	CoreDumped bool
	Method     string // the call it was running (PhaseCall), or ""
	RequestID  uint64 // the call it was running (PhaseCall), or 0
	// Fingerprint is the call's quarantine fingerprint ("method key" or
	// "method #hash" of its arguments), set only with Config.QuarantineAfter
	// and once the call's caller has seen the crash; "" otherwise.
	Fingerprint string
	Function    string        // the native function it died in, if its crash report says (CrashError.Function)
	CPU         time.Duration // its CPU time over its life (CrashError.CPU)
	MaxRSS      int64         // its peak resident memory over its life, in bytes (CrashError.MaxRSS)
	Limit       Limit         // the resource limit it was killed for, or LimitNone
	Reason      string        // how it ended, in words
	Stderr      string        // the head and tail of its stderr (Config.StderrTail)
}

// crashLogSize is how many crashes the pool remembers.
const crashLogSize = 32

// crashLog is a ring of the latest crashes, guarded by Pool.mu.
type crashLog struct {
	recs [crashLogSize]CrashRecord
	next int // where the next goes
	n    int // how many are kept
}

func (l *crashLog) addLocked(r CrashRecord) {
	l.recs[l.next] = r
	l.next = (l.next + 1) % crashLogSize
	l.n = min(l.n+1, crashLogSize)
}

// listLocked returns the kept crashes, newest first.
func (l *crashLog) listLocked() []CrashRecord {
	out := make([]CrashRecord, 0, l.n)
	for i := 1; i <= l.n; i++ {
		out = append(out, l.recs[(l.next-i+crashLogSize)%crashLogSize])
	}
	return out
}

// fingerprintLocked names the fingerprint of the crash of request id on
// worker pid, if the log has it, and reports whether it did.
func (l *crashLog) fingerprintLocked(pid int, id uint64, fp string) bool {
	for i := range l.recs[:l.n] {
		if r := &l.recs[i]; r.PID == pid && r.RequestID == id && r.Phase == PhaseCall {
			r.Fingerprint = fp
			return true
		}
	}
	return false
}

// String names fp as a crash record shows it.
func (fp *fingerprint) String() string {
	if fp.key != "" {
		return fp.method + " " + fp.key
	}
	return fp.method + " #" + strconv.FormatUint(fp.hash, 16)
}

// recordCrashLocked adds the crash of w, dead in phase with ex, to the log.
// fn is the function it died in (nativeFunction). The fingerprint of its call comes from the caller (noteFingerprint),
// which may see the crash before or after this.
func (p *Pool) recordCrashLocked(w *workerProc, phase Phase, sig syscall.Signal, code int, core bool, why string, limit Limit, fn string) {
	r := CrashRecord{Time: time.Now(), PID: w.PID, Phase: phase, Signal: sig, ExitCode: code, CoreDumped: core,
		Limit: limit, Reason: why, Stderr: w.Stderr.String()}
	r.Function = fn
	r.CPU, r.MaxRSS = usageOf(rusage(w))
	if phase == PhaseCall {
		r.RequestID = w.current.Load()
		if m := w.curMethod.Load(); m != nil {
			r.Method = m.name
		}
		if r.Method == "" {
			r.Method = OtherMethod
		}
		if w.crashFP != nil {
			r.Fingerprint = w.crashFP.String()
		}
	}
	p.crashes.addLocked(r)
}

// noteFingerprintLocked gives the crash record of a call that crashed its
// worker the call's fingerprint: now, if onExit has logged the crash, or
// through w, for onExit to find.
func (p *Pool) noteFingerprintLocked(fp *fingerprint, w *workerProc, err error) {
	ce, ok := err.(*CrashError)
	if !ok || ce.Phase != PhaseCall || ce.AbandonedBy != 0 {
		return
	}
	if !p.crashes.fingerprintLocked(ce.PID, ce.RequestID, fp.String()) {
		w.crashFP = fp
	}
}
