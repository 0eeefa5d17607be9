package bulkhead

import (
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/bulkhead-go/bulkhead/internal/stackscan"
	"golang.org/x/sys/unix"
)

// Naming a C SDK report's frames that have no symbol (a static function)
// from the ELF symbol tables of the files they are in: the pool's program,
// and the shared libraries the report names.
//
// The report is hostile input (the worker wrote it), and it names files
// that the dispatcher opens. A STACK dump comes from a live worker: a
// library is read only if its /proc/PID/maps shows it mapped executable,
// through the worker's own root (its mount namespace), and only if it is
// still the inode mapped. A crash report's worker is dead when the report
// is read (a zombie has no maps), so nothing proves it had the library
// mapped; what a report can make the dispatcher do is bounded instead (for
// a STACK's libraries too):
//   - a library's path is at most PATH_MAX bytes, absolute and clean (no
//     "..", no "//"), not under /proc, /sys or /dev, nor under /tmp when the
//     worker has a private one (Sandbox.PrivateTmp: not the same files);
//   - nothing but a regular file of at most 1 GiB is opened for reading, not
//     even for an instant: a device or FIFO is refused from its O_PATH
//     descriptor's stat (stackscan.LoadWithin), whatever symbolic links
//     lead to it;
//   - of each file only its ELF headers and its .symtab or .dynsym and their
//     strings, each at most maxLibTable bytes, are read; at most
//     maxReportFiles files per report, maxReportFrames frames looked at;
//   - a file's symbols are kept per pool (at most maxLibCache files and
//     maxLibCacheRead bytes of their tables, by path, dev, inode, size and
//     mtime): a crash loop does not reread them.
//
// What comes back is function names, which go to the caller's CrashError
// and the pool's log, never to the worker. A caller of a hostile worker
// could so learn the function names of an ELF file the dispatcher may read
// and the worker may not; a worker in its own mount namespace may see
// other files at the same paths, whose names are then wrong.
const (
	maxReportFrames = 64       // the SDK writes at most 64 (BH__FRAMES)
	maxReportFiles  = 8        // libraries read per report
	maxLibTable     = 16 << 20 // a library's symbol table, and its strings
	maxLibCache     = 16       // libraries whose symbols a pool keeps
	maxLibCacheRead = 64 << 20 // and the bytes of their tables
	maxModulePath   = 4096     // PATH_MAX
)

// elfSymbols is the function symbols of a pool's worker program, read the
// first time a report needs them, never under the pool's lock, and of the
// libraries its reports name. A worker's report names its program's file;
// only the file the pool started is read as the program.
type elfSymbols struct {
	path       string // the program the pool starts (settings.path)
	privateTmp bool   // its workers have a /tmp of their own
	once       sync.Once
	real       string // path with its symbolic links resolved
	tab        *stackscan.Symtab

	mu     sync.Mutex
	libs   map[string]libSymbols // by path
	cached uint64                // the bytes of their tables (Symtab.Read)
}

// libSymbols is a library's symbols (nil: it has none we could read), and
// which file they are of.
type libSymbols struct {
	id  fileID
	tab *stackscan.Symtab
}

type fileID struct {
	dev, ino    uint64
	size, mtime int64
}

// lookup returns the function at offset off of exe (an address less the
// load bias: the file's own address) and off's offset in it; "" if exe is
// not the pool's program or no function covers off.
func (s *elfSymbols) lookup(exe string, off uint64) (name string, at uint64) {
	s.once.Do(s.load)
	if exe == "" || exe != s.real || s.tab == nil {
		return "", 0
	}
	return s.tab.Lookup(off)
}

func (s *elfSymbols) load() {
	real, err := filepath.EvalSymlinks(s.path)
	if err != nil {
		return
	}
	real, err = filepath.Abs(real)
	if err != nil {
		return
	}
	tab, err := stackscan.Load(real, nil)
	if err != nil {
		return
	}
	s.real, s.tab = real, tab
}

// library returns the symbols of the library a report names as path,
// from the pool's cache or read now if budget (files left to read for this
// report) allows; nil if path may not be read or has no symbols. The file
// read is at path, or for a live worker (pid not 0) at path in its root if
// it is the inode its maps show mapped there (ino).
func (s *elfSymbols) library(path string, pid int, ino uint64, budget *int) *stackscan.Symtab {
	if !s.readable(path, pid != 0) {
		return nil
	}
	read := path
	if pid != 0 {
		read = "/proc/" + strconv.Itoa(pid) + "/root" + path
	}
	var st unix.Stat_t // stat opens nothing
	if err := unix.Stat(read, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || (pid != 0 && st.Ino != ino) {
		return nil
	}
	id := fileID{dev: st.Dev, ino: st.Ino, size: st.Size, mtime: st.Mtim.Nano()}
	s.mu.Lock()
	c, ok := s.libs[path]
	s.mu.Unlock()
	if ok && c.id == id {
		return c.tab
	}
	if *budget <= 0 {
		return nil
	}
	*budget--
	tab, err := stackscan.LoadWithin(read, &stackscan.Mapping{Inode: st.Ino}, maxLibTable)
	if err != nil {
		tab = nil
	}
	s.keep(path, libSymbols{id, tab})
	return tab
}

// keep caches l as path's symbols, forgetting others (any) to stay within
// maxLibCache files and maxLibCacheRead bytes.
func (s *elfSymbols) keep(path string, l libSymbols) {
	size := l.size()
	if size > maxLibCacheRead {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.libs == nil {
		s.libs = make(map[string]libSymbols)
	}
	if old, ok := s.libs[path]; ok {
		s.cached -= old.size()
		delete(s.libs, path)
	}
	for k, old := range s.libs {
		if len(s.libs) < maxLibCache && s.cached+size <= maxLibCacheRead {
			break
		}
		s.cached -= old.size()
		delete(s.libs, k)
	}
	s.libs[path] = l
	s.cached += size
}

// size is what l's table cost to read: what it holds, give or take.
func (l libSymbols) size() uint64 {
	if l.tab == nil {
		return 0
	}
	return l.tab.Read()
}

// readable reports whether a report's module path may be read for its
// symbols (see above): live, through a live worker's root.
func (s *elfSymbols) readable(path string, live bool) bool {
	if len(path) > maxModulePath || !filepath.IsAbs(path) || filepath.Clean(path) != path {
		return false
	}
	for _, dir := range []string{"/proc", "/sys", "/dev"} {
		if path == dir || strings.HasPrefix(path, dir+"/") {
			return false
		}
	}
	return live || !s.privateTmp || !strings.HasPrefix(path, "/tmp/")
}
