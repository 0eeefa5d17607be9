package sandbox

import (
	"encoding/binary"
	"fmt"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// The trampoline. Go's os/exec runs nothing in the child between fork and
// execve that we could use, and a seccomp filter or a Landlock domain must
// be installed by the process it confines. So a sandboxed worker is
// started as the dispatcher's own binary with TrampolineEnv set, and the
// trampoline, before the Go runtime starts (trampoline.c, a C constructor,
// in a build with cgo) or in package bulkhead's init (trampoline_nocgo.go,
// without cgo), applies what the dispatcher prepared and then
// execveat(2)s the worker binary from the descriptor the dispatcher opened
// (and checked, if pinned). What it applies keeps through the exec; the
// trampoline's code does not.
//
// Everything that takes work is done by the dispatcher, once per start:
// the seccomp program is compiled (go-seccomp-bpf) and the Landlock
// ruleset built (go-landlock) there, and handed over ready, so that the
// trampoline only makes system calls, in this order: mount (PrivateTmp),
// which needs the privilege the dispatcher started it with; setgroups,
// setresgid and setresuid (User), which drop that privilege, checked and
// failing closed; prctl (no_new_privs), landlock_restrict_self, seccomp,
// sendmsg, execveat. The user is switched here, not at the clone
// (SysProcAttr.Credential), because a trampoline already running as the
// user could no longer mount its private /tmp.

// TrampolineEnv marks a trampoline; its descriptor (dispatch.Spec's
// ExtraFiles; dispatch.ExtraFDEnv names it) is a SOCK_SEQPACKET socket on
// which the dispatcher has queued one message, trampolineMsg, and on which
// the trampoline answers "ok" with the filter's listener, or "error: "
// protection NUL reason.
const TrampolineEnv = "BULKHEAD_SANDBOX_TRAMPOLINE"

// The message's layout, native byte order (both ends are one machine):
//
//	u32 magic, flags, nfilter, npatch, argvlen, uid, gid
//	nfilter struct sock_filter (u16 code, u8 jt, u8 jf, u32 k)
//	npatch  {u32 index, u32 half}: the instructions whose k is the high
//	        (half 0) or low (half 1) 32 bits of the execveat pathname's
//	        address, which only the trampoline knows
//	argvlen bytes: the worker's argv, each string ending in NUL
//
// with SCM_RIGHTS: the worker binary, then the Landlock ruleset if
// flagLandlock. uid and gid are the user the trampoline switches to with
// flagUser (0 otherwise). trampoline.c reads the same layout.
const (
	trampolineMagic = 0x4248544d // "MTHB"
	flagPrivateTmp  = 1
	flagLandlock    = 2
	flagSeccomp     = 4
	flagUser        = 8

	hdrSize      = 28
	maxFilter    = 4096 // BPF_MAXINSNS
	maxPatches   = 16
	maxArgvBytes = 128 << 10 // within a SOCK_SEQPACKET message's limit
)

// The placeholders compiled in for the execveat pathname's address.
const (
	pathHi = 0x5ec0de11
	pathLo = 0x7ea5e7a1
)

// trampolineMsg is the message, decoded.
type trampolineMsg struct {
	flags   uint32
	uid     uint32 // with flagUser
	gid     uint32 // with flagUser
	filter  []unix.SockFilter
	patches [][2]uint32
	argv    []string
}

// compileFilter compiles sc's filter with the placeholders for the
// execveat pathname, and finds the instructions that hold them.
func compileFilter(sc *Seccomp) ([]unix.SockFilter, [][2]uint32, error) {
	pol, err := sc.policy(pathHi<<32 | pathLo)
	if err != nil {
		return nil, nil, err
	}
	insts, err := pol.Assemble()
	if err != nil {
		return nil, nil, err
	}
	raw, err := bpf.Assemble(insts)
	if err != nil {
		return nil, nil, err
	}
	prog := make([]unix.SockFilter, len(raw))
	var patches [][2]uint32
	for i, r := range raw {
		prog[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
		if r.Op == unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K && (r.K == pathHi || r.K == pathLo) {
			half := uint32(0)
			if r.K == pathLo {
				half = 1
			}
			patches = append(patches, [2]uint32{uint32(i), half})
		}
	}
	if len(prog) > maxFilter || len(patches) > maxPatches {
		return nil, nil, fmt.Errorf("the filter has %d instructions and %d placeholders", len(prog), len(patches))
	}
	return prog, patches, nil
}

// encode lays m out as trampoline.c reads it.
func (m *trampolineMsg) encode() ([]byte, error) {
	var args []byte
	for _, a := range m.argv {
		args = append(append(args, a...), 0)
	}
	if len(args) > maxArgvBytes {
		return nil, fmt.Errorf("the worker's arguments take %d bytes, more than %d", len(args), maxArgvBytes)
	}
	ne := binary.NativeEndian
	b := make([]byte, 0, hdrSize+8*len(m.filter)+8*len(m.patches)+len(args))
	for _, v := range []uint32{trampolineMagic, m.flags, uint32(len(m.filter)), uint32(len(m.patches)), uint32(len(args)), m.uid, m.gid} {
		b = ne.AppendUint32(b, v)
	}
	for _, f := range m.filter {
		b = ne.AppendUint16(b, f.Code)
		b = append(b, f.Jt, f.Jf)
		b = ne.AppendUint32(b, f.K)
	}
	for _, p := range m.patches {
		b = ne.AppendUint32(ne.AppendUint32(b, p[0]), p[1])
	}
	return append(b, args...), nil
}

// decodeTrampolineMsg reads b, which the dispatcher wrote (encode); it
// checks every count against the message's length.
func decodeTrampolineMsg(b []byte) (*trampolineMsg, error) {
	if len(b) < hdrSize {
		return nil, fmt.Errorf("a message of %d bytes", len(b))
	}
	ne := binary.NativeEndian
	u := func(i int) uint32 { return ne.Uint32(b[4*i:]) }
	magic, flags, nf, np, na := u(0), u(1), u(2), u(3), u(4)
	if magic != trampolineMagic || nf > maxFilter || np > maxPatches || na > maxArgvBytes || na == 0 {
		return nil, fmt.Errorf("a bad header (magic %#x, %d instructions, %d patches, %d bytes of arguments)", magic, nf, np, na)
	}
	if want := hdrSize + 8*int(nf) + 8*int(np) + int(na); len(b) != want {
		return nil, fmt.Errorf("a message of %d bytes, want %d", len(b), want)
	}
	m := &trampolineMsg{flags: flags, uid: u(5), gid: u(6)}
	p := b[hdrSize:]
	for range nf {
		m.filter = append(m.filter, unix.SockFilter{Code: ne.Uint16(p), Jt: p[2], Jf: p[3], K: ne.Uint32(p[4:])})
		p = p[8:]
	}
	for range np {
		idx, half := ne.Uint32(p), ne.Uint32(p[4:])
		if idx >= nf || half > 1 {
			return nil, fmt.Errorf("a patch of instruction %d (half %d) in a program of %d", idx, half, nf)
		}
		m.patches = append(m.patches, [2]uint32{idx, half})
		p = p[8:]
	}
	if p[na-1] != 0 {
		return nil, fmt.Errorf("arguments that do not end in NUL")
	}
	for len(p) > 0 {
		i := 0
		for p[i] != 0 {
			i++
		}
		m.argv = append(m.argv, string(p[:i]))
		p = p[i+1:]
	}
	return m, nil
}

// patch writes addr, the execveat pathname's address, into the filter.
func (m *trampolineMsg) patch(addr uintptr) {
	for _, p := range m.patches {
		k := uint32(uint64(addr) >> 32)
		if p[1] == 1 {
			k = uint32(addr)
		}
		m.filter[p[0]].K = k
	}
}

// installFilter installs prog on the calling thread and returns its
// listener.
func installFilter(prog []unix.SockFilter) (int, error) {
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	listener, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
		unix.SECCOMP_FILTER_FLAG_NEW_LISTENER, uintptr(unsafe.Pointer(&fprog)))
	if errno != 0 {
		return -1, &Error{Protection: "seccomp", Reason: "seccomp(SECCOMP_SET_MODE_FILTER)", Err: errno}
	}
	return int(listener), nil
}
