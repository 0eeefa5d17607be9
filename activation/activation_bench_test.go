package activation

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/internal/proc"
	"github.com/bulkhead-go/bulkhead/internal/testutil"
)

// baselinePool is a one-worker pool of the pool tests' helper worker, for
// the null-call baseline (BenchmarkNullCall in bench_test.go measures the
// same call on its own).
func baselinePool(b *testing.B) *bulkhead.Pool {
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	p, err := bulkhead.New(context.Background(), bulkhead.Config{Command: exe, Env: testutil.HelperEnviron("worker"),
		Workers: 1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close(context.Background()) })
	return p
}

// BenchmarkWarmActivationVsNullCall alternates blocks of null calls on a
// pool worker and warm activations plus releases, so that both see the
// same machine load, and reports each one's mean and their ratio (target:
// at most 2).
func BenchmarkWarmActivationVsNullCall(b *testing.B) {
	for _, model := range benchModels {
		b.Run(model, func(b *testing.B) {
			a := newAct(b, ActivatorConfig{Servers: []ServerConfig{helperServer(b, "C:"+model, multi("C"))}}, actHooks{})
			p := baselinePool(b) // closed first: before newAct's leak check
			ctx := context.Background()
			co, err := a.GetClassObject(ctx, "C")
			if err != nil {
				b.Fatal(err)
			}
			defer co.Release()
			if err := co.LockServer(true); err != nil {
				b.Fatal(err)
			}
			const block = 32
			var tNull, tAct time.Duration
			n := 0
			for b.Loop() {
				t0 := time.Now()
				for range block {
					if _, err := p.Call(ctx, "null"); err != nil {
						b.Fatal(err)
					}
				}
				t1 := time.Now()
				for range block {
					o, err := a.CreateInstance(ctx, "C")
					if err != nil {
						b.Fatal(err)
					}
					o.Release()
				}
				tAct += time.Since(t1)
				tNull += t1.Sub(t0)
				n += block
			}
			b.ReportMetric(float64(tNull.Nanoseconds())/float64(n), "ns/null-call")
			b.ReportMetric(float64(tAct.Nanoseconds())/float64(n), "ns/activation")
			b.ReportMetric(float64(tAct)/float64(tNull), "activation/null-call")
		})
	}
}

var benchModels = []string{"single", "apartment", "free"}

// BenchmarkObjectNullCall is the same null call on a live object.
func BenchmarkObjectNullCall(b *testing.B) {
	for _, model := range benchModels {
		b.Run(model, func(b *testing.B) {
			a := newAct(b, ActivatorConfig{Servers: []ServerConfig{helperServer(b, "C:"+model, multi("C"))}}, actHooks{})
			ctx := context.Background()
			o, err := a.CreateInstance(ctx, "C")
			if err != nil {
				b.Fatal(err)
			}
			defer o.Release()
			for b.Loop() {
				if _, err := o.Call(ctx, "null"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkWarmActivation creates and releases an object in a running
// server, kept running by LockServer: one ACTIVATE round trip plus one
// RELEASE frame. The target is at most twice BenchmarkNullCall.
func BenchmarkWarmActivation(b *testing.B) {
	for _, model := range benchModels {
		b.Run(model, func(b *testing.B) {
			a := newAct(b, ActivatorConfig{Servers: []ServerConfig{helperServer(b, "C:"+model, multi("C"))}}, actHooks{})
			ctx := context.Background()
			co, err := a.GetClassObject(ctx, "C")
			if err != nil {
				b.Fatal(err)
			}
			defer co.Release()
			if err := co.LockServer(true); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				o, err := a.CreateInstance(ctx, "C")
				if err != nil {
					b.Fatal(err)
				}
				o.Release()
			}
		})
	}
}

// BenchmarkColdActivation creates and releases an object with no server
// running: each iteration launches a server (spawn, HELLO, REGISTER,
// RESUME), activates, and stops it at zero with no linger.
func BenchmarkColdActivation(b *testing.B) {
	a := newAct(b, ActivatorConfig{Linger: NoLinger, Servers: []ServerConfig{helperServer(b, "C:single", multi("C"))}}, actHooks{})
	ctx := context.Background()
	for b.Loop() {
		o, err := a.CreateInstance(ctx, "C")
		if err != nil {
			b.Fatal(err)
		}
		o.Release()
	}
	b.StopTimer()
	if st := a.Stats(); st.Launches < uint64(b.N) {
		b.Fatalf("%d launches for %d activations: not cold", st.Launches, b.N)
	}
}

// BenchmarkProcessStart is what a cold activation is compared with: start
// the same program as a plain pool worker, wait for its HELLO, and stop it.
func BenchmarkProcessStart(b *testing.B) {
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	spec := newProcessSpec(bulkhead.Process{Command: exe, Env: testutil.HelperEnviron("worker")}, func(f string, a ...any) { b.Fatalf(f, a...) })
	sp := proc.NewSpawner()
	defer sp.Close()
	for b.Loop() {
		w, err := launchProcess(spec, sp, func(*serverProc) {}, func(*serverProc, bool) {})
		if err != nil {
			b.Fatal(err)
		}
		w.Proc.Kill()
		<-w.Proc.Exited()
		w.Close()
	}
}

// BenchmarkForkExecTrue is the floor: fork, exec and reap /bin/true.
func BenchmarkForkExecTrue(b *testing.B) {
	for b.Loop() {
		if err := exec.Command("/bin/true").Run(); err != nil {
			b.Fatal(err)
		}
	}
}
