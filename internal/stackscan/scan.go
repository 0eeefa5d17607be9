package stackscan

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Limits of a scan: what is read of each file, thread and stack.
const (
	MaxStackRead  = 64 << 10 // bytes of a thread's stack read from its SP up
	MaxFrames     = 32       // frames kept per thread, its PC's included
	MaxThreads    = 64       // threads scanned; the others are counted
	maxMapsFile   = 4 << 20
	maxCandidates = 1024      // words checked for a call before them, per thread
	maxELFFiles   = 32        // files read for symbols per scan
	maxELFRead    = 256 << 20 // bytes of symbol tables read per scan, give or take the last file's
)

// Frame is a code address and what it is in.
type Frame struct {
	Addr uint64
	Func string // "" if no symbol covers it
	Off  uint64 // from Func, or in File when Func is ""
	File string // the mapping's path
}

func (f Frame) String() string {
	base := filepath.Base(f.File)
	if f.Func == "" {
		return base + "+0x" + strconv.FormatUint(f.Off, 16)
	}
	return f.Func + "+0x" + strconv.FormatUint(f.Off, 16) + " (" + base + ")"
}

// Thread is one thread's state and, if it is blocked, its scanned frames:
// the PC's first, then the return addresses found, innermost first.
type Thread struct {
	TID     int
	Name    string // its comm
	State   Syscall
	Frames  []Frame
	NoStack string // why Frames is empty, if it is
}

// Report is a scan of a process.
type Report struct {
	PID     int
	Threads []Thread
	More    int   // threads past MaxThreads, not scanned
	Err     error // the process could not be read at all
}

// Scan reads the stacks of pid's threads. It neither stops nor signals the
// process. It does file and memory I/O: call it without locks held.
func Scan(pid int) Report {
	r := Report{PID: pid}
	proc := "/proc/" + strconv.Itoa(pid)
	maps, err := ReadMaps(pid)
	if err != nil {
		r.Err = err
		return r
	}
	tids, more, err := threads(proc)
	if err != nil {
		r.Err = err
		return r
	}
	s := scanner{pid: pid, proc: proc, maps: maps, syms: map[string]*Symtab{}}
	for _, m := range s.maps {
		if m.Exec() {
			s.exec = append(s.exec, m)
		}
	}
	r.More = more
	for _, tid := range tids {
		r.Threads = append(r.Threads, s.thread(tid))
	}
	return r
}

// ReadMaps reads and parses /proc/PID/maps, at most 4 MiB of it.
func ReadMaps(pid int) ([]Mapping, error) {
	b, err := readBounded("/proc/"+strconv.Itoa(pid)+"/maps", maxMapsFile)
	if err != nil {
		return nil, err
	}
	return ParseMaps(b), nil
}

// threads lists pid's threads, in order, at most MaxThreads of them.
func threads(proc string) (tids []int, more int, err error) {
	d, err := os.Open(proc + "/task")
	if err != nil {
		return nil, 0, err
	}
	defer d.Close()
	names, err := d.Readdirnames(4 * MaxThreads)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, 0, err
	}
	for _, n := range names {
		if tid, err := strconv.Atoi(n); err == nil && tid > 0 {
			tids = append(tids, tid)
		}
	}
	sort.Ints(tids)
	if len(tids) > MaxThreads {
		more, tids = len(tids)-MaxThreads, tids[:MaxThreads]
	}
	return tids, more, nil
}

type scanner struct {
	pid        int
	proc       string
	maps, exec []Mapping
	syms       map[string]*Symtab // by path and inode; nil: unreadable
	symRead    uint64             // bytes of the tables in syms
}

func (s *scanner) thread(tid int) Thread {
	t := Thread{TID: tid}
	task := s.proc + "/task/" + strconv.Itoa(tid)
	if comm, err := readBounded(task+"/comm", 64); err == nil {
		t.Name = printable(strings.TrimSuffix(string(comm), "\n"))
	}
	b, err := readBounded(task+"/syscall", 512)
	if err != nil {
		t.NoStack = "reading its syscall: " + err.Error()
		return t
	}
	st, ok := ParseSyscall(b)
	if !ok {
		t.NoStack = "its syscall file is not understood"
		return t
	}
	t.State = st
	if st.Running {
		t.NoStack = "running in user code"
		return t
	}
	t.Frames, t.NoStack = s.frames(st)
	return t
}

