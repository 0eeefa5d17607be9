package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/hashicorp/go-plugin"
)

// entry is one contender's state and samples over the run.
type entry struct {
	c              Contender
	up             bool // set up and not failed
	err            error
	lat, agg, echo []Sample
	extras         map[string]map[int]float64 // name -> round -> value
	finished       map[string][]float64       // name -> per-round values of the final phase
}

func newContenders(cfg *config) []Contender {
	cs := []Contender{
		&cFloor{cfg: cfg},
		&cShmFloor{cfg: cfg},
		&rawGo{cfg: cfg},
		&netRPC{cfg: cfg},
		&grpcDirect{cfg: cfg},
		&goPlugin{cfg: cfg, proto: plugin.ProtocolGRPC},
		&goPlugin{cfg: cfg, proto: plugin.ProtocolNetRPC},
	}
	if bulkheadFactory != nil {
		cs = append(cs, bulkheadFactory(cfg)...)
	}
	var out []Contender
	for _, c := range cs {
		if cfg.only == nil || cfg.only[c.Name()] {
			out = append(out, c)
		}
	}
	return out
}

// run sets every contender up, runs cfg.rounds interleaved rounds, closes
// everything and builds the report. A contender that fails is dropped (and
// reported); the run goes on without it.
func run(ctx context.Context, cfg *config, log io.Writer) (*Report, error) {
	var es []*entry
	for _, c := range newContenders(cfg) {
		e := &entry{c: c, extras: map[string]map[int]float64{}, finished: map[string][]float64{}}
		es = append(es, e)
		fmt.Fprintf(log, "setup %s\n", c.Name())
		if err := c.Setup(ctx); err != nil {
			e.err = fmt.Errorf("setup: %w", err)
			if cerr := c.Close(); cerr != nil {
				e.err = errors.Join(e.err, cerr)
			}
			fmt.Fprintf(log, "  %s unavailable: %v\n", c.Name(), e.err)
			continue
		}
		e.up = true
	}
	defer func() { // on an early return: still stop every child
		for _, e := range es {
			if e.up {
				e.c.Close()
			}
		}
	}()
	fail := func(e *entry, what string, err error) {
		e.err = fmt.Errorf("%s: %w", what, err)
		fmt.Fprintf(log, "  %s failed: %v (dropped)\n", e.c.Name(), e.err)
		e.up = false
		if cerr := e.c.Close(); cerr != nil {
			e.err = errors.Join(e.err, cerr)
		}
	}
	ps := &procStart{}
	for _, e := range es {
		if cf, ok := e.c.(*cFloor); ok && e.up {
			ps.cBin = cf.bin
		}
	}
	starts := map[string]map[int]float64{}
	aff, err := newAffinity()
	if err != nil {
		return nil, err
	}
	defer aff.unpin()

	for r := range cfg.rounds {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		t0 := time.Now()
		order := rotate(es, r)
		each := func(what string, fn func(e *entry) error) {
			for _, e := range order {
				if !e.up || ctx.Err() != nil {
					continue
				}
				if err := fn(e); err != nil {
					fail(e, what, err)
				}
			}
		}
		// The pinned phase: latency and echo, this process and all its
		// descendants on one CPU (see affinity).
		cpu := aff.cpuFor(r)
		if err := aff.pin(cpu); err != nil {
			return nil, fmt.Errorf("round %d: pinning to CPU %d: %w", r+1, cpu, err)
		}
		each("latency", func(e *entry) error {
			s, err := e.c.Latency(ctx, cfg.dur)
			if err == nil {
				s.Round = r
				e.lat = append(e.lat, s)
			}
			return err
		})
		each("echo", func(e *entry) error {
			ec, ok := e.c.(Echoer)
			if !ok {
				return nil
			}
			s, err := ec.Echo(ctx, cfg.echoSize, cfg.dur)
			if err == nil {
				s.Round = r
				e.echo = append(e.echo, s)
			}
			return err
		})
		// The unpinned phase: aggregate throughput, crash and start-up.
		if err := aff.unpin(); err != nil {
			return nil, fmt.Errorf("round %d: unpinning: %w", r+1, err)
		}
		each("throughput", func(e *entry) error {
			s, err := e.c.Throughput(ctx, cfg.dur)
			if errors.Is(err, errNoAggregate) {
				return nil
			}
			if err == nil {
				s.Round = r
				e.agg = append(e.agg, s)
			}
			return err
		})
		each("extras", func(e *entry) error {
			x, ok := e.c.(Extraer)
			if !ok {
				return nil
			}
			m, err := x.Extras(ctx)
			for k, v := range m {
				put(e.extras, k, r, v)
			}
			return err
		})
		m, err := ps.round(ctx, cfg.spawns)
		if err != nil {
			return nil, fmt.Errorf("process start probe: %w", err)
		}
		for k, v := range m {
			put(starts, k, r, v)
		}
		fmt.Fprintf(log, "round %d/%d (latency on CPU %d) done in %v\n", r+1, cfg.rounds, cpu, time.Since(t0).Round(time.Millisecond))
	}

	// Close everything but the finishers, then let each finisher run alone.
	var closeErrs []error
	for _, e := range es {
		if _, ok := e.c.(Finisher); !ok && e.up {
			e.up = false
			if err := e.c.Close(); err != nil {
				closeErrs = append(closeErrs, fmt.Errorf("%s: close: %w", e.c.Name(), err))
			}
		}
	}
	for _, e := range es {
		f, ok := e.c.(Finisher)
		if !ok || !e.up {
			continue
		}
		fmt.Fprintf(log, "final phase %s (pinned to CPU %d)\n", e.c.Name(), aff.cpuFor(0))
		if err := aff.pin(aff.cpuFor(0)); err != nil {
			return nil, fmt.Errorf("final phase: pinning: %w", err)
		}
		m, err := f.Finish(ctx, cfg.rounds, cfg.dur)
		if uerr := aff.unpin(); uerr != nil {
			err = errors.Join(err, uerr)
		}
		for k, v := range m {
			e.finished[k] = v
		}
		e.up = false
		if err != nil {
			e.err = fmt.Errorf("final phase: %w", err)
		}
		if err := e.c.Close(); err != nil {
			closeErrs = append(closeErrs, fmt.Errorf("%s: close: %w", e.c.Name(), err))
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return buildReport(cfg, es, starts, ps.cBin != "", closeErrs), nil
}

// rotate returns es starting at index r mod len(es), so no contender always
// runs first (just after the previous round's heaviest phase) or last.
func rotate(es []*entry, r int) []*entry {
	if len(es) == 0 {
		return nil
	}
	k := r % len(es)
	return append(append([]*entry{}, es[k:]...), es[:k]...)
}

// put sets m[k][r] = v.
func put(m map[string]map[int]float64, k string, r int, v float64) {
	if m[k] == nil {
		m[k] = map[int]float64{}
	}
	m[k][r] = v
}
