package bulkhead_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"

	"github.com/bulkhead-go/bulkhead/examples/crashy/native"
	"github.com/bulkhead-go/bulkhead/worker"
	"golang.org/x/sys/unix"
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
		fmt.Fprintln(os.Stderr, "helper: setsid child started; crashing")
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
	// The escapes a seccomp profile stops; each answers what happened, if
	// it is let through (log mode).
	s.Handle("connect", func(context.Context, worker.Args) (any, error) {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
		if err != nil {
			return err.Error(), nil
		}
		defer unix.Close(fd)
		err = unix.Connect(fd, &unix.SockaddrInet4{Port: 1, Addr: [4]byte{127, 0, 0, 1}})
		return fmt.Sprint(err), nil
	})
	s.Handle("exec", func(context.Context, worker.Args) (any, error) {
		err := unix.Exec("/bin/sh", []string{"sh", "-c", "exit 0"}, nil)
		return err.Error(), nil
	})
	s.Handle("fork", func(context.Context, worker.Args) (any, error) {
		// Its own descriptors: os/exec would open /dev/null first.
		pid, err := syscall.ForkExec("/bin/true", []string{"true"}, &syscall.ProcAttr{Files: []uintptr{0, 1, 2}})
		if err == nil {
			var ws syscall.WaitStatus
			syscall.Wait4(pid, &ws, 0, nil)
		}
		return fmt.Sprint(err), nil
	})
	s.Handle("ptrace", func(context.Context, worker.Args) (any, error) {
		err := unix.PtraceAttach(os.Getppid())
		if err == nil {
			unix.PtraceDetach(os.Getppid())
		}
		return fmt.Sprint(err), nil
	})
	s.Handle("write", worker.Func(func(_ context.Context, path string) (string, error) {
		return fmt.Sprint(os.WriteFile(path, []byte("escaped"), 0o644)), nil
	}))
	s.Handle("read", worker.Func(func(_ context.Context, path string) (string, error) {
		_, err := os.ReadFile(path)
		return fmt.Sprint(err), nil
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

// handleNamespaces adds "ns": the worker's namespaces, as /proc/self/ns
// names them, and what it finds in /tmp.
func handleNamespaces(s *worker.Server) {
	s.Handle("ns", func(context.Context, worker.Args) (any, error) {
		out := map[string]string{}
		for _, n := range []string{"net", "ipc", "mnt", "user"} {
			out[n], _ = os.Readlink("/proc/self/ns/" + n)
		}
		ents, err := os.ReadDir("/tmp")
		out["tmp"] = fmt.Sprint(len(ents), err)
		return out, nil
	})
	// whoami is what the worker sees of its sandbox
	// (TestSandboxCombinations).
	s.Handle("whoami", func(context.Context, worker.Args) (any, error) { return whoami(), nil })
	// pidns is the worker's pid and PID namespace, as it sees them.
	s.Handle("pidns", func(context.Context, worker.Args) (any, error) {
		ns, err := os.Readlink("/proc/self/ns/pid")
		return []string{strconv.Itoa(os.Getpid()), ns}, err
	})
	// nnp is the worker's NoNewPrivs, as /proc/self/status says it.
	s.Handle("nnp", func(context.Context, worker.Args) (any, error) {
		b, err := os.ReadFile("/proc/self/status")
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(line, "NoNewPrivs:"); ok {
				return strings.TrimSpace(v), nil
			}
		}
		return "", fmt.Errorf("no NoNewPrivs in /proc/self/status: %v", err)
	})
}
