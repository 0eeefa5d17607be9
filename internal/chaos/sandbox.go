package chaos

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/examples/crashy/native"
	"golang.org/x/sys/unix"
)

// The sandbox faults (Options.Sandbox): what a worker compromised by its
// input would try, each of which the sandbox must stop with the right
// typed error.
const (
	FaultConnect Fault = "connect"  // socket(AF_INET) and connect to 127.0.0.1: seccomp, "socket"
	FaultExecSh  Fault = "execsh"   // execve /bin/sh: seccomp, "execve"
	FaultSetsid  Fault = "setsid"   // fork a child that calls setsid and sleeps: seccomp, "clone"
	FaultPtrace  Fault = "ptrace"   // ptrace its parent, the dispatcher: seccomp, "ptrace"
	FaultAlloc   Fault = "alloc"    // allocate past memory.max, in C: LimitMemory
	FaultEnviron Fault = "environ"  // look for the service's secret in its environment: not there
	FaultShadow  Fault = "shadow"   // read /etc/shadow: Landlock, EACCES
	FaultWrite   Fault = "writeout" // write a file outside its writable paths: Landlock, EACCES
)

// SandboxFaults returns the faults Options.Sandbox adds to the plan.
func SandboxFaults() []Fault {
	return []Fault{FaultConnect, FaultExecSh, FaultSetsid, FaultPtrace, FaultAlloc, FaultEnviron, FaultShadow, FaultWrite}
}

// SecretEnv is set in the dispatcher's environment by a sandboxed soak: a
// worker that sees it has the service's environment.
const SecretEnv = "CHAOS_SERVICE_SECRET"

// sandbox is the pool's Config.Sandbox in a sandboxed soak: each worker in
// a cgroup of its own, under the "files" seccomp profile and Landlock. The
// workers' journals are files they create, append to and rename into place
// in dir, so writing opens and renames are allowed, and Landlock confines
// them to dir (and reads to dir, /proc and the worker's libraries).
func sandbox(dir string) bulkhead.Sandbox {
	return bulkhead.Sandbox{MemoryMax: 192 << 20, PidsMax: 256, Seccomp: "files",
		SeccompAllow: []string{"open", "openat", "rename", "renameat", "renameat2"},
		ReadOnly:     []string{"/proc"}, Writable: []string{dir}}
}

// sandboxFault performs a sandbox fault; the seccomp ones never return.
func (w *chaosWorker) sandboxFault(f Fault, key, arg int64) (any, error) {
	switch f {
	case FaultConnect:
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
		if err == nil {
			err = unix.Connect(fd, &unix.SockaddrInet4{Port: 1, Addr: [4]byte{127, 0, 0, 1}})
		}
		return nil, errors.New("chaos worker: connect was let through: " + errString(err))
	case FaultExecSh:
		err := unix.Exec("/bin/sh", []string{"sh", "-c", "sleep 1000"}, nil)
		return nil, errors.New("chaos worker: execve was let through: " + errString(err))
	case FaultSetsid:
		_, err := syscall.ForkExec("/bin/sleep", []string{"sleep", "1000"},
			&syscall.ProcAttr{Files: []uintptr{0, 1, 2}, Sys: &syscall.SysProcAttr{Setsid: true}})
		return nil, errors.New("chaos worker: fork was let through: " + errString(err))
	case FaultPtrace:
		err := unix.PtraceAttach(os.Getppid())
		return nil, errors.New("chaos worker: ptrace was let through: " + errString(err))
	case FaultAlloc:
		for grown := int64(0); grown < arg; grown += 16 {
			native.Leak(16 << 20)
		}
		blockForever()
	case FaultShadow:
		_, err := os.ReadFile("/etc/shadow")
		return denied(key, "read /etc/shadow", err)
	case FaultWrite:
		err := os.WriteFile(filepath.Join(os.TempDir(), "bulkhead-chaos-escaped"), []byte("escaped"), 0o600)
		return denied(key, "wrote outside its writable paths", err)
	case FaultEnviron:
		for _, kv := range os.Environ() {
			if strings.HasPrefix(kv, SecretEnv+"=") {
				return nil, errors.New("chaos worker: the service's environment reached the worker")
			}
		}
		return uint64(key), nil
	}
	return nil, errors.New("chaos worker: unknown fault " + string(f))
}

// denied is the answer to a Landlock fault: key if the access was denied.
func denied(key int64, what string, err error) (any, error) {
	if errors.Is(err, os.ErrPermission) {
		return uint64(key), nil
	}
	return nil, errors.New("chaos worker: " + what + ": " + errString(err))
}

func errString(err error) string {
	if err == nil {
		return "no error"
	}
	return err.Error()
}

// sandboxCrashMatches reports whether ce is what the sandbox does to f.
func sandboxCrashMatches(f Fault, ce *bulkhead.CrashError, err error) bool {
	want := map[Fault]string{FaultConnect: "socket", FaultExecSh: "execve", FaultSetsid: "clone", FaultPtrace: "ptrace"}
	if sc, ok := want[f]; ok {
		return ce.Limit == bulkhead.LimitSandbox && ce.Syscall == sc && errors.Is(err, bulkhead.ErrLimitExceeded)
	}
	return f == FaultAlloc && ce.Limit == bulkhead.LimitMemory && errors.Is(err, bulkhead.ErrLimitExceeded)
}
