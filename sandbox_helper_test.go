package bulkhead_test

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"syscall"

	"github.com/bulkhead-go/bulkhead/examples/crashy/native"
	"github.com/bulkhead-go/bulkhead/worker"
)

// handleEscapes adds the helper worker's escape attempts: what a worker
// compromised by its input would try, for the sandbox tests.
func handleEscapes(s *worker.Server) {
	// setsid: a child in a session of its own, holding the worker's stderr,
	// whose pid goes to the file named; then the worker crashes.
	s.Handle("setsid", worker.Func(func(_ context.Context, pidFile string) (any, error) {
		cmd := exec.Command("sleep", "1000")
		cmd.Stderr = os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		if err := os.WriteFile(pidFile, []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
			return nil, err
		}
		native.Segv()
		return nil, nil
	}))
	// forkbomb starts up to n children that sleep, and says how many it
	// started before the first failure, and that failure.
	s.Handle("forkbomb", worker.Func(func(_ context.Context, n int) ([]string, error) {
		for i := range n {
			if err := exec.Command("sleep", "1000").Start(); err != nil {
				return []string{strconv.Itoa(i), err.Error()}, nil
			}
		}
		return []string{strconv.Itoa(n), ""}, nil
	}))
	// alloc touches n MiB, one page at a time.
	s.Handle("alloc", worker.Func(func(_ context.Context, mib int) (int, error) {
		var keep [][]byte
		for range mib {
			b := make([]byte, 1<<20)
			for i := 0; i < len(b); i += 4096 {
				b[i] = 1
			}
			keep = append(keep, b)
		}
		return len(keep), nil
	}))
}
