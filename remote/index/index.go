package index

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"slices"

	"github.com/klauspost/compress/zstd"

	"github.com/vmasync/vmasync/remote/pack"
)

type (
	// ID is a chunk's SHA-256 or a pack's or index object's name.
	ID = pack.ID
	// Location says where a chunk is stored.
	Location = pack.Location
)

// Format constants.
const (
	Magic = "VMASYNC-INDEX\x00\x00\x01"
	// EntrySize is the size of one encoded entry.
	EntrySize = 32 + 4 + 4 + 4 + 4 + 1
	// MaxObject bounds an index object, compressed and decoded: writers
	// write index objects of at most MaxEntries entries (about 7 MB);
	// garbage collections before 2026-12-03 wrote one object of every
	// entry, which this still reads up to about 1.3 million chunks (10 GiB
	// of data). A larger or hostile one is refused like a damaged one.
	MaxObject = 64 << 20
	// MaxEntries is how many entries writers put into one index object.
	MaxEntries = 1 << 17
)

// encoder compresses index objects. Entries are mostly hashes, which
// do not compress: a 1 MiB window finds what the level's default of
// 8 MiB would, and keeps the encoder's retained history (twice its
// window) from costing a push 16 MiB for as long as it runs.
var encoder, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(1<<20))

// Entry pairs a chunk hash with its location.
type Entry struct {
	Hash ID
	Location
}

// Encode serializes index entries, zstd-compressed:
//
//	magic(16) | pack count u32 | pack ids | entry count u32 |
//	entries (hash 32, pack number u32, offset u32, stored u32, raw u32, type u8)
func Encode(entries []Entry) []byte {
	packs := map[ID]uint32{}
	var order []ID
	for _, e := range entries {
		if _, ok := packs[e.Pack]; !ok {
			packs[e.Pack] = uint32(len(order))
			order = append(order, e.Pack)
		}
	}
	b := make([]byte, 0, 24+len(order)*32+len(entries)*EntrySize)
	b = append(b, Magic...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(order)))
	for _, id := range order {
		b = append(b, id[:]...)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(entries)))
	for _, e := range entries {
		b = append(b, e.Hash[:]...)
		b = binary.BigEndian.AppendUint32(b, packs[e.Pack])
		b = binary.BigEndian.AppendUint32(b, e.Offset)
		b = binary.BigEndian.AppendUint32(b, e.Stored)
		b = binary.BigEndian.AppendUint32(b, e.Raw)
		b = append(b, e.Type)
	}
	return encoder.EncodeAll(b, nil)
}

func Decode(data []byte, id ID) ([]Entry, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: index %s: %s", pack.ErrCorrupt, id.Short(), fmt.Sprintf(format, args...))
	}
	if sha256.Sum256(data) != id {
		return nil, bad("content does not match its name (SHA-256)")
	}
	// Bound what decoding allocates by what the format allows, whatever
	// the frame claims.
	var fh zstd.Header
	if err := fh.Decode(data); err != nil {
		return nil, bad("%v", err)
	}
	if fh.HasFCS && fh.FrameContentSize > MaxObject {
		return nil, bad("declares %d decoded bytes, more than the %d an index object may have", fh.FrameContentSize, MaxObject)
	}
	// Streamed, so that a frame without a declared size costs at most
	// the bound too, not what it inflates to.
	dec, err := zstd.NewReader(bytes.NewReader(data), zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(MaxObject), zstd.WithDecoderLowmem(true))
	if err != nil {
		return nil, bad("%v", err)
	}
	defer dec.Close()
	hint := 0
	if fh.HasFCS {
		hint = int(fh.FrameContentSize)
	}
	b, err := readBounded(dec, hint, MaxObject)
	if err != nil {
		return nil, bad("%v", err)
	}
	if len(b) > MaxObject {
		return nil, bad("decodes to more than the %d bytes an index object may have", MaxObject)
	}
	if len(b) < len(Magic)+8 || string(b[:len(Magic)]) != Magic {
		return nil, bad("no index magic")
	}
	b = b[len(Magic):]
	np := int(binary.BigEndian.Uint32(b))
	b = b[4:]
	if np > len(b)/32 {
		return nil, bad("%d packs in %d bytes", np, len(b))
	}
	packs := make([]ID, np)
	for i := range packs {
		copy(packs[i][:], b[:32])
		b = b[32:]
	}
	if len(b) < 4 {
		return nil, bad("truncated")
	}
	ne := int(binary.BigEndian.Uint32(b))
	b = b[4:]
	if len(b) != ne*EntrySize {
		return nil, bad("%d entries in %d bytes", ne, len(b))
	}
	out := make([]Entry, ne)
	for i := range out {
		e := &out[i]
		copy(e.Hash[:], b[:32])
		p := binary.BigEndian.Uint32(b[32:])
		if int(p) >= np {
			return nil, bad("entry %d: pack number %d of %d", i, p, np)
		}
		e.Pack = packs[p]
		e.Offset = binary.BigEndian.Uint32(b[36:])
		e.Stored = binary.BigEndian.Uint32(b[40:])
		e.Raw = binary.BigEndian.Uint32(b[44:])
		e.Type = b[48]
		if e.Type > pack.BlobZstd {
			return nil, bad("entry %d: blob type %d", i, e.Type)
		}
		b = b[EntrySize:]
	}
	return out, nil
}