// frames symbolises st.PC and the return addresses on the stack above SP.
func (s *scanner) frames(st Syscall) ([]Frame, string) {
	var fs []Frame
	if m := s.execAt(st.PC); m != nil {
		fs = append(fs, s.frame(m, st.PC))
	}
	stack := s.mappingAt(st.SP)
	if stack == nil {
		return fs, "its stack pointer is in no mapping"
	}
	n := min(stack.End-st.SP, MaxStackRead) &^ 7
	buf := make([]byte, n)
	got, err := s.read(st.SP, buf)
	if got < 8 {
		return fs, fmt.Sprintf("reading its stack: %v", err)
	}
	candidates := 0
	for i := 0; i+8 <= got && len(fs) < MaxFrames && candidates < maxCandidates; i += 8 {
		v := binary.NativeEndian.Uint64(buf[i:])
		m := s.execAt(v)
		if m == nil || v-m.Start < 8 {
			continue
		}
		candidates++
		var code [8]byte
		if k, _ := s.read(v-8, code[:]); k != 8 || !callBefore(runtime.GOARCH, code) {
			continue
		}
		f := s.frame(m, v-1) // the call's last byte: in the caller even if it ends it
		f.Addr, f.Off = v, f.Off+1
		fs = append(fs, f)
	}
	return fs, ""
}

// frame names the code at addr of mapping m.
func (s *scanner) frame(m *Mapping, addr uint64) Frame {
	f := Frame{Addr: addr, File: m.Path, Off: m.Offset + (addr - m.Start)}
	sym := s.symtab(m)
	if sym == nil {
		return f
	}
	if va, ok := sym.Vaddr(f.Off); ok {
		if name, off := sym.Lookup(va); name != "" {
			f.Func, f.Off = printable(name), off
		}
	}
	return f
}

// symtab loads m's file's symbols once per scan, through the process's own
// root (its mount namespace, a chroot), checking it is the inode mapped.
func (s *scanner) symtab(m *Mapping) *Symtab {
	key := m.Path + "\x00" + strconv.FormatUint(m.Dev, 16) + ":" + strconv.FormatUint(m.Inode, 10)
	if sym, seen := s.syms[key]; seen {
		return sym
	}
	if len(s.syms) >= maxELFFiles || s.symRead >= maxELFRead ||
		strings.HasSuffix(m.Path, " (deleted)") || strings.Contains(m.Path, "/../") {
		return nil
	}
	sym, err := Load(s.proc+"/root"+m.Path, m)
	if err != nil {
		sym = nil
	} else {
		s.symRead += sym.read
	}
	s.syms[key] = sym
	return sym
}

func (s *scanner) execAt(addr uint64) *Mapping { return find(s.exec, addr) }

func (s *scanner) mappingAt(addr uint64) *Mapping { return find(s.maps, addr) }

// find returns the mapping of ms (in ascending order) holding addr.
func find(ms []Mapping, addr uint64) *Mapping {
	i := sort.Search(len(ms), func(i int) bool { return ms[i].End > addr })
	if i < len(ms) && ms[i].Start <= addr {
		return &ms[i]
	}
	return nil
}

// read copies the process's memory at addr into buf; it returns how many
// bytes it got.
func (s *scanner) read(addr uint64, buf []byte) (int, error) {
	if len(buf) == 0 {
		return 0, nil
	}
	local := []unix.Iovec{{Base: &buf[0]}}
	local[0].SetLen(len(buf))
	remote := []unix.RemoteIovec{{Base: uintptr(addr), Len: len(buf)}}
	n, err := unix.ProcessVMReadv(s.pid, local, remote, 0)
	if n < 0 {
		n = 0
	}
	return n, err
}

// readBounded reads at most limit bytes of a file.
func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, limit))
}

// printable keeps a name from a file or the process printable ASCII, at
// most 256 bytes of it.
func printable(s string) string {
	if len(s) > 256 {
		s = s[:256]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r >= 0x7f {
			return '?'
		}
		return r
	}, s)
}
