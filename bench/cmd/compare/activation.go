// The warm-activation contender: COM-style CreateInstance plus Release on a
// class server that is already running.

package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"time"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/activation"
	"github.com/bulkhead-go/bulkhead/worker"
)

// activationEnv marks a bulkhead child that serves the "Null" class
// instead of the null methods.
const activationEnv = "BENCH_CLASS=1"

// bulkheadActivation measures a warm activation plus release: one ACTIVATE
// round trip and one RELEASE frame, on a class server kept running by
// LockServer (one call at a time per process, a dispatcher's model of one call per worker). Its
// "aggregate" runs cfg.callers callers against that one server.
type bulkheadActivation struct {
	cfg *config
	act *activation.Activator
	co  *activation.ClassObject
}

func (b *bulkheadActivation) Name() string  { return "bulkhead_activation" }
func (b *bulkheadActivation) Label() string { return "bulkhead warm activation + release" }

func (b *bulkheadActivation) Setup(ctx context.Context) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	b.act, err = activation.NewActivator(activation.ActivatorConfig{
		Logger: slog.New(slog.DiscardHandler),
		Servers: []activation.ServerConfig{{
			Name:    "bench",
			Process: bulkhead.Process{Command: exe, Env: append(os.Environ(), bulkheadChildEnv, activationEnv)},
			Classes: []activation.ClassConfig{{Name: "Null"}},
		}},
	})
	if err != nil {
		return err
	}
	if b.co, err = b.act.GetClassObject(ctx, "Null"); err != nil {
		return err
	}
	if err := b.co.LockServer(true); err != nil { // warm: the server stays up between activations
		return err
	}
	return b.activate(ctx)
}

func (b *bulkheadActivation) activate(ctx context.Context) error {
	o, err := b.act.CreateInstance(ctx, "Null")
	if err != nil {
		return err
	}
	return o.Release()
}

func (b *bulkheadActivation) Latency(ctx context.Context, d time.Duration) (Sample, error) {
	return measureLatency(ctx, d, activationPids, func() error { return b.activate(ctx) })
}

func (b *bulkheadActivation) Throughput(ctx context.Context, d time.Duration) (Sample, error) {
	return measureParallel(ctx, d, b.cfg.callers, 1, false, activationPids, func(int) error { return b.activate(ctx) })
}

func (b *bulkheadActivation) Close() error {
	if b.act == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var errs []error
	if b.co != nil {
		errs = append(errs, b.co.LockServer(false))
		b.co.Release()
	}
	errs = append(errs, b.act.Close(ctx))
	b.act, b.co = nil, nil
	return errors.Join(errs...)
}

func activationPids() []int { return childrenWithEnv(activationEnv) }

// serveNullClass runs this process as the class server: objects of "Null"
// that hold nothing.
func serveNullClass() error {
	var s worker.Server
	type null struct{}
	s.Register(&worker.Class[*null]{Name: "Null", Threading: worker.Single,
		New: func(context.Context, *worker.Object, worker.Args) (*null, error) { return &null{}, nil }})
	return s.Serve(context.Background())
}
