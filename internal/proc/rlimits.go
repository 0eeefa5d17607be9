package proc

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// Rlimits are the resource limits set on a process after exec
// (bulkhead.Limits, whose fields it has, documents each). Zero leaves a
// limit as inherited.
type Rlimits struct {
	AddressSpace int64
	CPUTime      time.Duration
	OpenFiles    int
	CoreSize     int64
}

// Validate reports every field out of range.
func (l Rlimits) Validate() error {
	var errs []error
	if l.AddressSpace < 0 {
		errs = append(errs, fmt.Errorf("AddressSpace = %d: must not be negative", l.AddressSpace))
	} else if l.AddressSpace > 0 && l.AddressSpace < 64<<20 {
		errs = append(errs, fmt.Errorf("AddressSpace = %d: want at least 64 MiB", l.AddressSpace))
	}
	if l.CPUTime < 0 {
		errs = append(errs, fmt.Errorf("CPUTime = %v: must not be negative", l.CPUTime))
	}
	if l.OpenFiles < 0 || l.OpenFiles > 1<<24 {
		errs = append(errs, fmt.Errorf("OpenFiles = %d: want 0 to %d", l.OpenFiles, 1<<24))
	} else if l.OpenFiles > 0 && l.OpenFiles < 16 {
		errs = append(errs, fmt.Errorf("OpenFiles = %d: want at least 16, so that the worker can serve", l.OpenFiles))
	}
	return errors.Join(errs...)
}

// Set reports whether any limit is set.
func (l Rlimits) Set() bool {
	return l.AddressSpace > 0 || l.CPUTime > 0 || l.OpenFiles > 0 || l.CoreSize != 0
}

// CPUSeconds is CPUTime rounded up to whole seconds.
func (l Rlimits) CPUSeconds() uint64 {
	return uint64((l.CPUTime + time.Second - 1) / time.Second)
}

// Apply sets the limits on process pid with prlimit(2). It runs after
// exec, so that Go's fork, which restores the dispatcher's own
// RLIMIT_NOFILE in the child, cannot undo it, and before HELLO, so that no
// call runs without them.
func (l Rlimits) Apply(pid int) error {
	type lim struct {
		res  int
		name string
		v    uint64
	}
	var ls []lim
	if l.AddressSpace > 0 {
		ls = append(ls, lim{unix.RLIMIT_AS, "address space", uint64(l.AddressSpace)})
	}
	if l.CPUTime > 0 {
		ls = append(ls, lim{unix.RLIMIT_CPU, "CPU time", l.CPUSeconds()})
	}
	if l.OpenFiles > 0 {
		ls = append(ls, lim{unix.RLIMIT_NOFILE, "open files", uint64(l.OpenFiles)})
	}
	if l.CoreSize > 0 {
		ls = append(ls, lim{unix.RLIMIT_CORE, "core size", uint64(l.CoreSize)})
	} else if l.CoreSize < 0 {
		ls = append(ls, lim{unix.RLIMIT_CORE, "core size", 0})
	}
	for _, x := range ls {
		// Soft and hard alike: the worker may not raise it again, and
		// for CPU time the kernel's answer is SIGKILL, which no runtime
		// can ignore (Go ignores SIGXCPU).
		r := unix.Rlimit{Cur: x.v, Max: x.v}
		if err := unix.Prlimit(pid, x.res, &r, nil); err != nil {
			return fmt.Errorf("setting the %s limit to %d: %w", x.name, x.v, err)
		}
	}
	return nil
}
