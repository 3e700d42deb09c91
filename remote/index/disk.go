package index

import (
	"errors"
	"fmt"
	"math"
	"os"
	"sort"
	"sync"
)

// DiskIndex maps chunk hashes to locations from a local cache of sorted
// runs (see the package comment). Its lookups are safe for
// concurrent use; Each and EachPos must not run concurrently with Add.
type DiskIndex struct {
	mu      sync.Mutex
	dir     string
	runs    []*run // cached runs, in priority order
	temps   []*run // added entries written out, deleted at Close
	base    []int64
	npos    int64
	packs   []ID
	packNum map[ID]uint32
	// limit is, per pack number, the largest offset+stored a usable
	// record may have: -1 for a pack that is not listed.
	limit   []int64
	overlay *added // entries added since the last flush
	added   int
	flushAt int
	baseLen int64 // usable distinct hashes in runs, -1 if not counted
	err     error
	buf     []byte
}

const noLimit = math.MaxInt64

func (x *DiskIndex) packNumber(id ID) uint32 {
	n, ok := x.packNum[id]
	if !ok {
		n = uint32(len(x.packs))
		x.packs = append(x.packs, id)
		x.packNum[id] = n
		x.limit = append(x.limit, noLimit)
	}
	return n
}

// find returns the usable location of h: from the cached runs (with its
// position), else the added entries (position -1).
func (x *DiskIndex) find(h *ID, cachedOnly bool) (packedLoc, int64, bool) {
	for i, r := range x.runs {
		if p, pos, ok := x.searchRun(r, h); ok {
			return p, x.base[i] + pos, true
		}
	}
	if cachedOnly {
		return packedLoc{}, -1, false
	}
	if p, ok := x.overlay.get(h); ok {
		return p, -1, true
	}
	for _, r := range x.temps {
		if !r.bloom.mayHave(h) {
			continue // a push's flushes pile up: most are not read at all
		}
		if p, _, ok := x.searchRun(r, h); ok {
			return p, -1, true
		}
	}
	return packedLoc{}, -1, false
}

func (x *DiskIndex) searchRun(r *run, h *ID) (packedLoc, int64, bool) {
	if r.ra == nil {
		return packedLoc{}, 0, false
	}
	recs, pos, buf, err := r.search(h, x.buf)
	x.buf = buf
	if err != nil {
		x.fail(r, err)
		return packedLoc{}, 0, false
	}
	var rc rec
	for i := 0; i < len(recs); i += EntrySize {
		rc.get(recs[i:])
		p := packedLoc{pack: r.global[rc.pack], offset: rc.offset, stored: rc.stored, raw: rc.raw, typ: rc.typ}
		if x.usable(&p) {
			return p, pos + int64(i/EntrySize), true
		}
	}
	return packedLoc{}, 0, false
}

func (x *DiskIndex) usable(p *packedLoc) bool {
	return int64(p.offset)+int64(p.stored) <= x.limit[p.pack]
}

// fail records the first error; a damaged run is deleted so that the next
// open builds it again.
func (x *DiskIndex) fail(r *run, err error) {
	if x.err == nil {
		x.err = err
	}
	if errors.Is(err, errDamaged) && r != nil {
		os.Remove(r.path)
	}
}

// Err returns the first error met while reading the cache after it was
// opened (a block that failed its checksum, a read error). Lookups after
// it may have reported chunks as missing that are not.
func (x *DiskIndex) Err() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.err
}

func (x *DiskIndex) unpack(p packedLoc) Location {
	return Location{Pack: x.packs[p.pack], Offset: p.offset, Stored: p.stored, Raw: p.raw, Type: p.typ}
}

// Get returns the location of chunk h.
func (x *DiskIndex) Get(h ID) (Location, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	p, _, ok := x.find(&h, false)
	if !ok {
		return Location{}, false
	}
	return x.unpack(p), true
}

// Has reports whether chunk h is indexed.
func (x *DiskIndex) Has(h ID) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	_, _, ok := x.find(&h, false)
	return ok
}

// Add records l for h unless h is already indexed.
func (x *DiskIndex) Add(h ID, l Location) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if _, _, ok := x.find(&h, false); ok {
		return
	}
	x.overlay.put(rec{h: h, pack: x.packNumber(l.Pack), offset: l.Offset, stored: l.Stored, raw: l.Raw, typ: l.Type})
	x.added++
	if x.overlay.len() >= x.flushAt {
		x.flush()
	}
}

