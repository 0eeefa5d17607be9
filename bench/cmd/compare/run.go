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
	c                Contender
	up               bool // set up and not failed
	err              error
	lat, agg, echo   []Sample
	extras, finished map[string][]float64
}

func newContenders(cfg *config) []Contender {
	cs := []Contender{
		&cFloor{cfg: cfg},
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
		e := &entry{c: c, extras: map[string][]float64{}, finished: map[string][]float64{}}
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
	starts := map[string][]float64{}

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
		each("latency", func(e *entry) error {
			s, err := e.c.Latency(ctx, cfg.dur)
			if err == nil {
				e.lat = append(e.lat, s)
			}
			return err
		})
		each("throughput", func(e *entry) error {
			s, err := e.c.Throughput(ctx, cfg.dur)
			if err == nil {
				e.agg = append(e.agg, s)
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
				e.echo = append(e.echo, s)
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
				e.extras[k] = append(e.extras[k], v)
			}
			return err
		})
		m, err := ps.round(ctx, cfg.spawns)
		if err != nil {
			return nil, fmt.Errorf("process start probe: %w", err)
		}
		for k, v := range m {
			starts[k] = append(starts[k], v)
		}
		fmt.Fprintf(log, "round %d/%d done in %v\n", r+1, cfg.rounds, time.Since(t0).Round(time.Millisecond))
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
		fmt.Fprintf(log, "final phase %s\n", e.c.Name())
		m, err := f.Finish(ctx, cfg.rounds, cfg.dur)
		for k, v := range m {
			e.finished[k] = append(e.finished[k], v)
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
