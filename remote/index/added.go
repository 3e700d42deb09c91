package index

import "encoding/binary"

// added holds the entries a push adds until they are flushed to a
// temporary run: the records in arrival order and an open-addressing
// table of their positions, keyed by the hash (SHA-256, uniform already).
// 52 bytes a record and 8 bytes of table a record: a third of a Go map
// of the same entries, and the records are sorted for the flush in place.
type added struct {
	recs  []rec
	slots []uint32 // position+1 of a record, 0 for an empty slot
	mask  uint64
	n     int // capacity the set is made for
}

// newAdded returns a set for up to n records; its memory is allocated
// by the first put, so that commands that add nothing (pull, check) do
// not pay for it.
func newAdded(n int) *added { return &added{n: n} }

// alloc makes the records and the table for a.n records.
func (a *added) alloc() {
	size := 16
	for size < 2*a.n {
		size *= 2
	}
	a.recs, a.slots, a.mask = make([]rec, 0, a.n), make([]uint32, size), uint64(size-1)
}

func (a *added) len() int { return len(a.recs) }

// slot returns the table slot that holds h or the empty one where it
// goes.
func (a *added) slot(h *ID) uint64 {
	i := binary.LittleEndian.Uint64(h[:8]) & a.mask
	for {
		s := a.slots[i]
		if s == 0 || a.recs[s-1].h == *h {
			return i
		}
		i = (i + 1) & a.mask
	}
}

func (a *added) get(h *ID) (packedLoc, bool) {
	if a.slots == nil {
		return packedLoc{}, false
	}
	s := a.slots[a.slot(h)]
	if s == 0 {
		return packedLoc{}, false
	}
	r := &a.recs[s-1]
	return packedLoc{pack: r.pack, offset: r.offset, stored: r.stored, raw: r.raw, typ: r.typ}, true
}

// put records r; the set must hold fewer than the n it was made for
// (the table then stays at most half full).
func (a *added) put(r rec) {
	if a.slots == nil {
		a.alloc()
	}
	i := a.slot(&r.h)
	if a.slots[i] != 0 {
		a.recs[a.slots[i]-1] = r
		return
	}
	a.recs = append(a.recs, r)
	a.slots[i] = uint32(len(a.recs))
}

// copyRecs returns a copy of the records.
func (a *added) copyRecs() []rec { return append([]rec(nil), a.recs...) }

// take returns the records, which the caller may reorder, and empties
// the set; the records' memory is reused once the caller is done.
func (a *added) take() []rec {
	recs := a.recs
	clear(a.slots)
	a.recs = recs[:0]
	return recs
}