// flush writes the added entries to a temporary run. If that fails the
// entries are dropped and the index fails (Err): later lookups may miss
// them, which costs a push an upload again, never a wrong answer.
func (x *DiskIndex) flush() {
	r, err := x.tempRun(x.overlay.take())
	if err != nil {
		x.fail(nil, err)
		return
	}
	x.temps = append(x.temps, r)
}

// tempRun writes records (with global pack numbers) as a temporary run,
// deleted at Close, and opens it.
func (x *DiskIndex) tempRun(recs []rec) (*run, error) {
	local := map[uint32]uint32{}
	var packs []ID
	for i := range recs {
		g := recs[i].pack
		n, ok := local[g]
		if !ok {
			n = uint32(len(packs))
			local[g] = n
			packs = append(packs, x.packs[g])
		}
		recs[i].pack = n
	}
	sortRecs(recs)
	w, err := newRunWriter(x.dir, len(recs))
	if err != nil {
		return nil, err
	}
	for i := range recs {
		w.add(&recs[i])
	}
	r, err := w.finish(packs, nil, true)
	if err != nil {
		w.abort()
		return nil, err
	}
	r.temporary = true
	r.bloom = newBloom(len(recs))
	for i := range recs {
		r.bloom.add(&recs[i].h)
	}
	r.global = make([]uint32, len(r.packs))
	for i, p := range r.packs {
		r.global[i] = x.packNum[p.ID]
	}
	return r, nil
}

// LoadExtra adds entries that are in no index object but have positions
// like the cached ones, after them (below them in priority): the packs
// LoadIndex read back from their headers, which garbage collection must
// mark like every other chunk. They are written to a temporary run, not
// kept in the cache. Call it before Add and before positions are used.
func (x *DiskIndex) LoadExtra(entries []Entry) error {
	if len(entries) == 0 {
		return nil
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	recs := make([]rec, len(entries))
	for i, e := range entries {
		recs[i] = rec{h: e.Hash, pack: x.packNumber(e.Pack), offset: e.Offset, stored: e.Stored, raw: e.Raw, typ: e.Type}
	}
	r, err := x.tempRun(recs)
	if err != nil {
		return err
	}
	x.runs = append(x.runs, r)
	x.base = append(x.base, x.npos)
	x.npos += r.n
	x.baseLen = -1
	return nil
}

// Pos returns the position of chunk h (see Positions).
func (x *DiskIndex) Pos(h ID) (int, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	_, pos, ok := x.find(&h, true)
	return int(pos), ok
}

// At returns the record at position i (one pread; for a few positions,
// not for all of them: see EachPos). A record that is not usable (its
// pack missing or short, or another copy of the chunk winning) is
// returned as it is stored.
func (x *DiskIndex) At(i int) (ID, Location, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if i < 0 || int64(i) >= x.npos {
		return ID{}, Location{}, fmt.Errorf("index cache: position %d of %d", i, x.npos)
	}
	ri := sort.Search(len(x.runs), func(j int) bool { return x.base[j] > int64(i) }) - 1
	r := x.runs[ri]
	k := int64(i) - x.base[ri]
	b := int(k / BlockRecords)
	buf, err := r.readBlocks(b, b+1, x.buf)
	if err != nil {
		x.fail(r, err)
		return ID{}, Location{}, err
	}
	x.buf = buf
	var rc rec
	rc.get(buf[(k%BlockRecords)*EntrySize:])
	p := packedLoc{pack: r.global[rc.pack], offset: rc.offset, stored: rc.stored, raw: rc.raw, typ: rc.typ}
	return rc.h, x.unpack(p), nil
}

// Runs is the number of cached runs (a lookup of a missing chunk reads
// one block of each).
func (x *DiskIndex) Runs() int { return len(x.runs) }

// Close closes the runs and deletes the temporary runs of added entries.
func (x *DiskIndex) Close() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, r := range x.runs {
		r.close()
		if r.temporary {
			os.Remove(r.path)
		}
	}
	for _, r := range x.temps {
		r.close()
		os.Remove(r.path)
	}
	x.temps = nil
	return nil
}
