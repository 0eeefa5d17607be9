package bulkhead_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bulkhead-go/bulkhead"
)

// The shared-memory transport behind the same API: the same calls, crashes
// and deadlines behave exactly as over the socket.
func TestShmTransport(t *testing.T) {
	shm := bulkhead.Config{Transport: bulkhead.TransportShm, ShmRingSize: 64 << 10, ShmSpin: 100, KillGrace: 50 * time.Millisecond}
	ctx := context.Background()

	t.Run("values larger than the ring", func(t *testing.T) {
		p := newPool(t, shm)
		if ws := p.Workers(); len(ws) != 1 || ws[0].Transport != bulkhead.TransportShm {
			t.Fatalf("workers %+v: want the shared-memory transport in use", ws)
		}
		big := make([]byte, 1<<20)
		for i := range big {
			big[i] = byte(i)
		}
		got, err := bulkhead.CallAs[[]byte](ctx, p, "echo", big)
		if err != nil || string(got) != string(big) {
			t.Fatalf("1 MiB echo through a 64 KiB ring: %d bytes, %v", len(got), err)
		}
		s, err := bulkhead.CallAs[string](ctx, p, "upper", "shm")
		if err != nil || s != "SHM" {
			t.Fatalf("upper = %q, %v", s, err)
		}
	})
	t.Run("crash during a call", func(t *testing.T) {
		p := newPool(t, shm)
		if ws := p.Workers(); ws[0].Transport != bulkhead.TransportShm {
			t.Fatalf("transport %v, want shm", ws[0].Transport)
		}
		_, err := p.Call(ctx, "segv")
		var ce *bulkhead.CrashError
		if !errors.As(err, &ce) || ce.Signal != syscall.SIGSEGV || ce.Phase != bulkhead.PhaseCall {
			t.Fatalf("err = %v, want a CrashError by SIGSEGV", err)
		}
		if _, err := p.Call(ctx, "null"); err != nil {
			t.Fatalf("after the crash: %v", err)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		p := newPool(t, shm)
		if ws := p.Workers(); ws[0].Transport != bulkhead.TransportShm {
			t.Fatalf("transport %v, want shm", ws[0].Transport)
		}
		dctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		if _, err := p.Call(dctx, "hang"); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want DeadlineExceeded", err)
		}
		if _, err := p.Call(ctx, "null"); err != nil {
			t.Fatalf("after the hang: %v", err)
		}
	})
	t.Run("death before start is redispatched", func(t *testing.T) {
		p := newPool(t, shm, "HELPER_START=die_on_call", "HELPER_ONCE="+t.TempDir()+"/once")
		if _, err := p.Call(ctx, "null"); err != nil {
			t.Fatalf("call = %v, want it redispatched", err)
		}
	})
	t.Run("concurrent callers", func(t *testing.T) {
		cfg := shm
		cfg.Workers, cfg.ConcurrencyPerWorker = 2, 4
		p := newPool(t, cfg, "HELPER_CONC=4")
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for g := range 8 {
			wg.Go(func() {
				for i := range 50 {
					want := g*1000 + i
					if got, err := bulkhead.CallAs[int](ctx, p, "echo", want); err != nil || got != want {
						errs <- errors.Join(err, errors.New("echo "+strconv.Itoa(got)))
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	})
}

// BenchmarkNullCallShm is BenchmarkNullCall over the shared-memory transport,
// with the default spin and with a long one (both sides then spin through
// the whole round trip on a machine with a core free for each).
func BenchmarkNullCallShm(b *testing.B) {
	for _, spin := range []int{0, 1 << 22} {
		b.Run("spin="+strconv.Itoa(spin), func(b *testing.B) {
			p := benchPoolCfg(b, bulkhead.Config{Workers: 1, Transport: bulkhead.TransportShm, ShmSpin: spin})
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.Call(ctx, "null"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
