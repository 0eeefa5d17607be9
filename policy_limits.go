package bulkhead

import (
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/bulkhead-go/bulkhead/internal/proc"
)

// Limits are resource limits (setrlimit(2)) set on each worker at spawn,
// before it says HELLO. Every field's zero value leaves that limit as the
// worker inherits it from the dispatcher.
type Limits struct {
	// AddressSpace bounds the worker's virtual memory, in bytes
	// (RLIMIT_AS): allocations beyond it fail. Go workers reserve address
	// space generously; leave a gigabyte or more of headroom.
	AddressSpace int64

	// CPUTime bounds the worker's total CPU time (RLIMIT_CPU), rounded up
	// to whole seconds; the kernel kills it when it is used up. Since a
	// worker lives across many calls, this suits workers recycled with
	// MaxCalls or MaxLifetime.
	CPUTime time.Duration

	// OpenFiles bounds the worker's file descriptors (RLIMIT_NOFILE). It
	// must leave room for the descriptors the worker needs to serve.
	OpenFiles int

	// CoreSize bounds core dumps, in bytes (RLIMIT_CORE). Negative: no
	// core dumps at all.
	CoreSize int64
}

func (l *Limits) validate() error { return l.rlimits().Validate() }

// set reports whether any limit is set.
func (l *Limits) set() bool { return l.rlimits().Set() }

// rlimits is l as the spawner applies it.
func (l *Limits) rlimits() proc.Rlimits { return proc.Rlimits(*l) }

// Limit names the limit a worker was killed for exceeding.
type Limit int

const (
	LimitNone         Limit = iota
	LimitMemory             // Config.MaxMemory, enforced by the pool's monitor
	LimitAddressSpace       // Limits.AddressSpace
	LimitCPU                // Limits.CPUTime
	LimitOpenFiles          // Limits.OpenFiles
	LimitSandbox            // Sandbox.Seccomp: a system call outside the profile
)

func (l Limit) String() string {
	switch l {
	case LimitNone:
		return "none"
	case LimitMemory:
		return "memory"
	case LimitAddressSpace:
		return "address_space"
	case LimitCPU:
		return "cpu"
	case LimitOpenFiles:
		return "open_files"
	case LimitSandbox:
		return "sandbox"
	}
	return fmt.Sprintf("Limit(%d)", int(l))
}

// classifyLimit says which rlimit, if any, a dead worker ran into. A CPU
// kill: SIGXCPU, or a SIGKILL the pool did not send after at least half the
// CPU budget was used (the kernel's hard-limit kill; the rusage it leaves
// undercounts). Address space and open files do not kill by themselves: the
// worker fails an allocation or an open and dies of it, so they are told by
// the runtime's last words in its stderr and only when that limit was set.
func classifyLimit(l *Limits, sig syscall.Signal, killedByPool bool, ru *syscall.Rusage, stderr string) Limit {
	if l.CPUTime > 0 {
		if sig == syscall.SIGXCPU {
			return LimitCPU
		}
		if sig == syscall.SIGKILL && !killedByPool && ru != nil {
			// The rusage of a killed process undercounts its CPU time
			// (measured: 0.86 s at a 1 s kill), so half the budget is
			// the evidence asked for.
			used := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
			if used >= time.Duration(l.rlimits().CPUSeconds())*time.Second/2 {
				return LimitCPU
			}
		}
	}
	if killedByPool {
		return LimitNone
	}
	low := strings.ToLower(stderr)
	if l.AddressSpace > 0 && (strings.Contains(low, "out of memory") || strings.Contains(low, "cannot allocate memory") ||
		strings.Contains(low, "malloc") && strings.Contains(low, "failed")) {
		return LimitAddressSpace
	}
	if l.OpenFiles > 0 && strings.Contains(low, "too many open files") {
		return LimitOpenFiles
	}
	return LimitNone
}
