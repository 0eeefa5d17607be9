package chaos

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"syscall"
	"testing"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/internal/wire"
)

// synth is one synthetic call for the audit: what its caller was told,
// and what the workers journaled.
type synth struct {
	fault   Fault
	answers int32
	err     error
	reply   uint64 // 0: the call's own key
	starts  int
	fired   int
}

// auditOf audits synthetic calls (call i has key i+1).
func auditOf(race bool, ss ...synth) (*Result, []call, *journal) {
	calls := make([]call, len(ss))
	j := &journal{starts: make([]int, len(ss)+1), fired: make([]int, len(ss)+1)}
	for i, s := range ss {
		c := &calls[i]
		c.fault, c.err = s.fault, s.err
		c.answers.Store(s.answers)
		if s.err == nil {
			c.decoded, c.reply = true, uint64(i+1)
			if s.reply != 0 {
				c.reply = s.reply
			}
		}
		j.starts[i+1], j.fired[i+1] = s.starts, s.fired
	}
	res := newResult(&Options{Race: Race{Enabled: race}})
	res.Calls = len(ss)
	audit(res, calls, j, race)
	return res, calls, j
}

func crash(sig syscall.Signal) error {
	return &bulkhead.CrashError{Phase: bulkhead.PhaseCall, PID: 7, RequestID: 1, Signal: sig, Reason: "killed by signal"}
}

func protocolCrash(reason string) error {
	return &bulkhead.CrashError{Phase: bulkhead.PhaseCall, Killed: true, Signal: syscall.SIGKILL, Reason: reason,
		Err: fmt.Errorf("frame: %w", wire.ErrProtocol)}
}

func canceled(started bool) error {
	return &bulkhead.CanceledError{Method: "call", Err: context.DeadlineExceeded, Started: started}
}

func TestAudit(t *testing.T) {
	type counts struct{ answered, lost, dup, mis, spurious, ok, cStarted, cNot, crashErrs int }
	ok := synth{fault: FaultNone, answers: 1, starts: 1}
	tests := []struct {
		name string
		race bool
		call synth
		want counts
	}{
		{"success", false, ok, counts{answered: 1, ok: 1}},
		{"lost: never answered", false, synth{fault: FaultNone, starts: 1}, counts{lost: 1}},
		{"lost: success without a start", false, synth{fault: FaultNone, answers: 1}, counts{answered: 1, lost: 1, ok: 1}},
		{"answered twice", false, synth{fault: FaultNone, answers: 2, starts: 1}, counts{dup: 1, ok: 1}},
		{"started twice", false, synth{fault: FaultNone, answers: 1, starts: 2}, counts{answered: 1, dup: 1, ok: 1}},
		{"wrong result", false, synth{fault: FaultNone, answers: 1, starts: 1, reply: 99}, counts{answered: 1, mis: 1}},
		{"segv as segv", false, synth{fault: FaultSegv, answers: 1, err: crash(syscall.SIGSEGV), starts: 1, fired: 1}, counts{answered: 1, crashErrs: 1}},
		{"segv as abort", false, synth{fault: FaultSegv, answers: 1, err: crash(syscall.SIGABRT), starts: 1, fired: 1}, counts{answered: 1, mis: 1, crashErrs: 1}},
		{"segv that succeeded", false, synth{fault: FaultSegv, answers: 1, starts: 1, fired: 1}, counts{answered: 1, mis: 1}},
		{"crash no fault explains", false, synth{fault: FaultSegv, answers: 1, err: crash(syscall.SIGSEGV), starts: 1}, counts{answered: 1, spurious: 1, crashErrs: 1}},
		{"garbage as a protocol crash", false, synth{fault: FaultGarbage, answers: 1, err: protocolCrash("broke the protocol"), starts: 1, fired: 1}, counts{answered: 1, crashErrs: 1}},
		{"ring lie as a protocol crash", false, synth{fault: FaultRingBack, answers: 1, err: protocolCrash("broke the protocol"), starts: 1, fired: 1}, counts{answered: 1, crashErrs: 1}},
		{"ring lie not seen", false, synth{fault: FaultRingTorn, answers: 1, err: canceled(true), starts: 1, fired: 1}, counts{answered: 1, mis: 1, cStarted: 1}},
		{"hang not started", false, synth{fault: FaultHang, answers: 1, err: canceled(false)}, counts{answered: 1, cNot: 1}},
		{"crash claimed started, never journaled", false, synth{fault: FaultAbort, answers: 1, err: crash(syscall.SIGABRT), fired: 1}, counts{answered: 1, mis: 1, crashErrs: 1}},

		{"race: success", true, ok, counts{answered: 1, ok: 1}},
		{"race: canceled, started", true, synth{fault: FaultNone, answers: 1, err: canceled(true), starts: 1}, counts{answered: 1, cStarted: 1}},
		{"race: canceled, not started", true, synth{fault: FaultNone, answers: 1, err: canceled(false)}, counts{answered: 1, cNot: 1}},
		{"race: Started false, but journaled", true, synth{fault: FaultNone, answers: 1, err: canceled(false), starts: 1}, counts{answered: 1, mis: 1, cNot: 1}},
		{"race: Started true, never journaled", true, synth{fault: FaultNone, answers: 1, err: canceled(true)}, counts{answered: 1, mis: 1, cStarted: 1}},
		{"race: canceled segv", true, synth{fault: FaultSegv, answers: 1, err: canceled(true), starts: 1, fired: 1}, counts{answered: 1, cStarted: 1}},
		{"race: spurious crash", true, synth{fault: FaultNone, answers: 1, err: crash(0), starts: 1}, counts{answered: 1, spurious: 1, crashErrs: 1}},
		{"race: a fault call that succeeded", true, synth{fault: FaultExit, answers: 1, starts: 1}, counts{answered: 1, mis: 1}},
		{"race: canceled by the caller, not the deadline", true, synth{fault: FaultNone, answers: 1,
			err: &bulkhead.CanceledError{Err: context.Canceled}}, counts{answered: 1, mis: 1, cNot: 1}},
		{"race: another error", true, synth{fault: FaultNone, answers: 1, err: errors.New("boom"), starts: 1}, counts{answered: 1, mis: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _, _ := auditOf(tt.race, tt.call)
			got := counts{r.AnsweredOnce, r.Lost, r.Duplicated, r.Misclassified, r.SpuriousCrashes, r.Succeeded,
				r.CanceledStarted, r.CanceledNotStarted, r.CallCrashErrors}
			if got != tt.want {
				t.Errorf("got %+v, want %+v (examples %q)", got, tt.want, r.Examples)
			}
			failed := tt.want.lost+tt.want.dup+tt.want.mis+tt.want.spurious > 0 || tt.want.answered != 1
			if r.ok() == failed {
				t.Errorf("ok() = %v with %+v", r.ok(), got)
			}
		})
	}
}

