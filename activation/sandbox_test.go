package activation

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-go/bulkhead"
)

// A class server its sandbox kills gives the same typed errors as a pool's
// worker: LimitSandbox and the system call for a seccomp violation,
// LimitMemory and the peak for the OOM killer at memory.max, LimitSandbox
// for a runtime that died at pids.max.
func TestSandboxedServerCrash(t *testing.T) {
	for _, tc := range []struct {
		name   string
		sb     bulkhead.Sandbox
		method string
		arg    int
		root   bool // cgroups need root
		check  func(*bulkhead.CrashError) bool
	}{
		{"seccomp", bulkhead.Sandbox{Seccomp: "files"}, "connect", 0, false, func(ce *bulkhead.CrashError) bool {
			return ce.Limit == bulkhead.LimitSandbox && ce.Syscall == "socket" && ce.SyscallNumber > 0 && ce.Killed
		}},
		{"oom", bulkhead.Sandbox{MemoryMax: 64 << 20}, "alloc", 256, true, func(ce *bulkhead.CrashError) bool {
			return ce.Limit == bulkhead.LimitMemory && ce.PeakMemory >= 48<<20
		}},
		{"pids", bulkhead.Sandbox{PidsMax: 40}, "threads", 200, true, func(ce *bulkhead.CrashError) bool {
			return ce.Limit == bulkhead.LimitSandbox && strings.Contains(ce.Reason, "PidsMax")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.root && os.Geteuid() != 0 {
				t.Skip("cgroups need root")
			}
			sc := helperServer(t, "Counter:free", multi("Counter"))
			sc.Process.Sandbox = tc.sb
			a := newAct(t, ActivatorConfig{Linger: NoLinger, Servers: []ServerConfig{sc}}, actHooks{})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			x, err := a.CreateInstance(ctx, "Counter")
			if err != nil {
				t.Fatal(err)
			}
			_, err = x.Call(ctx, tc.method, tc.arg)
			var ce *bulkhead.CrashError
			if !errors.As(err, &ce) || !errors.Is(err, bulkhead.ErrLimitExceeded) || !tc.check(ce) {
				t.Fatalf("%s(%d): %v (%+v)", tc.method, tc.arg, err, ce)
			}
		})
	}
}
