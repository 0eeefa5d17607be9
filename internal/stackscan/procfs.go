// Package stackscan shows where the threads of another process are, without
// stopping or signalling it: for each thread blocked in the kernel it reads
// the syscall, stack pointer and program counter the kernel reports in
// /proc/PID/task/TID/syscall, copies the top of that thread's stack with
// process_vm_readv, keeps the words that are return addresses into the
// process's executable file mappings (an address a call instruction
// precedes), and names them from the files' ELF symbol tables.
//
// It is a heuristic: a stack scanned, not unwound, may show stale return
// addresses of calls that have returned, and a thread running in user code
// has no stack to show (the kernel gives no registers for it). It needs the
// access ptrace would need (the same user, a parent under Yama), but no
// ptrace: the process's parent keeps wait4 to itself. Everything read from
// /proc and the process's memory is treated as hostile: sizes are bounded,
// and a malformed line or a failed read is only a thread without a stack.
package stackscan

import (
	"bytes"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Mapping is a line of /proc/PID/maps.
type Mapping struct {
	Start, End uint64 // [Start, End)
	Perms      string // "r-xp"
	Offset     uint64 // in the file
	Dev        uint64 // the file's device, as unix.Mkdev encodes it
	Inode      uint64
	Path       string // "" for an anonymous mapping; "[stack]", "[vdso]"...
}

// Exec reports whether the mapping is executable code from a file.
func (m *Mapping) Exec() bool {
	return len(m.Perms) >= 3 && m.Perms[2] == 'x' && strings.HasPrefix(m.Path, "/")
}

// maxMappings bounds the mappings kept from a maps file.
const maxMappings = 1 << 16

// ParseMaps parses /proc/PID/maps, skipping the lines it cannot read. The
// mappings come out in the file's order (ascending, from the kernel).
func ParseMaps(b []byte) []Mapping {
	var ms []Mapping
	for len(b) > 0 && len(ms) < maxMappings {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		if m, ok := parseMapping(string(line)); ok {
			ms = append(ms, m)
		}
	}
	return ms
}

// parseMapping parses "start-end perms offset dev inode   path".
func parseMapping(l string) (m Mapping, ok bool) {
	var f [5]string
	rest := l
	for i := range f {
		rest = strings.TrimLeft(rest, " ")
		j := strings.IndexByte(rest, ' ')
		if j < 0 {
			if i < 4 {
				return m, false
			}
			j = len(rest)
		}
		f[i], rest = rest[:j], rest[j:]
	}
	lo, hi, found := strings.Cut(f[0], "-")
	if !found {
		return m, false
	}
	var err error
	if m.Start, err = strconv.ParseUint(lo, 16, 64); err != nil {
		return m, false
	}
	if m.End, err = strconv.ParseUint(hi, 16, 64); err != nil || m.End <= m.Start {
		return m, false
	}
	if len(f[1]) != 4 {
		return m, false
	}
	m.Perms = f[1]
	if m.Offset, err = strconv.ParseUint(f[2], 16, 64); err != nil {
		return m, false
	}
	maj, mnr, found := strings.Cut(f[3], ":")
	major, err1 := strconv.ParseUint(maj, 16, 32)
	minor, err2 := strconv.ParseUint(mnr, 16, 32)
	if !found || err1 != nil || err2 != nil {
		return m, false
	}
	m.Dev = unix.Mkdev(uint32(major), uint32(minor))
	if m.Inode, err = strconv.ParseUint(f[4], 10, 64); err != nil {
		return m, false
	}
	m.Path = strings.TrimLeft(rest, " ")
	return m, true
}

// Syscall is a thread's state from /proc/PID/task/TID/syscall.
type Syscall struct {
	Running bool  // in user code, or runnable: no registers to read
	NR      int64 // the syscall it is blocked in; -1: blocked outside one
	SP, PC  uint64
}

// ParseSyscall parses /proc/PID/task/TID/syscall: "running", or
// "NR ARG1 ... ARG6 SP PC" (the arguments and registers in hex), or
// "-1 SP PC" for a thread blocked outside a syscall.
func ParseSyscall(b []byte) (s Syscall, ok bool) {
	f := strings.Fields(string(b))
	if len(f) == 1 && f[0] == "running" {
		return Syscall{Running: true}, true
	}
	if len(f) != 9 && len(f) != 3 {
		return s, false
	}
	nr, err := strconv.ParseInt(f[0], 10, 32)
	if err != nil || nr < -1 || (nr == -1) != (len(f) == 3) {
		return s, false
	}
	s.NR = nr
	if s.SP, ok = hex(f[len(f)-2]); !ok {
		return s, false
	}
	if s.PC, ok = hex(f[len(f)-1]); !ok {
		return s, false
	}
	return s, true
}

// hex parses "0x..." as the kernel writes registers.
func hex(s string) (uint64, bool) {
	h, found := strings.CutPrefix(s, "0x")
	if !found {
		return 0, false
	}
	v, err := strconv.ParseUint(h, 16, 64)
	return v, err == nil
}