// Index maps chunk hashes to where they are stored. It is held in
// memory by push, pull, check and prune, so it is compact: the index
// objects' entries are kept in one slice sorted by hash (52 bytes per
// chunk, the pack as a number into a table of pack ids) and searched
// binarily; only chunks added after loading (by a running push) live in a
// map.
type Index struct {
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

// New returns an empty index.
func New() *Index {
	return &Index{extra: map[ID]packedLoc{}, packNum: map[ID]uint32{}}
}

func (x *Index) pack(l Location) packedLoc {
	n, ok := x.packNum[l.Pack]
	if !ok {
		n = uint32(len(x.packs))
		x.packs = append(x.packs, l.Pack)
		x.packNum[l.Pack] = n
	}
	return packedLoc{pack: n, offset: l.Offset, stored: l.Stored, raw: l.Raw, typ: l.Type}
}

func (x *Index) unpack(p packedLoc) Location {
	return Location{Pack: x.packs[p.pack], Offset: p.offset, Stored: p.stored, Raw: p.raw, Type: p.typ}
}

// Load appends an entry while the index is being loaded (before freeze);
// for a hash loaded twice the first entry wins.
func (x *Index) Load(h ID, l Location) {
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

// Freeze sorts the loaded entries and drops repeated hashes. Of a hash
// loaded more than once, the entry in the pack loaded first wins (packs
// are numbered in load order), at its lowest offset.
func (x *Index) Freeze() {
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

func (x *Index) find(h ID) (packedLoc, bool) {
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

// Get returns the location of chunk h.
func (x *Index) Get(h ID) (Location, bool) {
	p, ok := x.find(h)
	if !ok {
		return Location{}, false
	}
	return x.unpack(p), true
}

// Add records l for h unless h is already indexed.
func (x *Index) Add(h ID, l Location) {
	if !x.frozen {
		x.Freeze()
	}
	if _, ok := x.find(h); ok {
		return
	}
	x.extra[h] = x.pack(l)
}

// Len is the number of chunks indexed.
func (x *Index) Len() int { return len(x.sorted) + len(x.extra) }

// Each calls fn for every chunk.
func (x *Index) Each(fn func(h ID, l Location)) {
	for _, e := range x.sorted {
		fn(e.h, x.unpack(e.l))
	}
	for h, p := range x.extra {
		fn(h, x.unpack(p))
	}
}

// Has reports whether chunk h is indexed.
func (x *Index) Has(h ID) bool {
	_, ok := x.find(h)
	return ok
}

// Compare orders IDs as bytes.Compare does (quickly).
func Compare(a, b *ID) int { return compareID(a, b) }

// Pos returns the position of chunk h among the entries loaded before
// Freeze (chunks added after it have none): with Marks, a set of chunks
// at one bit each.
func (x *Index) Pos(h ID) (int, bool) {
	if !x.frozen {
		return 0, false
	}
	p := int(h[0])<<8 | int(h[1])
	lo, hi := int(x.starts[p]), int(x.starts[p+1])
	i, ok := slices.BinarySearchFunc(x.sorted[lo:hi], h, func(e sortedEntry, h ID) int { return compareID(&e.h, &h) })
	return lo + i, ok
}

// Positions is the number of positions (entries loaded before Freeze).
func (x *Index) Positions() int { return len(x.sorted) }

// At returns the chunk at position i and its location.
func (x *Index) At(i int) (ID, Location) {
	e := x.sorted[i]
	return e.h, x.unpack(e.l)
}

// EachPos calls fn for every position with its chunk, in position
// (hash) order: the same walk as DiskIndex.EachPos, so that garbage
// collection can be written once for both.
func (x *Index) EachPos(fn func(pos int, h ID, l Location)) error {
	for i, e := range x.sorted {
		fn(i, e.h, x.unpack(e.l))
	}
	return nil
}

// Marks is a set of positions of an Index, one bit each: garbage
// collection marks the chunks in use in it, at 1/8 byte a chunk instead of
// a map's hundred.
type Marks []uint64

// NewMarks returns an empty set for n positions.
func NewMarks(n int) Marks { return make(Marks, (n+63)/64) }

// Set marks position i.
func (m Marks) Set(i int) { m[i/64] |= 1 << (i % 64) }

// Has reports whether position i is marked.
func (m Marks) Has(i int) bool { return m[i/64]&(1<<(i%64)) != 0 }

// readBounded reads r to its end into one buffer, of hint bytes at once
// when the frame declares its size, else doubling from 64 KiB (all it
// allocates stays under twice what it returns; io.ReadAll's gentler
// growth allocated five times as much). It stops at limit+1 bytes, so
// that the caller sees that r holds more than limit.
func readBounded(r io.Reader, hint, limit int) ([]byte, error) {
	buf := make([]byte, 0, min(max(hint, 64<<10), limit)+1)
	for {
		if len(buf) == cap(buf) {
			if len(buf) > limit {
				return buf, nil
			}
			nb := make([]byte, len(buf), min(2*cap(buf), limit+1))
			copy(nb, buf)
			buf = nb
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}
