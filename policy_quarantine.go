package bulkhead

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"strconv"
	"time"

	"github.com/bulkhead-go/bulkhead/internal/wire"
)

// fingerprint identifies "the same request" for quarantine: the method and
// either the caller's key or a hash of the encoded arguments.
type fingerprint struct {
	method string
	key    string
	hash   uint64
}

type fingerprintKey struct{}

// maxKeyBytes bounds a caller's fingerprint key as stored; a longer key is
// shortened and suffixed with its hash.
const maxKeyBytes = 256

// WithFingerprint returns a ctx whose calls are fingerprinted for quarantine
// by key (with the method) instead of by a hash of their arguments. Use it
// when arguments differ in ways that do not matter (a timestamp, a request
// id) or are expensive to hash.
func WithFingerprint(ctx context.Context, key string) context.Context {
	return context.WithValue(ctx, fingerprintKey{}, key)
}

// quarantine tracks worker deaths per fingerprint. Guarded by Pool.mu.
type quarantine struct {
	after  int
	window time.Duration
	ttl    time.Duration
	max    int
	log    func(msg string, args ...any)
	seed   maphash.Seed
	recs   map[fingerprint]*qrec
}

type qrec struct {
	deaths []time.Time // the latest `after` deaths, a ring
	next   int
	n      int // deaths recorded, at most len(deaths)
	total  int
	last   error
	since  time.Time // put in quarantine; zero if it is not
	until  time.Time
}

func newQuarantine(s *settings) *quarantine {
	return &quarantine{
		after: s.QuarantineAfter, window: s.QuarantineWindow, ttl: s.QuarantineFor, max: s.QuarantineMax,
		log:  s.Logger.Warn,
		seed: maphash.MakeSeed(),
		recs: make(map[fingerprint]*qrec),
	}
}

// fingerprint computes a call's fingerprint: only when quarantine is on.
func (q *quarantine) fingerprint(ctx context.Context, method string, args []any) (fingerprint, error) {
	if k, ok := ctx.Value(fingerprintKey{}).(string); ok {
		if len(k) > maxKeyBytes {
			k = k[:maxKeyBytes-17] + "#" + strconv.FormatUint(maphash.String(q.seed, k), 16)
		}
		return fingerprint{method: method, key: k}, nil
	}
	b, err := wire.Marshal(args)
	if err != nil {
		return fingerprint{}, err
	}
	return fingerprint{method: method, hash: maphash.Bytes(q.seed, b)}, nil
}

// checkLocked fails a call whose fingerprint is in quarantine, and forgets
// an entry whose quarantine has expired. O(1): a map lookup, and the clock
// only for a fingerprint with a record.
func (q *quarantine) checkLocked(fp *fingerprint, method string, now func() time.Time) error {
	r := q.recs[*fp]
	if r == nil || r.until.IsZero() {
		return nil
	}
	t := now()
	if t.Before(r.until) {
		return &QuarantinedError{Method: method, Key: fp.key, ArgsHash: fp.hash, Deaths: r.total, Until: r.until,
			Last: r.last, Reason: fmt.Sprintf("%d workers died running calls like it; quarantined until %s",
				r.total, r.until.Format(time.RFC3339))}
	}
	delete(q.recs, *fp)
	return nil
}

// recordLocked attributes a worker death to fp and quarantines fp after
// `after` deaths within the window. It reports whether fp became
// quarantined.
func (q *quarantine) recordLocked(fp *fingerprint, err error, now time.Time) bool {
	r := q.recs[*fp]
	if r != nil && !r.until.IsZero() && !now.Before(r.until) {
		delete(q.recs, *fp) // expired: start over
		r = nil
	}
	if r == nil {
		if len(q.recs) >= q.max {
			q.evict(now)
		}
		r = &qrec{deaths: make([]time.Time, q.after)}
		q.recs[*fp] = r
	}
	r.total++
	r.last = err
	r.deaths[r.next] = now
	r.next = (r.next + 1) % len(r.deaths)
	r.n = min(r.n+1, len(r.deaths))
	oldest := r.deaths[r.next%len(r.deaths)]
	if r.n < len(r.deaths) {
		oldest = r.deaths[0]
	}
	if !r.until.IsZero() || r.n < q.after || now.Sub(oldest) > q.window {
		return false
	}
	r.since, r.until = now, now.Add(q.ttl)
	q.log("request quarantined", "method", fp.method, "key", fp.key, "args_hash", fp.hash,
		"deaths", r.total, "until", r.until, "last", err.Error())
	return true
}