func TestCrossCheckCrashes(t *testing.T) {
	segv := synth{fault: FaultSegv, answers: 1, err: crash(syscall.SIGSEGV), starts: 1, fired: 1}
	none := synth{fault: FaultNone, answers: 1, starts: 1}
	flaky := synth{fault: FaultFlaky, answers: 1, starts: 2, fired: 1}
	cancelSegv := synth{fault: FaultSegv, answers: 1, err: canceled(true), starts: 1, fired: 1}
	cancelNone := synth{fault: FaultNone, answers: 1, err: canceled(true), starts: 1}
	rec := func(key uint64) crashRecord { return crashRecord{key: key, text: "pid=1"} }
	tests := []struct {
		name        string
		calls       []synth
		recs        []crashRecord
		stats       uint64 // Stats().CallCrashes
		replayed    uint64
		mismatch    int
		whileCancel int
	}{
		{"each crash recorded once", []synth{segv, none, segv}, []crashRecord{rec(1), rec(3)}, 2, 0, 0, 0},
		{"a replayed crash", []synth{flaky}, []crashRecord{rec(1)}, 1, 1, 0, 0},
		{"a crash as the deadline passed", []synth{cancelSegv}, []crashRecord{rec(1)}, 1, 0, 0, 1},
		{"a record for a success", []synth{none}, []crashRecord{rec(1)}, 1, 0, 1, 0},
		{"a record for a canceled call that fired nothing", []synth{cancelNone}, []crashRecord{rec(1)}, 1, 0, 1, 0},
		{"a record for no journaled call", []synth{none}, []crashRecord{rec(0)}, 1, 0, 1, 0},
		{"a crash error without a record", []synth{segv}, nil, 0, 0, 1, 0},
		{"stats count one more", []synth{segv}, []crashRecord{rec(1)}, 2, 0, 1, 0},
		{"stats count one fewer", []synth{segv, segv}, []crashRecord{rec(1), rec(2)}, 1, 0, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, calls, j := auditOf(false, tt.calls...)
			res.CallCrashes, res.Replayed = tt.stats, tt.replayed
			crossCheckCrashes(res, calls, j, tt.recs)
			if res.CrashCountMismatch != tt.mismatch || res.CrashedWhileCanceled != tt.whileCancel {
				t.Errorf("mismatch %d, crashed while canceled %d; want %d, %d (%q)",
					res.CrashCountMismatch, res.CrashedWhileCanceled, tt.mismatch, tt.whileCancel, res.CrashRecordExamples)
			}
		})
	}
}

func TestJournalRecords(t *testing.T) {
	rec := func(key uint64, magic uint32) []byte {
		var r [recordSize]byte
		putRecord(&r, key, 42, magic)
		return r[:]
	}
	join := slices.Concat[[]byte]
	tests := []struct {
		name          string
		b             []byte
		err           bool
		starts, fired int // of key 2
	}{
		{"start and firing", join(rec(2, recordMagic), rec(2, firedMagic)), false, 1, 1},
		{"two starts", join(rec(2, recordMagic), rec(1, recordMagic), rec(2, recordMagic)), false, 2, 0},
		{"torn record", rec(2, recordMagic)[:10], true, 0, 0},
		{"bad magic", rec(2, 0x1234), true, 0, 0},
		{"key beyond the calls", rec(9, recordMagic), true, 0, 0},
		{"key 0", rec(0, recordMagic), true, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := &journal{starts: make([]int, 4), fired: make([]int, 4)}
			err := j.add(tt.b)
			if (err != nil) != tt.err || j.starts[2] != tt.starts || j.fired[2] != tt.fired {
				t.Errorf("err %v, starts %d, fired %d; want error %v, %d, %d", err, j.starts[2], j.fired[2], tt.err, tt.starts, tt.fired)
			}
		})
	}
}
