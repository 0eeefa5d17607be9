// The bulkhead contender.

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/worker"
)

func init() {
	bulkheadFactory = func(cfg *config) []Contender {
		return []Contender{&bulkheadContender{cfg: cfg},
			&bulkheadVariant{cfg: cfg, name: "bulkhead_shm", label: "bulkhead Pool.Call, shared memory",
				tune: func(c *bulkhead.Config) { c.Transport = bulkhead.TransportShm }},
			&bulkheadVariant{cfg: cfg, name: "bulkhead_pipelined", label: "bulkhead Pool.Call, Pipeline: 8",
				tune: func(c *bulkhead.Config) { c.Pipeline = 8 }},
			&bulkheadActivation{cfg: cfg},
			&bulkheadVariant{cfg: cfg, name: "bulkhead_shm_pipelined", label: "bulkhead Pool.Call, shared memory, Pipeline: 8",
				tune: func(c *bulkhead.Config) { c.Transport, c.Pipeline = bulkhead.TransportShm, 8 }},
		}
	}
	bulkheadChildMain = bulkheadChild
}

// bulkheadContender is bulkhead's Pool.Call with cfg.servers workers, each
// a re-execution of this binary serving "null", "echo" and "crash".
type bulkheadContender struct {
	cfg   *config
	pool  *bulkhead.Pool // cfg.servers workers: latency, throughput, echo
	one   *bulkhead.Pool // one worker: crash and replacement
	spare *bulkhead.Pool // one worker and one warm spare: crash and promotion
}

const bulkheadChildEnv = "BENCH_CHILD=bulkhead"

func (b *bulkheadContender) Name() string  { return "bulkhead" }
func (b *bulkheadContender) Label() string { return "bulkhead Pool.Call" }

func newBenchPool(ctx context.Context, workers int) (*bulkhead.Pool, error) {
	return newBenchPoolTuned(ctx, workers, nil)
}

// newBenchPoolTuned starts a pool of workers with the default Config, which
// tune, if not nil, adjusts.
func newBenchPoolTuned(ctx context.Context, workers int, tune func(*bulkhead.Config)) (*bulkhead.Pool, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cfg := bulkhead.Config{
		Command: exe,
		Env:     append(os.Environ(), bulkheadChildEnv),
		Workers: workers,
	}
	if tune != nil {
		tune(&cfg)
	}
	p, err := bulkhead.New(ctx, cfg)
	if err != nil {
		return nil, err
	}
	for len(p.Workers()) < workers { // all ready before anything is timed
		if _, err := p.Call(ctx, "null"); err != nil {
			p.Close(ctx)
			return nil, err
		}
	}
	return p, nil
}

// bulkheadVariant is Pool.Call with the same workers under another Config:
// the shared-memory transport (frames on futex-doorbell rings instead of
// the socket), Config.Pipeline, or both.
type bulkheadVariant struct {
	cfg         *config
	name, label string
	tune        func(*bulkhead.Config)
	pool        *bulkhead.Pool
}

func (b *bulkheadVariant) Name() string  { return b.name }
func (b *bulkheadVariant) Label() string { return b.label }

func (b *bulkheadVariant) Setup(ctx context.Context) (err error) {
	b.pool, err = newBenchPoolTuned(ctx, b.cfg.servers, b.tune)
	return err
}

func (b *bulkheadVariant) Close() error {
	if b.pool == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := b.pool.Close(ctx)
	b.pool = nil
	return err
}

func (b *bulkheadVariant) Latency(ctx context.Context, d time.Duration) (Sample, error) {
	return poolLatency(ctx, b.pool, d)
}

func (b *bulkheadVariant) Throughput(ctx context.Context, d time.Duration) (Sample, error) {
	return measureParallel(ctx, d, b.cfg.callers, b.cfg.servers, false, workerPids, func(int) error {
		_, err := b.pool.Call(ctx, "null")
		return err
	})
}

func (b *bulkheadContender) Setup(ctx context.Context) error {
	var err error
	if b.pool, err = newBenchPool(ctx, b.cfg.servers); err != nil {
		return err
	}
	if b.one, err = newBenchPool(ctx, 1); err != nil {
		return err
	}
	if b.spare, err = newBenchPoolTuned(ctx, 1, func(c *bulkhead.Config) { c.Spares = 1 }); err != nil {
		return err
	}
	for _, p := range []*bulkhead.Pool{b.pool, b.one, b.spare} {
		if _, err := p.Call(ctx, "null"); err != nil {
			return fmt.Errorf("first call: %w", err)
		}
	}
	return nil
}

func (b *bulkheadContender) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var errs []error
	for _, p := range []*bulkhead.Pool{b.pool, b.one, b.spare} {
		if p != nil {
			errs = append(errs, p.Close(ctx))
		}
	}
	b.pool, b.one, b.spare = nil, nil, nil
	return errors.Join(errs...)
}

// workerPids finds the workers among our children by their environment: the
// Pool does not need to expose pids for the CPU accounting.
func workerPids() []int { return childrenWithEnv(bulkheadChildEnv) }

func (b *bulkheadContender) Latency(ctx context.Context, d time.Duration) (Sample, error) {
	return poolLatency(ctx, b.pool, d)
}

func poolLatency(ctx context.Context, p *bulkhead.Pool, d time.Duration) (Sample, error) {
	return measureLatency(ctx, d, workerPids, func() error {
		_, err := p.Call(ctx, "null")
		return err
	})
}

func (b *bulkheadContender) Throughput(ctx context.Context, d time.Duration) (Sample, error) {
	return measureParallel(ctx, d, b.cfg.callers, b.cfg.servers, false, workerPids, func(int) error {
		_, err := b.pool.Call(ctx, "null")
		return err
	})
}