// evict makes room: it drops records whose deaths are all outside the
// window, or failing that the record with the oldest last death, preferring
// one not in quarantine. O(n), and only when the table is full.
func (q *quarantine) evict(now time.Time) {
	var victim *fingerprint
	var victimLast time.Time
	victimQuarantined := true
	for fp, r := range q.recs {
		last := r.deaths[(r.next+len(r.deaths)-1)%len(r.deaths)]
		inQ := !r.until.IsZero() && now.Before(r.until)
		if !inQ && now.Sub(last) > q.window {
			delete(q.recs, fp)
			continue
		}
		if victim == nil || (victimQuarantined && !inQ) || (victimQuarantined == inQ && last.Before(victimLast)) {
			f := fp
			victim, victimLast, victimQuarantined = &f, last, inQ
		}
	}
	if len(q.recs) >= q.max && victim != nil {
		delete(q.recs, *victim)
	}
}

func (q *quarantine) countLocked(now time.Time) int {
	n := 0
	for _, r := range q.recs {
		if !r.until.IsZero() && now.Before(r.until) {
			n++
		}
	}
	return n
}

// attribute charges a worker death to the fingerprint of the call that was
// on it. Only a started call alone on its worker is charged: with several
// calls in flight the culprit is unknown, and a death before the call
// started (or between calls) is nobody's.
func (p *Pool) attribute(fp *fingerprint, w *workerProc, err error) {
	if fp == nil || err == nil {
		return
	}
	if ce, ok := err.(*CrashError); ok {
		ce.Fingerprint = fp.String() // the caller's error, not yet returned
	}
	p.mu.Lock()
	alone := w.inflight == 1
	p.noteFingerprintLocked(fp, w, err)
	p.unlock()
	p.attributeAlone(fp, alone, err)
}

// attributeAlone is attribute for a call whose worker, when the call was
// lost, had no other call in flight (alone): only then is it to blame. A
// hung call is attributed once its worker is stopped, when its caller has
// long let the worker go, so alone is taken when the call was abandoned.
func (p *Pool) attributeAlone(fp *fingerprint, alone bool, err error) {
	if fp == nil || err == nil || !alone {
		return
	}
	var ce *CrashError
	if errors.As(err, &ce) && ce.Phase != PhaseCall {
		return
	}
	var ca *CanceledError
	if errors.As(err, &ca) && (!ca.Started || !errors.Is(ca.Err, context.DeadlineExceeded)) {
		// A hang is a call that outlived its deadline. A caller that
		// hung up early says nothing about the request.
		return
	}
	p.mu.Lock()
	if !p.closed && p.quar.recordLocked(fp, err, p.now()) {
		p.stats.quarantines.Add(1)
	}
	p.unlock()
}

// QuarantineEntry describes one quarantined fingerprint.
type QuarantineEntry struct {
	Method   string
	Key      string // the caller's key (WithFingerprint), or ""
	ArgsHash uint64 // the hash of the arguments, when Key is ""
	Deaths   int    // worker deaths attributed to it
	Since    time.Time
	Until    time.Time // when it expires
	Last     error     // the latest crash attributed to it
}

// Quarantined lists the fingerprints in quarantine now, soonest to expire
// first. Expired entries are not listed.
func (p *Pool) Quarantined() []QuarantineEntry {
	if p.quar == nil {
		return nil
	}
	p.mu.Lock()
	defer p.unlock()
	now := p.now()
	var out []QuarantineEntry
	for fp, r := range p.quar.recs {
		if !r.until.IsZero() && now.Before(r.until) {
			out = append(out, QuarantineEntry{Method: fp.method, Key: fp.key, ArgsHash: fp.hash, Deaths: r.total,
				Since: r.since, Until: r.until, Last: r.last})
		}
	}
	slices.SortFunc(out, func(a, b QuarantineEntry) int { return a.Until.Compare(b.Until) })
	return out
}

// Unquarantine lifts the quarantine of e's fingerprint (an entry returned by
// Quarantined), for example once the cause is fixed. It reports whether
// there was one.
func (p *Pool) Unquarantine(e QuarantineEntry) bool {
	if p.quar == nil {
		return false
	}
	p.mu.Lock()
	defer p.unlock()
	fp := fingerprint{method: e.Method, key: e.Key, hash: e.ArgsHash}
	if _, ok := p.quar.recs[fp]; !ok {
		return false
	}
	delete(p.quar.recs, fp)
	return true
}
