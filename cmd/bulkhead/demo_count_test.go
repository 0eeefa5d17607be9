package main

import (
	"context"
	"errors"
	"io"
	"regexp"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/cluster"
	"github.com/bulkhead-go/bulkhead/examples/crashy"
	"github.com/fxamacker/cbor/v2"
)

// outcomeCaller answers call id with the outcome id%10 stands for: every
// category of the summary, one in ten calls each.
type outcomeCaller struct{}

func (outcomeCaller) Call(_ context.Context, _ string, args ...any) (bulkhead.Reply, error) {
	id, data := args[0].(uint64), args[1].([]byte)
	answer := func(v int64) (bulkhead.Reply, error) {
		raw, err := cbor.Marshal(v)
		return bulkhead.NewReply(raw), err
	}
	switch id % 10 {
	case 1:
		return bulkhead.Reply{}, &bulkhead.CrashError{Method: crashy.Method, Signal: syscall.SIGSEGV}
	case 2:
		return bulkhead.Reply{}, &bulkhead.CanceledError{Method: crashy.Method, Err: context.DeadlineExceeded}
	case 3:
		return bulkhead.Reply{}, &bulkhead.StartError{Reason: "died before HELLO", Exited: true}
	case 4:
		return bulkhead.Reply{}, &bulkhead.OverloadedError{}
	case 5:
		return bulkhead.Reply{}, &cluster.NodeLostError{Node: "node0", Method: crashy.Method, Reason: "test"}
	case 6:
		return bulkhead.Reply{}, errors.New("something else")
	case 7:
		return answer(fnv64a(data) + 1)
	}
	return answer(fnv64a(data))
}

// TestDemoCountsAgree checks that the last progress line and the summary
// put each call in the same category, and that the summary's categories
// add up to the calls made, with and without a cluster.
func TestDemoCountsAgree(t *testing.T) {
	for _, nodes := range []int{0, 3} {
		t.Run("nodes="+strconv.Itoa(nodes), func(t *testing.T) {
			const calls = 100
			cfg := demoConfig{calls: calls, workers: 1, concurrency: 4, timeout: 1e9, stall: 10e9, nodes: nodes}
			r := &demoRun{cfg: cfg, call: outcomeCaller{}, status: make([]atomic.Uint32, calls+1), result: make([]callResult, calls+1)}
			lat, elapsed, stalled := r.runCallers(context.Background(), io.Discard)
			if stalled {
				t.Fatal("stalled")
			}
			s := r.tally(nil, lat, bulkhead.Stats{}, elapsed)
			if got := s.answered(); got != calls || s.Calls != calls {
				t.Errorf("categories add up to %d, calls %d; want %d: %+v", got, s.Calls, calls, s)
			}
			line := r.outcomes()
			num := func(name string) int {
				m := regexp.MustCompile(`(?:^|  )` + name + ` (\d+)`).FindStringSubmatch(line)
				if m == nil {
					return -1
				}
				n, _ := strconv.Atoi(m[1])
				return n
			}
			want := map[string]int{"ok": s.OK, "crashed": s.Crashed, "timeouts": s.Timeouts, "no worker": s.NoWorker,
				"refused": s.Refused.total(), "node lost": s.NodeLost, "errors": s.Errors, "wrong": s.Wrong}
			for name, n := range want {
				if got := num(name); got != n || n != 10 && name != "ok" {
					t.Errorf("progress %q: %s %d, the summary %d, want 10 each", line, name, got, n)
				}
			}
		})
	}
}
