package crashy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/bulkhead-go/bulkhead/examples/crashy/native"
)

// A journal is one worker process's own file of fixed-size records, opened
// with O_APPEND and written one record per write(2), so that a record is
// either wholly there or not at all, whatever kills the process: the page
// cache outlives it. One file per process, named by pid and a random
// suffix, because pids are reused in a long run.
//
// Record layout, RecordSize bytes, little-endian:
//
//	0  2  magic "CJ"
//	2  1  kind: 'C' call started, 'I' idle fault, 'B' start-up fault
//	3  1  fault: 0 none, 1 segv, 2 abort, 3 exit, 4 hang
//	4  4  pid of the worker
//	8  8  call id ('C' only; 0 otherwise)
const RecordSize = 16

// JournalSuffix ends every journal file's name.
const JournalSuffix = ".journal"

// maxJournalBytes bounds one journal file read back: 64 Mi records.
const maxJournalBytes = 1 << 30

var recordMagic = [2]byte{'C', 'J'}

// Kind says what a record is about.
type Kind byte

const (
	KindCall    Kind = 'C' // a call started; Fault is what it is about to do
	KindIdle    Kind = 'I' // an idle fault is about to strike
	KindStartup Kind = 'B' // a start-up fault is about to strike
)

// Record is one journal entry.
type Record struct {
	Kind  Kind
	Fault native.Fault
	PID   int
	ID    uint64
}

var faultCodes = []native.Fault{native.FaultNone, native.FaultSegv, native.FaultAbort, native.FaultExit, native.FaultHang}

// ErrJournal is wrapped by every error about a journal's content.
var ErrJournal = errors.New("crashy: bad journal")

// Journal is an open journal file. A nil *Journal records nothing.
type Journal struct {
	f   *os.File
	pid int
}

// CreateJournal creates a new journal file for this process in dir.
func CreateJournal(dir string) (*Journal, error) {
	pid := os.Getpid()
	name := filepath.Join(dir, fmt.Sprintf("%d-%016x%s", pid, rand.Uint64(), JournalSuffix))
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("crashy: creating journal: %w", err)
	}
	return &Journal{f: f, pid: pid}, nil
}

// Append writes r, with this process's pid, in one write(2).
func (j *Journal) Append(r Record) error {
	if j == nil {
		return nil
	}
	r.PID = j.pid
	b, err := r.encode()
	if err != nil {
		return err
	}
	if _, err := j.f.Write(b[:]); err != nil {
		return fmt.Errorf("crashy: journal: %w", err)
	}
	return nil
}

// Close closes the file.
func (j *Journal) Close() error {
	if j == nil {
		return nil
	}
	return j.f.Close()
}

func (r Record) encode() ([RecordSize]byte, error) {
	var b [RecordSize]byte
	code := slices.Index(faultCodes, r.Fault)
	if code < 0 || !r.Kind.known() || r.PID < 0 || r.PID > 1<<32-1 {
		return b, fmt.Errorf("%w: cannot encode %+v", ErrJournal, r)
	}
	copy(b[0:2], recordMagic[:])
	b[2] = byte(r.Kind)
	b[3] = byte(code)
	binary.LittleEndian.PutUint32(b[4:], uint32(r.PID))
	binary.LittleEndian.PutUint64(b[8:], r.ID)
	return b, nil
}

func (k Kind) known() bool { return k == KindCall || k == KindIdle || k == KindStartup }

// DecodeJournal decodes one journal file's content. It fails on a torn or
// malformed record, on a call record without an id or another record with
// one, and on records from more than one pid.
func DecodeJournal(b []byte) ([]Record, error) {
	if len(b)%RecordSize != 0 {
		return nil, fmt.Errorf("%w: %d bytes is not a whole number of %d-byte records", ErrJournal, len(b), RecordSize)
	}
	out := make([]Record, 0, len(b)/RecordSize)
	for off := 0; off < len(b); off += RecordSize {
		p := b[off : off+RecordSize]
		if p[0] != recordMagic[0] || p[1] != recordMagic[1] {
			return nil, fmt.Errorf("%w: record at offset %d has no magic", ErrJournal, off)
		}
		r := Record{Kind: Kind(p[2]), PID: int(binary.LittleEndian.Uint32(p[4:])), ID: binary.LittleEndian.Uint64(p[8:])}
		if !r.Kind.known() {
			return nil, fmt.Errorf("%w: record at offset %d has unknown kind %#x", ErrJournal, off, p[2])
		}
		if int(p[3]) >= len(faultCodes) {
			return nil, fmt.Errorf("%w: record at offset %d has unknown fault %d", ErrJournal, off, p[3])
		}
		r.Fault = faultCodes[p[3]]
		if (r.Kind == KindCall) != (r.ID != 0) {
			return nil, fmt.Errorf("%w: %c record at offset %d has call id %d", ErrJournal, r.Kind, off, r.ID)
		}
		if r.Kind != KindCall && (r.Fault == native.FaultNone || r.Fault == native.FaultHang) {
			return nil, fmt.Errorf("%w: %c record at offset %d has fault %v", ErrJournal, r.Kind, off, r.Fault)
		}
		if len(out) > 0 && out[0].PID != r.PID {
			return nil, fmt.Errorf("%w: record at offset %d is from pid %d, the first from %d", ErrJournal, off, r.PID, out[0].PID)
		}
		out = append(out, r)
	}
	return out, nil
}

// ReadJournals decodes every journal file in dir: one slice of records per
// worker process that got as far as creating its journal.
func ReadJournals(dir string) ([][]Record, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("crashy: reading journals: %w", err)
	}
	var out [][]Record
	for _, e := range ents {
		if !e.Type().IsRegular() || !strings.HasSuffix(e.Name(), JournalSuffix) {
			continue
		}
		name := filepath.Join(dir, e.Name())
		b, err := readBounded(name, maxJournalBytes)
		if err != nil {
			return nil, err
		}
		recs, err := DecodeJournal(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out = append(out, recs)
	}
	return out, nil
}

func readBounded(name string, limit int64) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("crashy: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("crashy: %w", err)
	}
	if st.Size() > limit {
		return nil, fmt.Errorf("%w: %s is %d bytes, over the %d limit", ErrJournal, name, st.Size(), limit)
	}
	b := make([]byte, st.Size())
	if _, err := f.ReadAt(b, 0); err != nil && st.Size() > 0 {
		return nil, fmt.Errorf("crashy: %w", err)
	}
	return b, nil
}

// LastFault returns the last fault a process's journal says it triggered,
// which is what ended it if anything did, or FaultNone.
func LastFault(recs []Record) native.Fault {
	for i := len(recs) - 1; i >= 0; i-- {
		if recs[i].Fault != native.FaultNone {
			return recs[i].Fault
		}
	}
	return native.FaultNone
}
