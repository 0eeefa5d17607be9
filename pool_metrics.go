package bulkhead

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/bulkhead-go/bulkhead/internal/wire"
)

// Per-method call counts and durations, the queue's wait, and crashes by
// signal, for a metrics exporter (package promcollect) to read. Counting
// costs a call two clock reads, a map lookup and three atomic adds; the
// methods are those the workers named in HELLO, so a caller cannot grow
// the table (a method no HELLO named is counted as OtherMethod).

// OtherMethod is the method name Metrics counts calls under whose method no
// worker named in its HELLO.
const OtherMethod = "(other)"

// maxMetricMethods bounds the methods Metrics counts apart: a worker that
// names new methods in every HELLO cannot grow the table past it.
const maxMetricMethods = wire.MaxHelloMethods

// Outcome is how a call ended, as Metrics counts it (OutcomeOf).
type Outcome uint8

const (
	OutcomeOK          Outcome = iota // a reply
	OutcomeRemoteError                // the worker's handler returned an error (*RemoteError)
	OutcomeCrashCall                  // the worker died under the started call (*CrashError, PhaseCall)
	OutcomeCrashIdle                  // the worker died before starting it, and it could not go elsewhere (*CrashError, PhaseIdle)
	OutcomeCanceled                   // the caller's ctx ended first (*CanceledError)
	OutcomeOverloaded                 // refused: the queue was full or too slow (*OverloadedError)
	OutcomeUnhealthy                  // refused: workers keep failing (*UnhealthyError)
	OutcomeQuarantined                // refused: calls like it killed workers (*QuarantinedError)
	OutcomeStartFailed                // no worker could be started for it (*StartError)
	OutcomeClosed                     // the pool was closed (ErrClosed)
	OutcomeOther                      // anything else: ErrEncoding, a bad method name
	NumOutcomes                       // the number of outcomes
)

var outcomeNames = [NumOutcomes]string{"ok", "remote_error", "crash_call", "crash_idle", "canceled",
	"overloaded", "unhealthy", "quarantined", "start_failed", "closed", "other"}

func (o Outcome) String() string {
	if o < NumOutcomes {
		return outcomeNames[o]
	}
	return "outcome(" + strconv.Itoa(int(o)) + ")"
}

// OutcomeOf classifies the error of a call (nil is OutcomeOK).
func OutcomeOf(err error) Outcome {
	if err == nil {
		return OutcomeOK
	}
	var ce *CrashError
	switch {
	case errors.As(err, &ce):
		if ce.Phase == PhaseCall {
			return OutcomeCrashCall
		}
		return OutcomeCrashIdle
	case isRemote(err):
		return OutcomeRemoteError
	case errors.Is(err, ErrQuarantined):
		return OutcomeQuarantined
	case errors.Is(err, ErrOverloaded):
		return OutcomeOverloaded
	case errors.Is(err, ErrUnhealthy):
		return OutcomeUnhealthy
	case errors.Is(err, ErrStartFailed):
		return OutcomeStartFailed
	case errors.Is(err, ErrClosed):
		return OutcomeClosed
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return OutcomeCanceled
	}
	return OutcomeOther
}

// durationBounds are the histograms' upper bounds, in nanoseconds: from a
// shared-memory null call (a few µs) to a native call near a long deadline.
var durationBounds = [...]int64{
	10e3, 25e3, 50e3, 100e3, 250e3, 500e3,
	1e6, 2.5e6, 5e6, 10e6, 25e6, 50e6, 100e6, 250e6, 500e6,
	1e9, 2.5e9, 5e9, 10e9, 30e9, 60e9,
}

// DurationBuckets returns the upper bounds of Metrics' histograms, in
// ascending order (a fresh slice).
func DurationBuckets() []time.Duration {
	out := make([]time.Duration, len(durationBounds))
	for i, b := range durationBounds {
		out[i] = time.Duration(b)
	}
	return out
}

// histogram counts durations into durationBounds, with atomics only.
type histogram struct {
	buckets [len(durationBounds) + 1]atomic.Uint64 // the last: above every bound
	sum     atomic.Int64                           // nanoseconds
}

func (h *histogram) observe(d time.Duration) {
	n := int64(d)
	i := 0
	for i < len(durationBounds) && n > durationBounds[i] {
		i++
	}
	h.buckets[i].Add(1)
	h.sum.Add(n)
}

// Histogram is a snapshot of durations counted into DurationBuckets.
type Histogram struct {
	// Counts has one count per bound of DurationBuckets, not cumulative
	// (Counts[i] is the durations above bound i-1 and at most bound i),
	// and a last one for the durations above every bound.
	Counts []uint64
	Count  uint64        // the sum of Counts
	Sum    time.Duration // the durations added up
}

