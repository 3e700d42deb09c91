package remote

import (
	"bytes"
	"slices"
)

// chunkIndex maps chunk hashes to where they are stored. It is held in
// memory by push, pull, check and prune, so it is compact: the index
// objects' entries are kept in one slice sorted by hash (52 bytes per
// chunk, the pack as a number into a table of pack ids) and searched
// binarily; only chunks added after loading (by a running push) live in a
// map.
type chunkIndex struct {
	sorted  []sortedEntry
	extra   map[ID]packedLoc
	packs   []ID
	packNum map[ID]uint32
	frozen  bool
}

type sortedEntry struct {
	h ID
	l packedLoc
}

// packedLoc is Location with the pack as a number (20 bytes).
type packedLoc struct {
	pack, offset, stored, raw uint32
	typ                       uint8
}

func newChunkIndex() *chunkIndex {
	return &chunkIndex{extra: map[ID]packedLoc{}, packNum: map[ID]uint32{}}
}

func (x *chunkIndex) pack(l Location) packedLoc {
	n, ok := x.packNum[l.Pack]
	if !ok {
		n = uint32(len(x.packs))
		x.packs = append(x.packs, l.Pack)
		x.packNum[l.Pack] = n
	}
	return packedLoc{pack: n, offset: l.Offset, stored: l.Stored, raw: l.Raw, typ: l.Type}
}

func (x *chunkIndex) unpack(p packedLoc) Location {
	return Location{Pack: x.packs[p.pack], Offset: p.offset, Stored: p.stored, Raw: p.raw, Type: p.typ}
}

// load appends an entry while the index is being loaded (before freeze);
// for a hash loaded twice the first entry wins.
func (x *chunkIndex) load(h ID, l Location) {
	x.sorted = append(x.sorted, sortedEntry{h, x.pack(l)})
}

// freeze sorts the loaded entries, dropping repeated hashes.
func (x *chunkIndex) freeze() {
	slices.SortStableFunc(x.sorted, func(a, b sortedEntry) int { return bytes.Compare(a.h[:], b.h[:]) })
	x.sorted = slices.CompactFunc(x.sorted, func(a, b sortedEntry) bool { return a.h == b.h })
	if cap(x.sorted) > len(x.sorted)+len(x.sorted)/32 {
		x.sorted = append([]sortedEntry(nil), x.sorted...) // give the growth slack back
	}
	x.frozen = true
}

func (x *chunkIndex) find(h ID) (packedLoc, bool) {
	if p, ok := x.extra[h]; ok {
		return p, true
	}
	i, ok := slices.BinarySearchFunc(x.sorted, h, func(e sortedEntry, h ID) int { return bytes.Compare(e.h[:], h[:]) })
	if !ok {
		return packedLoc{}, false
	}
	return x.sorted[i].l, true
}

// get returns the location of chunk h.
func (x *chunkIndex) get(h ID) (Location, bool) {
	p, ok := x.find(h)
	if !ok {
		return Location{}, false
	}
	return x.unpack(p), true
}

// add records l for h unless h is already indexed.
func (x *chunkIndex) add(h ID, l Location) {
	if !x.frozen {
		x.freeze()
	}
	if _, ok := x.find(h); ok {
		return
	}
	x.extra[h] = x.pack(l)
}

// len is the number of chunks indexed.
func (x *chunkIndex) len() int { return len(x.sorted) + len(x.extra) }

// each calls fn for every chunk.
func (x *chunkIndex) each(fn func(h ID, l Location)) {
	for _, e := range x.sorted {
		fn(e.h, x.unpack(e.l))
	}
	for h, p := range x.extra {
		fn(h, x.unpack(p))
	}
}
