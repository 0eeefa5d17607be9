package dispatch

import (
	"math"
	"testing"
)

// TestPendTable: ids in the ring and in the overflow (a slot taken by an
// older live call), lookups of ids never put (a worker's lies: 0, the
// largest id, an id sharing a live call's slot), deletion while iterating.
func TestPendTable(t *testing.T) {
	var tb pendTable
	mk := func(id uint64) *Pending { return &Pending{id: id} }
	ids := []uint64{1, 2, 3, 1 + pendRing, 1 + 2*pendRing, 40}
	for _, id := range ids {
		tb.put(mk(id))
	}
	if tb.len() != len(ids) {
		t.Fatalf("len %d, want %d", tb.len(), len(ids))
	}
	for _, id := range ids {
		if q := tb.get(id); q == nil || q.id != id {
			t.Errorf("get(%d) = %v", id, q)
		}
	}
	for _, id := range []uint64{0, math.MaxUint64, 1 + 3*pendRing, 4, pendRing} {
		if q := tb.get(id); q != nil {
			t.Errorf("get(%d) = call %d, want none", id, q.id)
		}
		tb.del(id) // a no-op
	}
	if tb.len() != len(ids) {
		t.Fatalf("len %d after deleting absent ids, want %d", tb.len(), len(ids))
	}
	tb.del(1) // frees the ring slot; 17 and 33 stay in the overflow
	if tb.get(1) != nil || tb.get(1+pendRing) == nil || tb.get(1+2*pendRing) == nil {
		t.Errorf("after del(1): get(1) %v, get(17) %v, get(33) %v", tb.get(1), tb.get(1+pendRing), tb.get(1+2*pendRing))
	}
	seen := map[uint64]bool{}
	for q := range tb.all {
		seen[q.id] = true
		tb.del(q.id)
	}
	if len(seen) != len(ids)-1 || tb.len() != 0 {
		t.Errorf("iterated %v, len after deleting all %d", seen, tb.len())
	}
	for q := range tb.all {
		t.Errorf("empty table yields %d", q.id)
	}
}
