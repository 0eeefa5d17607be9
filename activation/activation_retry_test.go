package activation

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/bulkhead-go/bulkhead/internal/wire"
)

// A burst of activations meets servers that revoke their classes after 4
// (worker.ObjectOptions.MaxActivations). The first server is handed all 16
// and refuses 12. The refused ones must not all go to the one fresh server,
// to be refused again in rounds until some give up: they are spread over as
// many fresh servers as they need (3), each refused once, and none fails,
// though MaxRetries is 1: refusals are bounded by ctx, not by a count.
func TestRefusedBurstSpreadsOverFreshServers(t *testing.T) {
	const clients, perServer = 16, 4
	var waiting atomic.Int32
	allWaiting := make(chan struct{})
	var held atomic.Bool
	learned := make(chan int, 1)
	a := newAct(t, ActivatorConfig{Linger: NoLinger, MaxRetries: 1,
		Servers: []ServerConfig{helperServer(t, "Counter:free", multi("Counter"), "ACT_MAX_ACTIVATIONS=4")}},
		actHooks{
			waiting: func(string) {
				if waiting.Add(1) == clients {
					close(allWaiting)
				}
			},
			frame: func(_ *server, ty wire.Type) {
				switch {
				case ty != wire.TypeResume:
				case held.CompareAndSwap(false, true):
					<-allWaiting // the first server gets every client
				default:
					// A fresh server resumes once the first one's answers
					// have all been read (it may, earlier: a refused
					// activation is then retried again, and the counts
					// below differ).
					<-allWaiting
					per := <-learned
					learned <- per
				}
			},
			learned: func(_ *server, per int) { // under a.mu: must not block
				select {
				case learned <- per:
				default:
					t.Errorf("learned twice (%d)", per)
				}
			},
		})
	var wg sync.WaitGroup
	objs := make([]*Object, clients)
	errs := make([]error, clients)
	for i := range clients {
		wg.Go(func() { objs[i], errs[i] = a.CreateInstance(context.Background(), "Counter") })
	}
	wg.Wait()
	perPID := map[int]int{}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		perPID[objs[i].PID()]++
		defer objs[i].Release()
	}
	if per := <-learned; per != perServer {
		t.Fatalf("learned that a server takes %d activations, want %d", per, perServer)
	}
	st := a.Stats()
	if st.StoppingRetries != clients-perServer || st.Launches != clients/perServer {
		t.Fatalf("%d refusals over %d servers (%v), want each refused at most once, over %d servers: %+v",
			st.StoppingRetries, st.Launches, perPID, clients/perServer, st)
	}
}

// The scenario, sustained: 16 clients create, call and release
// objects while servers recycle after 4 activations. No activation fails,
// however often it is refused.
func TestRecyclingServersUnderLoad(t *testing.T) {
	const clients, each = 16, 5
	a := newAct(t, ActivatorConfig{Linger: NoLinger, MaxRetries: 1,
		Servers: []ServerConfig{helperServer(t, "Counter:free", multi("Counter"), "ACT_MAX_ACTIVATIONS=4")}}, actHooks{})
	var wg sync.WaitGroup
	errs := make(chan error, clients*each)
	for range clients {
		wg.Go(func() {
			for range each {
				o, err := a.CreateInstance(context.Background(), "Counter", 1)
				if err == nil {
					_, err = o.Call(context.Background(), "add", 1)
					o.Release()
				}
				if err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if st := a.Stats(); st.Activations != clients*each {
		t.Fatalf("stats %+v", st)
	}
}
