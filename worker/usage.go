package worker

import (
	"bytes"
	"strconv"

	"github.com/bulkhead-go/bulkhead/internal/wire"
	"golang.org/x/sys/unix"
)

// Per-call resource usage (BULKHEAD_CALL_USAGE, PROTOCOL.md section 3,
// USAGE): the CPU time of the thread that ran the call, and the process's
// peak resident memory since the call began, reset through
// /proc/self/clear_refs ("5": the peak RSS) as each call starts.

// usageFiles are the /proc files usage reads, opened once; -1 if they
// could not be (then MaxRSS is 0).
type usageFiles struct {
	clearRefs int // /proc/self/clear_refs, written
	status    int // /proc/self/status, read from its start each time
}

func openUsage() usageFiles {
	f := usageFiles{clearRefs: -1, status: -1}
	if fd, err := unix.Open("/proc/self/clear_refs", unix.O_WRONLY|unix.O_CLOEXEC, 0); err == nil {
		f.clearRefs = fd
	}
	if fd, err := unix.Open("/proc/self/status", unix.O_RDONLY|unix.O_CLOEXEC, 0); err == nil {
		f.status = fd
	}
	return f
}

func (f usageFiles) close() {
	for _, fd := range []int{f.clearRefs, f.status} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
}

// meter measures one call: start as it begins, on the thread that runs it;
// stop as it ends, on the same thread.
type meter struct {
	f    usageFiles
	cpu0 int64
}

func (m *meter) start() {
	if m.f.clearRefs >= 0 {
		unix.Write(m.f.clearRefs, []byte("5"))
	}
	m.cpu0 = threadCPU()
}

func (m *meter) stop() wire.Usage {
	return wire.Usage{CPU: uint64(max(threadCPU()-m.cpu0, 0)), MaxRSS: peakRSS(m.f.status)}
}

// threadCPU is the calling thread's CPU time, in nanoseconds.
func threadCPU() int64 {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts) != nil {
		return 0
	}
	return ts.Nano()
}

// peakRSS reads VmHWM, the peak resident memory, from /proc/self/status,
// in bytes; 0 if it cannot.
func peakRSS(fd int) uint64 {
	if fd < 0 {
		return 0
	}
	var buf [4096]byte
	n, err := unix.Pread(fd, buf[:], 0)
	if err != nil || n <= 0 {
		return 0
	}
	_, rest, ok := bytes.Cut(buf[:n], []byte("\nVmHWM:"))
	if !ok {
		return 0
	}
	line, _, _ := bytes.Cut(rest, []byte("\n"))
	f := bytes.Fields(line) // "1234", "kB"
	if len(f) != 2 || string(f[1]) != "kB" {
		return 0
	}
	kb, err := strconv.ParseUint(string(f[0]), 10, 44)
	if err != nil {
		return 0
	}
	return kb << 10
}