func (b *bulkheadContender) Echo(ctx context.Context, size int, d time.Duration) (Sample, error) {
	in := make([]byte, size)
	var got int
	s, err := measureLatency(ctx, d, workerPids, func() error {
		r, err := b.pool.Call(ctx, "echo", in)
		if err != nil {
			return err
		}
		var out []byte
		if err := r.Decode(&out); err != nil {
			return err
		}
		got = len(out)
		r.Release() // done with out: its memory serves the next reply
		return nil
	})
	if err == nil && got != size {
		err = fmt.Errorf("echo returned %d bytes, want %d", got, size)
	}
	return s, err
}

// Extras measures crash -> replacement as a caller sees it: from the call
// that kills the only worker until a null call has succeeded again, on a
// pool without a spare (respawn_us: the replacement is a new process) and
// on one with a warm spare (respawn_spare_us: the spare is promoted).
//
// Compared with the process-start probe (fork/exec until one byte back),
// respawn_us also holds: the crash call itself, that is the worker's own
// exit (the kernel tearing a Go process down) and its reaping, which the
// CrashError's exit status needs; the pool's launch work (socket pair,
// start-marker memfd, fork/exec from the spawning thread); the worker's
// HELLO; and one null call. respawn_spare_us holds only the crash call and
// the null call. crash_call_us is the crash call alone (no spare), so that
// respawn_us - crash_call_us is the part a replacement process costs.
func (b *bulkheadContender) Extras(ctx context.Context) (map[string]float64, error) {
	plain, crash, err := crashToCall(ctx, b.one)
	if err != nil {
		return nil, err
	}
	if err := spareReady(ctx, b.spare); err != nil {
		return nil, err
	}
	promoted := b.spare.Stats().Promoted
	spare, _, err := crashToCall(ctx, b.spare)
	if err != nil {
		return nil, err
	}
	if b.spare.Stats().Promoted != promoted+1 {
		return nil, errors.New("the crash with a spare ready did not promote it")
	}
	return map[string]float64{"respawn_us": us(plain), "respawn_spare_us": us(spare), "crash_call_us": us(crash)}, nil
}

// crashToCall kills p's worker with a "crash" call and returns the time
// until a null call has succeeded again, and the crash call's own time.
func crashToCall(ctx context.Context, p *bulkhead.Pool) (total, crash time.Duration, err error) {
	t0 := time.Now()
	if _, err := p.Call(ctx, "crash"); err == nil {
		return 0, 0, errors.New(`"crash" call succeeded; the worker should have died`)
	}
	crash = time.Since(t0)
	deadline := t0.Add(10 * time.Second)
	for tries := 0; ; tries++ {
		_, err := p.Call(ctx, "null")
		if err == nil {
			return time.Since(t0), crash, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return 0, 0, fmt.Errorf("no working worker %v after a crash (%d tries): %w", time.Since(t0), tries, err)
		}
	}
}

// spareReady waits, bounded, for p's spare to be up: the previous round's
// crash used it, and its successor starts in the background.
func spareReady(ctx context.Context, p *bulkhead.Pool) error {
	deadline := time.Now().Add(10 * time.Second)
	for p.Stats().Spares == 0 {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("no spare ready after 10s: %+v", p.Stats())
		}
		time.Sleep(time.Millisecond) // polling a counter; nothing announces it
	}
	return nil
}

// Finish runs alone after the other contenders are closed: null-call latency
// of a pool of 256 idle workers against a pool of 1, interleaved over rounds.
// A ratio near 1 means idle workers cost the hot path nothing.
func (b *bulkheadContender) Finish(ctx context.Context, rounds int, d time.Duration) (map[string][]float64, error) {
	t0 := time.Now()
	big, err := newBenchPool(ctx, 256)
	if err != nil {
		return nil, err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		big.Close(cctx)
	}()
	if _, err := big.Call(ctx, "null"); err != nil {
		return nil, err
	}
	out := map[string][]float64{"pool256_first_call_ms": {float64(time.Since(t0)) / 1e6}}
	// New returns once one worker is ready; measure only when all 256 are
	// up and idle, not while the rest are still starting.
	for len(big.Workers()) < 256 {
		if ctx.Err() != nil {
			return out, ctx.Err()
		}
		if _, err := big.Call(ctx, "null"); err != nil {
			return out, err
		}
	}
	out["pool256_all_ready_ms"] = []float64{float64(time.Since(t0)) / 1e6}
	var p1, p256 []float64
	for range rounds {
		s1, err := poolLatency(ctx, b.one, d)
		if err != nil {
			return out, err
		}
		s256, err := poolLatency(ctx, big, d)
		if err != nil {
			return out, err
		}
		p1 = append(p1, us(s1.P50))
		p256 = append(p256, us(s256.P50))
	}
	out["idle1_p50_us"] = p1
	out["idle256_p50_us"] = p256
	return out, nil
}

func bulkheadChild() error {
	if os.Getenv("BENCH_CLASS") != "" {
		return serveNullClass()
	}
	var s worker.Server
	s.Handle("null", func(ctx context.Context, args worker.Args) (any, error) { return nil, nil })
	// The idiomatic echo: a zero-copy view of the argument, returned as
	// the result (valid until the handler returns; the reply is written
	// by writev straight from it).
	s.Handle("echo", func(ctx context.Context, args worker.Args) (any, error) {
		if args.Len() != 1 {
			return nil, &worker.Error{Code: 3, Message: fmt.Sprintf("want 1 argument, got %d", args.Len())}
		}
		return args.Bytes(0)
	})
	s.Handle("crash", func(ctx context.Context, args worker.Args) (any, error) {
		os.Exit(3)
		return nil, nil
	})
	return s.Serve(context.Background())
}
