package dispatch

// pendRing is the size of pendTable's ring: more than the calls in flight
// on a worker in the common cases (one; Config.Pipeline 8 plus the worker's
// concurrency), a power of two so that the modulo is a mask.
const pendRing = 16

// pendTable holds the calls awaiting answers, by request id. Ids are
// consecutive, so the live ones nearly always sit in a small ring indexed by
// id modulo its size, with no hashing; a call whose slot is taken by an
// older live one goes to an overflow map. Any id may be looked up, a
// worker's included: the index is reduced modulo the ring's size, and a slot
// answers only for the id it holds.
type pendTable struct {
	ring [pendRing]*Pending
	over map[uint64]*Pending
	n    int
}

func (t *pendTable) get(id uint64) *Pending {
	if q := t.ring[id%pendRing]; q != nil && q.id == id {
		return q
	}
	return t.over[id]
}

// put records p, whose id is not in the table.
func (t *pendTable) put(p *Pending) {
	t.n++
	if s := &t.ring[p.id%pendRing]; *s == nil {
		*s = p
		return
	}
	if t.over == nil {
		t.over = make(map[uint64]*Pending)
	}
	t.over[p.id] = p
}

// del removes id, if it is there.
func (t *pendTable) del(id uint64) {
	if s := &t.ring[id%pendRing]; *s != nil && (*s).id == id {
		*s = nil
		t.n--
		return
	}
	if _, ok := t.over[id]; ok {
		delete(t.over, id)
		t.n--
	}
}

func (t *pendTable) len() int { return t.n }

// all yields every call in the table, in no particular order. The loop's
// body may delete the call it is given.
func (t *pendTable) all(yield func(*Pending) bool) {
	if t.n == 0 {
		return
	}
	for _, q := range t.ring {
		if q != nil && !yield(q) {
			return
		}
	}
	for _, q := range t.over {
		if !yield(q) {
			return
		}
	}
}
