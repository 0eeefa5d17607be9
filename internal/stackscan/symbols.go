package stackscan

import (
	"cmp"
	"debug/elf"
	"debug/gosym"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Limits on the ELF files read for their symbols: a worker maps what it
// likes, and names it as it likes.
const (
	MaxSymbolFile  = 1 << 30  // the file
	maxSymbolTable = 64 << 20 // .symtab or .dynsym, and the strings they name
)

// ErrNotELF is returned for a file whose symbols cannot be read.
var ErrNotELF = errors.New("no symbol table")

// Symtab is an ELF file's function symbols and loadable segments.
type Symtab struct {
	read  uint64 // bytes of symbol tables and strings read
	max   uint64 // bound on a table's bytes (and its strings')
	funcs []fn
	loads []segment
	gotab *gosym.Table // a Go program's function table, if it has no .symtab
}

type fn struct {
	start, end uint64
	name       string
}

type segment struct{ off, size, vaddr uint64 }

// Load reads the function symbols (.symtab, or else .dynsym) of the ELF
// file at path; if m is not nil, the file must be the inode m maps (not
// its device: under overlayfs, maps may give the lower layer's device and
// stat the overlay's). A malformed file is an error, never a panic.
func Load(path string, m *Mapping) (*Symtab, error) {
	return LoadWithin(path, m, maxSymbolTable)
}

// LoadWithin is Load with a symbol table (and its strings) of at most
// maxTable bytes read: for a file a hostile process named, a tighter bound
// on what it costs to read. Whatever path names, nothing but a regular file
// is opened for reading (a device's open can have effects: a watchdog's
// starts it): path is opened with O_PATH, checked, then reopened.
func LoadWithin(path string, m *Mapping, maxTable uint64) (s *Symtab, err error) {
	f, err := openRegular(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); m != nil && (!ok || st.Ino != m.Inode) {
		return nil, fmt.Errorf("%s: not the file mapped (another inode): %w", path, ErrNotELF)
	}
	s, err = parse(f, maxTable)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// openRegular opens path for reading if it is a regular file of at most
// MaxSymbolFile bytes; it never opens anything else for reading, not even
// for an instant (a FIFO, a device), and a file swapped in between is
// another inode, refused.
func openRegular(path string) (*os.File, error) {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size > MaxSymbolFile {
		return nil, fmt.Errorf("%s: not a regular file of at most 1 GiB: %w", path, ErrNotELF)
	}
	// Reopening the O_PATH descriptor's magic link opens that inode.
	f, err := os.OpenFile("/proc/self/fd/"+strconv.Itoa(fd), os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	var again unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &again); err != nil || again.Ino != st.Ino || again.Dev != st.Dev {
		f.Close()
		return nil, fmt.Errorf("%s: changed while opened: %w", path, ErrNotELF)
	}
	return f, nil
}

// parse reads an ELF file's symbols; a malformed file is an error.
func parse(r io.ReaderAt, maxTable uint64) (s *Symtab, err error) {
	defer func() {
		if p := recover(); p != nil { // debug/elf on a hostile file
			s, err = nil, fmt.Errorf("%v: %w", p, ErrNotELF)
		}
	}()
	ef, err := elf.NewFile(r)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", err, ErrNotELF)
	}
	s = &Symtab{max: maxTable}
	for _, p := range ef.Progs {
		if p.Type == elf.PT_LOAD {
			s.loads = append(s.loads, segment{p.Off, p.Filesz, p.Vaddr})
		}
	}
	syms := s.symbols(ef, elf.SHT_SYMTAB, ef.Symbols)
	if len(syms) == 0 {
		// Stripped (go test, go run and -ldflags=-s strip Go programs): a
		// Go program still has its function table, .gopclntab.
		syms = s.symbols(ef, elf.SHT_DYNSYM, ef.DynamicSymbols)
		s.gotab = s.goTable(ef, syms)
	}
	for _, sy := range syms {
		if elf.ST_TYPE(sy.Info) == elf.STT_FUNC && sy.Size > 0 && sy.Name != "" && sy.Value+sy.Size > sy.Value {
			s.funcs = append(s.funcs, fn{sy.Value, sy.Value + sy.Size, sy.Name})
		}
	}
	// By address; of aliases, a public name first (clock_nanosleep, not
	// __clock_nanosleep).
	slices.SortStableFunc(s.funcs, func(a, b fn) int {
		if c := cmp.Compare(a.start, b.start); c != 0 {
			return c
		}
		return cmp.Compare(underscored(a.name), underscored(b.name))
	})
	return s, nil
}

// symbols reads the symbol section of type typ with read, if its section
// and string table are of a bounded size.
func (s *Symtab) symbols(ef *elf.File, typ elf.SectionType, read func() ([]elf.Symbol, error)) []elf.Symbol {
	for _, sec := range ef.Sections {
		if sec.Type != typ {
			continue
		}
		if sec.Size > s.max || int(sec.Link) >= len(ef.Sections) || ef.Sections[sec.Link].Size > s.max {
			return nil
		}
		s.read += sec.Size + ef.Sections[sec.Link].Size
		syms, _ := read()
		return syms
	}
	return nil
}

// goTable reads a Go program's .gopclntab, or returns nil. Its functions'
// addresses are offsets from runtime.text, which is where .text starts
// unless a C linker put C code first (cgo): then an assembly function of
// Go's that cgo programs export, in dyn, gives where it is.
func (s *Symtab) goTable(ef *elf.File, dyn []elf.Symbol) *gosym.Table {
	pcln, text := ef.Section(".gopclntab"), ef.Section(".text")
	if pcln == nil || text == nil || pcln.Size > s.max || pcln.Type == elf.SHT_NOBITS {
		return nil
	}
	s.read += pcln.Size
	data, err := pcln.Data()
	if err != nil {
		return nil
	}
	t, err := gosym.NewTable(nil, gosym.NewLineTable(data, text.Addr))
	if err != nil {
		return nil
	}
	for _, sy := range dyn {
		if sy.Name != "crosscall2" && sy.Name != "_cgo_topofstack" {
			continue
		}
		if f := t.LookupFunc(sy.Name); f != nil && f.Entry != sy.Value {
			t, err = gosym.NewTable(nil, gosym.NewLineTable(data, text.Addr+(sy.Value-f.Entry)))
			if err != nil {
				return nil
			}
		}
		break
	}
	return t
}

// Vaddr returns the address in the file's own terms (its symbols') of the
// byte at file offset off, if a loadable segment holds it.
func (s *Symtab) Vaddr(off uint64) (uint64, bool) {
	for _, l := range s.loads {
		if off >= l.off && off-l.off < l.size {
			return l.vaddr + (off - l.off), true
		}
	}
	return 0, false
}

// Read is how many bytes of symbol tables and strings were read: what the
// table cost, for a reader's budget.
func (s *Symtab) Read() uint64 { return s.read }

// Lookup returns the function covering vaddr and vaddr's offset in it, or
// "" if none does.
func (s *Symtab) Lookup(vaddr uint64) (name string, off uint64) {
	i := sort.Search(len(s.funcs), func(i int) bool { return s.funcs[i].start > vaddr }) - 1
	// Aliases share a start: the first of them is the one to name.
	for i > 0 && s.funcs[i-1].start == s.funcs[i].start {
		i--
	}
	if i >= 0 && vaddr < s.funcs[i].end {
		return s.funcs[i].name, vaddr - s.funcs[i].start
	}
	return s.goLookup(vaddr)
}

// goLookup looks vaddr up in the Go function table; a table from a hostile
// file that panics names nothing.
func (s *Symtab) goLookup(vaddr uint64) (name string, off uint64) {
	if s.gotab == nil {
		return "", 0
	}
	defer func() {
		if recover() != nil {
			name, off = "", 0
		}
	}()
	if f := s.gotab.PCToFunc(vaddr); f != nil && f.Entry <= vaddr {
		return f.Name, vaddr - f.Entry
	}
	return "", 0
}

// underscored is 1 for a name that starts with "_" (an internal alias), else 0.
func underscored(name string) int {
	if strings.HasPrefix(name, "_") {
		return 1
	}
	return 0
}