func (h *histogram) snapshot() Histogram {
	s := Histogram{Counts: make([]uint64, len(h.buckets)), Sum: time.Duration(h.sum.Load())}
	for i := range h.buckets {
		s.Counts[i] = h.buckets[i].Load()
		s.Count += s.Counts[i]
	}
	return s
}

// methodMetrics are one method's counters.
type methodMetrics struct {
	name     string
	outcomes [NumOutcomes]atomic.Uint64
	duration histogram
}

// callMetrics are the pool's per-call counters. table is copied on write
// (learnLocked, under Pool.mu, once per new method) and read with one
// atomic load on the call path.
type callMetrics struct {
	epoch time.Time // set by New; clock reads the monotonic time since
	table atomic.Pointer[map[string]*methodMetrics]
	other methodMetrics
	queue histogram // how long calls that found no free worker waited
	// crashSignals counts worker deaths by phase and signal (slot 0: an
	// exit with a status; slot n: signal n).
	crashSignals [PhaseIdle + 1][maxSignal + 1]atomic.Uint64
}

// maxSignal is the highest signal number Linux delivers (SIGRTMAX).
const maxSignal = 64

// clock is the monotonic time since the pool was made: one clock read,
// where time.Now reads two clocks.
func (m *callMetrics) clock() time.Duration { return time.Since(m.epoch) }

func (m *callMetrics) lookup(method string) *methodMetrics {
	if t := m.table.Load(); t != nil {
		if mm := (*t)[method]; mm != nil {
			return mm
		}
	}
	return &m.other
}

// learnLocked adds the methods a worker named in HELLO that the table lacks.
// Called with Pool.mu held, which serialises writers.
func (m *callMetrics) learnLocked(methods []string) {
	old := m.table.Load()
	var missing int
	for _, name := range methods {
		if old == nil || (*old)[name] == nil {
			missing++
		}
	}
	if missing == 0 {
		return
	}
	n := 0
	if old != nil {
		n = len(*old)
	}
	t := make(map[string]*methodMetrics, n+missing)
	if old != nil {
		for k, v := range *old {
			t[k] = v
		}
	}
	for _, name := range methods {
		if len(t) >= maxMetricMethods {
			break
		}
		if t[name] == nil && name != OtherMethod {
			t[name] = &methodMetrics{name: name}
		}
	}
	m.table.Store(&t)
}

// crashed counts a worker's death in phase by how it ended.
func (m *callMetrics) crashed(phase Phase, sig syscall.Signal) {
	if phase < PhaseStartup || phase > PhaseIdle {
		return
	}
	slot := int(sig)
	if slot < 0 || slot > maxSignal {
		slot = 0
	}
	m.crashSignals[phase][slot].Add(1)
}

// MethodMetrics are the calls of one method.
type MethodMetrics struct {
	Method   string   // as named in a HELLO, or OtherMethod
	Outcomes []uint64 // calls by Outcome (indexed by it)
	Duration Histogram
}

// CrashCount counts the worker deaths of one phase and signal.
type CrashCount struct {
	Phase  Phase
	Signal syscall.Signal // 0: the worker exited with a status
	Count  uint64
}

// Metrics are a pool's cumulative per-call figures, for an exporter.
// Each value is read atomically, the whole not at one instant.
type Metrics struct {
	// Methods lists every method a worker named in HELLO (up to 4096),
	// and OtherMethod, in no particular order.
	Methods []MethodMetrics
	// QueueWait is how long calls that found no free worker waited for
	// one; calls that found one at once are not in it.
	QueueWait Histogram
	// Crashes counts the workers that died on their own (recycled and
	// stopped ones are not crashes), by phase and signal; only counts above
	// zero are listed. Start-up deaths are the start failures whose
	// process exited or was killed before HELLO.
	Crashes []CrashCount
}

// Metrics returns the pool's per-method call counts and durations, queue
// wait and crashes by signal. It takes no lock.
func (p *Pool) Metrics() Metrics {
	m := &p.metrics
	var out Metrics
	add := func(mm *methodMetrics) {
		x := MethodMetrics{Method: mm.name, Outcomes: make([]uint64, NumOutcomes), Duration: mm.duration.snapshot()}
		if mm == &m.other {
			x.Method = OtherMethod
		}
		for i := range mm.outcomes {
			x.Outcomes[i] = mm.outcomes[i].Load()
		}
		out.Methods = append(out.Methods, x)
	}
	if t := m.table.Load(); t != nil {
		for _, mm := range *t {
			add(mm)
		}
	}
	add(&m.other)
	out.QueueWait = m.queue.snapshot()
	for ph := PhaseStartup; ph <= PhaseIdle; ph++ {
		for sig := range m.crashSignals[ph] {
			if n := m.crashSignals[ph][sig].Load(); n > 0 {
				out.Crashes = append(out.Crashes, CrashCount{Phase: ph, Signal: syscall.Signal(sig), Count: n})
			}
		}
	}
	return out
}
