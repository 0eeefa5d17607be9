package bulkhead

import (
	"testing"

	"github.com/bulkhead-go/bulkhead/internal/stackscan"
	"golang.org/x/sys/unix"
)

// TestSafeThread: the STACK signal goes only to a thread that a signal does
// not disturb: one in Go's runtime or waiting for signals, never one
// blocked in C (a C SDK worker built before BH_STACK_ON_SIGUSR2 became
// opt-in says "SIGUSR2" and has only its call's thread), nor a running one.
func TestSafeThread(t *testing.T) {
	inC := stackscan.Thread{TID: 10, State: stackscan.Syscall{NR: unix.SYS_CLOCK_NANOSLEEP},
		Frames: []stackscan.Frame{{Func: "clock_nanosleep"}, {Func: "sleep"}, {Func: "h_sleep"}}}
	running := stackscan.Thread{TID: 11, State: stackscan.Syscall{Running: true}}
	goIdle := stackscan.Thread{TID: 12, State: stackscan.Syscall{NR: unix.SYS_FUTEX},
		Frames: []stackscan.Frame{{Func: "runtime.futex.abi0"}, {Func: "runtime.futexsleep"}}}
	sigwait := stackscan.Thread{TID: 13, State: stackscan.Syscall{NR: unix.SYS_RT_SIGTIMEDWAIT},
		Frames: []stackscan.Frame{{Func: "sigtimedwait"}}}
	unnamed := stackscan.Thread{TID: 14, State: stackscan.Syscall{NR: unix.SYS_FUTEX}, Frames: []stackscan.Frame{{}}}
	tests := []struct {
		threads []stackscan.Thread
		want    int
	}{
		{[]stackscan.Thread{inC}, 0},
		{[]stackscan.Thread{inC, running, unnamed}, 0},
		{[]stackscan.Thread{inC, running, goIdle}, 12},
		{[]stackscan.Thread{running, sigwait, inC}, 13},
		{nil, 0},
	}
	for i, tt := range tests {
		if got := safeThread(stackscan.Report{Threads: tt.threads}); got != tt.want {
			t.Errorf("case %d: safeThread = %d, want %d", i, got, tt.want)
		}
	}
}
