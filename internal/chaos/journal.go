package chaos

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
)

// Journal records: one fixed-size record (call key, pid, magic) per event,
// appended with a single write(2) to an O_APPEND file of the worker's own.
// A worker journals a start before it does anything else for a call, and a
// firing just before it injects the call's fault (crashes, lies, hangs or
// leaks), so that the audit can tell a real crash from a spurious one.
const (
	recordSize  = 16
	recordMagic = 0x4c4e524a // "JRNL": the call started
	firedMagic  = 0x45524946 // "FIRE": the call's fault is being injected now
)

// journal is what the workers did, call by call (indexed by key; 0 unused).
type journal struct {
	starts  []int // journaled starts
	fired   []int // faults injected
	records int
}

// putRecord encodes one record.
func putRecord(rec *[recordSize]byte, key uint64, pid, magic uint32) {
	binary.LittleEndian.PutUint64(rec[0:], key)
	binary.LittleEndian.PutUint32(rec[8:], pid)
	binary.LittleEndian.PutUint32(rec[12:], magic)
}

// readJournals reads every worker's journal in dir, for calls 1 to n.
func readJournals(dir string, n int) (*journal, error) {
	j := &journal{starts: make([]int, n+1), fired: make([]int, n+1)}
	files, err := filepath.Glob(filepath.Join(dir, "journal-*"))
	if err != nil {
		return nil, fmt.Errorf("listing journals: %w", err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("reading a journal: %w", err)
		}
		if err := j.add(b); err != nil {
			return nil, fmt.Errorf("journal %s: %w", f, err)
		}
	}
	return j, nil
}

// add counts the records of one journal file.
func (j *journal) add(b []byte) error {
	if len(b)%recordSize != 0 {
		return fmt.Errorf("%d bytes, not whole records", len(b))
	}
	n := uint64(len(j.starts) - 1)
	for off := 0; off < len(b); off += recordSize {
		key := binary.LittleEndian.Uint64(b[off:])
		if key == 0 || key > n {
			return fmt.Errorf("bad key %d in the record at %d", key, off)
		}
		switch binary.LittleEndian.Uint32(b[off+12:]) {
		case recordMagic:
			j.starts[key]++
		case firedMagic:
			j.fired[key]++
		default:
			return fmt.Errorf("bad record at %d", off)
		}
		j.records++
	}
	return nil
}

// pointJournal names the journal of the newest process with pid, in a file
// of its own, so that the soak can find which call a dead worker was
// running from the pid in the pool's crash record (journal names are not
// the pid alone: a long soak wraps the pid space).
func pointJournal(dir string, pid int, journal string) error {
	f, err := os.CreateTemp(dir, "tmp-pid-*")
	if err == nil {
		_, err = f.WriteString(journal)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(f.Name(), filepath.Join(dir, fmt.Sprintf("pid-%d", pid)))
		}
	}
	if err != nil {
		return fmt.Errorf("journal pointer: %w", err)
	}
	return nil
}

// runningCall returns the key of the last call that the newest process with
// pid journaled as started: the call a worker that died during a call was
// running (a worker starts its calls in order). 0 if there is none.
func runningCall(dir string, pid int) uint64 {
	name, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("pid-%d", pid)))
	if err != nil {
		return 0
	}
	b, err := os.ReadFile(filepath.Join(dir, filepath.Base(string(name))))
	if err != nil {
		return 0
	}
	for off := len(b) - len(b)%recordSize - recordSize; off >= 0; off -= recordSize {
		if binary.LittleEndian.Uint32(b[off+12:]) == recordMagic {
			return binary.LittleEndian.Uint64(b[off:])
		}
	}
	return 0
}
