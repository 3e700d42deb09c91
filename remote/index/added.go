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

// newAdded returns a set for up to n records. Its memory is allocated
// by the first put and grows with the records, up to what n records
// need: commands that add nothing (pull, check) pay nothing, and a
// night's push that adds a few hundred entries a few KiB, not the
// 8.5 MB of a full set.
func newAdded(n int) *added { return &added{n: n} }

// addedStart is the number of records the first put makes room for.
const addedStart = 1024

// grow makes room for more records: the records' capacity doubles (up
// to n) and the table stays at least twice the records' capacity, so it
// is never more than half full.
func (a *added) grow() {
	c := min(max(2*cap(a.recs), addedStart), max(a.n, 1))
	recs := make([]rec, len(a.recs), c)
	copy(recs, a.recs)
	a.recs = recs
	size := 16
	for size < 2*c {
		size *= 2
	}
	if size == len(a.slots) {
		return
	}
	a.slots, a.mask = make([]uint32, size), uint64(size-1)
	for i := range a.recs {
		a.slots[a.slot(&a.recs[i].h)] = uint32(i + 1)
	}
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
	if len(a.recs) == cap(a.recs) && (a.slots == nil || cap(a.recs) < a.n) {
		a.grow()
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
