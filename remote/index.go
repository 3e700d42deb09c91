package remote

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"slices"
)

// chunkIndex maps chunk hashes to where they are stored. It is held in
// memory by push, pull, check and prune, so it is compact: the index
// objects' entries are kept in one slice sorted by hash (52 bytes per
// chunk, the pack as a number into a table of pack ids) and searched
// binarily; only chunks added after loading (by a running push) live in a
// map.
type chunkIndex struct {
	sorted []sortedEntry
	// starts[p] is the first entry of sorted whose hash begins with the
	// two bytes p (starts[65536] = len(sorted)), so that a search looks
	// at a few entries instead of the whole array.
	starts  []uint32
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

// compareID orders hashes as bytes.Compare does, comparing the first 8
// bytes as one number first.
func compareID(a, b *ID) int {
	if c := cmp.Compare(binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(b[:8])); c != 0 {
		return c
	}
	return bytes.Compare(a[8:], b[8:])
}

// freeze sorts the loaded entries and drops repeated hashes. Of a hash
// loaded more than once, the entry in the pack loaded first wins (packs
// are numbered in load order), at its lowest offset.
func (x *chunkIndex) freeze() {
	slices.SortFunc(x.sorted, func(a, b sortedEntry) int {
		if c := compareID(&a.h, &b.h); c != 0 {
			return c
		}
		if c := cmp.Compare(a.l.pack, b.l.pack); c != 0 {
			return c
		}
		return cmp.Compare(a.l.offset, b.l.offset)
	})
	x.sorted = slices.CompactFunc(x.sorted, func(a, b sortedEntry) bool { return a.h == b.h })
	if cap(x.sorted) > len(x.sorted)+len(x.sorted)/32 {
		x.sorted = append([]sortedEntry(nil), x.sorted...) // give the growth slack back
	}
	x.starts = make([]uint32, 1<<16+1)
	i := 0
	for p := range 1 << 16 {
		x.starts[p] = uint32(i)
		for i < len(x.sorted) && int(x.sorted[i].h[0])<<8|int(x.sorted[i].h[1]) == p {
			i++
		}
	}
	x.starts[1<<16] = uint32(len(x.sorted))
	x.frozen = true
}

func (x *chunkIndex) find(h ID) (packedLoc, bool) {
	if p, ok := x.extra[h]; ok {
		return p, true
	}
	if !x.frozen {
		return packedLoc{}, false
	}
	p := int(h[0])<<8 | int(h[1])
	sub := x.sorted[x.starts[p]:x.starts[p+1]]
	i, ok := slices.BinarySearchFunc(sub, h, func(e sortedEntry, h ID) int { return compareID(&e.h, &h) })
	if !ok {
		return packedLoc{}, false
	}
	return sub[i].l, true
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
