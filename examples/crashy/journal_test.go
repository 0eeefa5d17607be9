package crashy_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/bulkhead-go/bulkhead/examples/crashy"
	"github.com/bulkhead-go/bulkhead/examples/crashy/native"
)

func TestJournalRoundTrip(t *testing.T) {
	dir := t.TempDir()
	j, err := crashy.CreateJournal(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []crashy.Record{
		{Kind: crashy.KindCall, ID: 1},
		{Kind: crashy.KindCall, ID: 1 << 60, Fault: native.FaultHang},
		{Kind: crashy.KindIdle, Fault: native.FaultAbort},
		{Kind: crashy.KindStartup, Fault: native.FaultExit},
	}
	for _, r := range want {
		if err := j.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	// A second journal of the same process is a second file.
	j2, err := crashy.CreateJournal(dir)
	if err != nil {
		t.Fatal(err)
	}
	j2.Close()
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not a journal"), 0o600); err != nil {
		t.Fatal(err)
	}
	js, err := crashy.ReadJournals(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(js) != 2 {
		t.Fatalf("%d journals, want 2", len(js))
	}
	got := js[0]
	if len(got) == 0 {
		got = js[1]
	}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		want[i].PID = os.Getpid()
		if got[i] != want[i] {
			t.Errorf("record %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
	if f := crashy.LastFault(got); f != native.FaultExit {
		t.Errorf("LastFault = %v, want exit", f)
	}
	if f := crashy.LastFault(got[:1]); f != native.FaultNone {
		t.Errorf("LastFault of a clean call = %v, want none", f)
	}
	var nilJournal *crashy.Journal
	if err := nilJournal.Append(want[0]); err != nil {
		t.Errorf("nil journal: %v", err)
	}
}

func TestJournalAppendRefusesBadRecord(t *testing.T) {
	j, err := crashy.CreateJournal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	for _, r := range []crashy.Record{{Kind: 'X', ID: 1}, {Kind: crashy.KindCall, ID: 1, Fault: "melt"}} {
		if err := j.Append(r); !errors.Is(err, crashy.ErrJournal) {
			t.Errorf("Append(%+v) = %v, want ErrJournal", r, err)
		}
	}
}

// record builds one raw record.
func record(kind byte, fault byte, pid uint32, id uint64) []byte {
	b := []byte{'C', 'J', kind, fault, byte(pid), byte(pid >> 8), byte(pid >> 16), byte(pid >> 24)}
	for i := range 8 {
		b = append(b, byte(id>>(8*i)))
	}
	return b
}

func TestDecodeJournalRejects(t *testing.T) {
	good := record('C', 0, 42, 9)
	tests := []struct {
		name string
		b    []byte
	}{
		{"torn", good[:10]},
		{"torn second", append(append([]byte{}, good...), good[:15]...)},
		{"no magic", append([]byte("XJ"), good[2:]...)},
		{"unknown kind", record('Z', 0, 42, 9)},
		{"unknown fault", record('C', 5, 42, 9)},
		{"call without id", record('C', 1, 42, 0)},
		{"idle with id", record('I', 1, 42, 9)},
		{"idle without fault", record('I', 0, 42, 0)},
		{"startup hang", record('B', 4, 42, 0)},
		{"two pids", append(record('C', 0, 42, 9), record('C', 0, 43, 10)...)},
	}
	for _, tt := range tests {
		if _, err := crashy.DecodeJournal(tt.b); !errors.Is(err, crashy.ErrJournal) {
			t.Errorf("%s: got %v, want ErrJournal", tt.name, err)
		}
	}
	if recs, err := crashy.DecodeJournal(nil); err != nil || len(recs) != 0 {
		t.Errorf("empty journal: %v, %v", recs, err)
	}
}

// FuzzDecodeJournal: no input panics the decoder; what it accepts is whole
// records that encode back to the same bytes.
func FuzzDecodeJournal(f *testing.F) {
	f.Add(record('C', 0, 42, 9))
	f.Add(append(record('C', 4, 7, 1), record('I', 2, 7, 0)...))
	f.Add(record('B', 3, 1, 0))
	f.Add([]byte("CJ"))
	f.Fuzz(func(t *testing.T, b []byte) {
		recs, err := crashy.DecodeJournal(b)
		if err != nil {
			if !errors.Is(err, crashy.ErrJournal) {
				t.Fatalf("error %v does not wrap ErrJournal", err)
			}
			return
		}
		if len(recs)*crashy.RecordSize != len(b) {
			t.Fatalf("%d records from %d bytes", len(recs), len(b))
		}
		// Re-encode and compare the bytes.
		var out []byte
		for _, r := range recs {
			if r.ID == 0 && r.Kind == crashy.KindCall {
				t.Fatalf("accepted a call record without id: %+v", r)
			}
			codes := map[native.Fault]byte{native.FaultNone: 0, native.FaultSegv: 1, native.FaultAbort: 2, native.FaultExit: 3, native.FaultHang: 4}
			out = append(out, record(byte(r.Kind), codes[r.Fault], uint32(r.PID), r.ID)...)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("decoded %v from %x, which encodes to %x", recs, b, out)
		}
	})
}
