package index

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// ErrSkip, returned (wrapped) by DiskOptions.Read, leaves an index object
// out of the cache without failing: it is read again at the next open
// (LoadIndex sets damaged objects aside and reports them each time).
var ErrSkip = errors.New("index object left out")

// DiskOptions configures OpenDisk.
type DiskOptions struct {
	// Dir holds the caches; the repository's is Dir/RepoID.
	Dir, RepoID string
	// Sources are the names of the repository's index objects.
	Sources []string
	// Read returns the entries of one index object (called only for the
	// objects that no cached run covers, in sorted order).
	Read func(name string) ([]Entry, error)
	// SortRecords is how many records the external sort holds in memory
	// (52 bytes each; default 1<<18: 13 MiB, with the decoding of one
	// index object and the garbage collector's headroom about 120 MiB of
	// RSS while building, measured with 10 M entries). MaxRuns is how many runs may stay
	// separate (default 4). FlushAt is how many added entries are kept in
	// memory before they are written to a temporary run (default 1<<17:
	// about 9 MiB of map, and 7 MiB more while a flush sorts them).
	SortRecords, MaxRuns, FlushAt int
	// Verify checks every block of the cached runs when opening (a run
	// that fails is built again), not only each block as it is read.
	Verify bool
}

// DiskStats says what OpenDisk did.
type DiskStats struct {
	// Reused runs were valid and used; Built were written from index
	// objects; Merged were merged into one; Damaged failed their checks
	// and were deleted; Stale named an index object that is gone.
	Reused, Built, Merged, Damaged, Stale int
	// Read is how many index objects were read, Skipped how many of them
	// Read left out.
	Read, Skipped int
}

// DiskIndex maps chunk hashes to locations from a local cache of sorted
// runs (see the package comment above). Its lookups are safe for
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

// OpenDisk opens the index cache of a repository for the given index
// objects, building what is missing from them.
func OpenDisk(o DiskOptions) (*DiskIndex, DiskStats, error) {
	var st DiskStats
	if o.RepoID == "" || strings.ContainsAny(o.RepoID, `/\`) || o.RepoID == "." || o.RepoID == ".." {
		return nil, st, fmt.Errorf("index cache: bad repository id %q", o.RepoID)
	}
	if o.Dir == "" {
		return nil, st, errors.New("index cache: no directory")
	}
	if o.SortRecords <= 0 {
		o.SortRecords = 1 << 18
	}
	if o.MaxRuns <= 0 {
		o.MaxRuns = 4
	}
	if o.FlushAt <= 0 {
		o.FlushAt = 1 << 17
	}
	dir := filepath.Join(o.Dir, o.RepoID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, st, err
	}
	want := map[string]bool{}
	for _, s := range o.Sources {
		want[s] = true
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, st, err
	}
	var cands []*run
	closeAll := func() {
		for _, r := range cands {
			r.close()
		}
	}
	for _, e := range ents {
		name := e.Name()
		p := filepath.Join(dir, name)
		if strings.HasPrefix(name, tmpPrefix) {
			// Another process's build or added entries; left for a day.
			if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > 24*time.Hour {
				os.Remove(p)
			}
			continue
		}
		if !strings.HasSuffix(name, runSuffix) {
			continue
		}
		r, err := openRun(p)
		if errors.Is(err, os.ErrNotExist) {
			continue // merged away by another process meanwhile
		}
		if err == nil && o.Verify {
			if err = r.verify(); err != nil {
				r.close()
			}
		}
		if err != nil {
			st.Damaged++
			os.Remove(p)
			continue
		}
		stale := len(r.sources) == 0
		for _, s := range r.sources {
			if !want[s] {
				stale = true
				break
			}
		}
		if stale {
			st.Stale++
			r.close()
			os.Remove(p)
			continue
		}
		cands = append(cands, r)
	}
	// Runs whose objects overlap another's (two processes built them at
	// once): the larger is kept, the other deleted.
	slices.SortFunc(cands, func(a, b *run) int {
		if len(a.sources) != len(b.sources) {
			return len(b.sources) - len(a.sources)
		}
		return strings.Compare(a.path, b.path)
	})
	covered := map[string]bool{}
	var chosen []*run
	for _, r := range cands {
		overlap := false
		for _, s := range r.sources {
			if covered[s] {
				overlap = true
				break
			}
		}
		if overlap {
			r.close()
			os.Remove(r.path)
			continue
		}
		for _, s := range r.sources {
			covered[s] = true
		}
		chosen = append(chosen, r)
	}
	cands = chosen
	st.Reused = len(chosen)
	var missing []string
	for s := range want {
		if !covered[s] {
			missing = append(missing, s)
		}
	}
	if len(missing) > 0 {
		if o.Read == nil {
			closeAll()
			return nil, st, fmt.Errorf("index cache: %d index objects to read and no reader", len(missing))
		}
		path, err := build(dir, missing, o.Read, o.SortRecords, &st)
		if err != nil {
			closeAll()
			return nil, st, err
		}
		if path != "" {
			r, err := openRun(path)
			if err != nil {
				closeAll()
				return nil, st, err
			}
			cands = append(cands, r)
			st.Built++
		}
	}
	if len(cands) > o.MaxRuns {
		slices.SortFunc(cands, func(a, b *run) int { return int(a.n - b.n) })
		k := len(cands) - o.MaxRuns + 1
		path, err := mergeRuns(dir, cands[:k])
		if err != nil {
			closeAll()
			return nil, st, err
		}
		r, err := openRun(path)
		if err != nil {
			closeAll()
			return nil, st, err
		}
		for _, old := range cands[:k] {
			old.close()
			if old.path != path {
				os.Remove(old.path)
			}
		}
		st.Merged = k
		cands = append(cands[k:], r)
	}
	sortByPriority(cands)
	x := &DiskIndex{dir: dir, runs: cands, packNum: map[ID]uint32{}, overlay: newAdded(o.FlushAt), flushAt: o.FlushAt, baseLen: -1}
	for _, r := range cands {
		r.global = make([]uint32, len(r.packs))
		for i, p := range r.packs {
			r.global[i] = x.packNumber(p.ID)
		}
		x.base = append(x.base, x.npos)
		x.npos += r.n
	}
	return x, st, nil
}

// sortByPriority orders runs by their alphabetically first index object.
func sortByPriority(runs []*run) {
	first := func(r *run) string {
		if len(r.sources) == 0 {
			return ""
		}
		return slices.Min(r.sources)
	}
	slices.SortStableFunc(runs, func(a, b *run) int { return strings.Compare(first(a), first(b)) })
}

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

// build writes one run from the named index objects by an external merge
// sort and returns its path ("" when no object was read).
func build(dir string, names []string, read func(string) ([]Entry, error), memRecs int, st *DiskStats) (path string, err error) {
	slices.Sort(names)
	packNum := map[ID]uint32{}
	var packs []ID
	var sources []string
	var spills []string
	defer func() {
		for _, s := range spills {
			os.Remove(s)
		}
	}()
	var buf []rec
	spill := func() error {
		sortRecs(buf)
		p, err := writeSpill(dir, buf)
		if err != nil {
			return err
		}
		spills = append(spills, p)
		buf = buf[:0]
		return nil
	}
	for _, name := range names {
		entries, err := read(name)
		if errors.Is(err, ErrSkip) {
			st.Skipped++
			continue
		}
		if err != nil {
			return "", err
		}
		st.Read++
		sources = append(sources, name)
		if need := len(buf) + len(entries); need > cap(buf) {
			// Grown by hand: append's growth would overshoot the bound.
			nb := make([]rec, len(buf), max(need, min(2*cap(buf), memRecs+MaxEntries)))
			copy(nb, buf)
			buf = nb
		}
		for i := range entries {
			e := &entries[i]
			n, ok := packNum[e.Pack]
			if !ok {
				n = uint32(len(packs))
				packs = append(packs, e.Pack)
				packNum[e.Pack] = n
			}
			buf = append(buf, rec{h: e.Hash, pack: n, offset: e.Offset, stored: e.Stored, raw: e.Raw, typ: e.Type})
		}
		if len(buf) >= memRecs {
			if err := spill(); err != nil {
				return "", err
			}
		}
	}
	if len(sources) == 0 {
		return "", nil
	}
	w, err := newRunWriter(dir)
	if err != nil {
		return "", err
	}
	defer w.abort()
	if len(spills) == 0 {
		sortRecs(buf)
		for i := range buf {
			w.add(&buf[i])
		}
		return w.finish(packs, sources, false)
	}
	if len(buf) > 0 {
		if err := spill(); err != nil {
			return "", err
		}
	}
	buf = nil
	const fanIn = 256
	for len(spills) > fanIn {
		var next []string
		for len(spills) > 0 {
			group := spills[:min(fanIn, len(spills))]
			sw, err := newSpillWriter(dir)
			if err != nil {
				return "", err
			}
			err = mergeSpills(group, func(r *rec) error { return sw.add(r) })
			if err == nil {
				err = sw.close()
			}
			if err != nil {
				sw.abort()
				return "", err
			}
			for _, s := range group {
				os.Remove(s)
			}
			spills = spills[len(group):]
			next = append(next, sw.path)
		}
		spills = next
	}
	if err := mergeSpills(spills, func(r *rec) error { w.add(r); return w.err }); err != nil {
		return "", err
	}
	return w.finish(packs, sources, false)
}

// mergeRuns merges runs into one new run file and returns its path.
func mergeRuns(dir string, runs []*run) (string, error) {
	runs = slices.Clone(runs)
	sortByPriority(runs)
	packNum := map[ID]uint32{}
	var packs []ID
	var sources []string
	var cursors []cursor
	for _, r := range runs {
		remap := make([]uint32, len(r.packs))
		for i, p := range r.packs {
			n, ok := packNum[p.ID]
			if !ok {
				n = uint32(len(packs))
				packs = append(packs, p.ID)
				packNum[p.ID] = n
			}
			remap[i] = n
		}
		sources = append(sources, r.sources...)
		cursors = append(cursors, newRunCursor(r, remap))
	}
	slices.Sort(sources)
	w, err := newRunWriter(dir)
	if err != nil {
		return "", err
	}
	defer w.abort()
	if err := merge(cursors, func(r *rec) error { w.add(r); return w.err }); err != nil {
		return "", err
	}
	return w.finish(packs, sources, false)
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
	w, err := newRunWriter(x.dir)
	if err != nil {
		return nil, err
	}
	for i := range recs {
		w.add(&recs[i])
	}
	path, err := w.finish(packs, nil, true)
	if err != nil {
		w.abort()
		return nil, err
	}
	r, err := openRun(path)
	if err != nil {
		os.Remove(path)
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

// Len is the number of chunks indexed. Unless the cache is one run whose
// packs are all usable, the first call reads the runs through.
func (x *DiskIndex) Len() int {
	x.mu.Lock()
	if x.baseLen < 0 {
		x.baseLen = x.countFast()
	}
	n, added := x.baseLen, x.added
	x.mu.Unlock()
	if n < 0 {
		n = 0
		if err := x.walk(true, func(int64, *ID, packedLoc) { n++ }); err == nil {
			x.mu.Lock()
			x.baseLen = n
			x.mu.Unlock()
		}
	}
	return int(n) + added
}

func (x *DiskIndex) countFast() int64 {
	if len(x.runs) == 0 {
		return 0
	}
	for _, r := range x.runs {
		for i, p := range r.packs {
			if p.Records > 0 && p.MaxEnd > x.limit[r.global[i]] {
				return -1 // some records are not usable: count them through
			}
		}
	}
	big := 0
	for i, r := range x.runs {
		if r.n > x.runs[big].n {
			big = i
		}
	}
	var small []*run
	var smallRecs int64
	for i, r := range x.runs {
		if i != big {
			small = append(small, r)
			smallRecs += r.n
		}
	}
	// Every hash of the small runs looked up in the others (a pread each)
	// costs less than reading all runs through while they are small
	// (those of the pushes since the last merge).
	if smallRecs*int64(len(x.runs)-1) > x.npos/16 {
		return -1
	}
	total := x.runs[big].distinct
	for j, r := range small {
		c := newRunCursor(r, nil)
		var rc rec
		var last ID
		for k := 0; ; k++ {
			ok, err := c.next(&rc)
			if err != nil {
				x.fail(r, err)
				return -1
			}
			if !ok {
				break
			}
			if k > 0 && rc.h == last {
				continue
			}
			last = rc.h
			seen := false
			for _, o := range append([]*run{x.runs[big]}, small[:j]...) {
				recs, _, buf, err := o.search(&rc.h, x.buf)
				x.buf = buf
				if err != nil {
					x.fail(o, err)
					return -1
				}
				if len(recs) > 0 {
					seen = true
					break
				}
			}
			if !seen {
				total++
			}
		}
	}
	return total
}

// Each calls fn for every chunk (in hash order).
func (x *DiskIndex) Each(fn func(h ID, l Location)) error {
	return x.walk(false, func(_ int64, h *ID, p packedLoc) { fn(*h, x.unpack(p)) })
}

// Positions is the number of positions: the records of the cached runs
// (entries added after opening have none). With Marks, a set of chunks
// at one bit each.
func (x *DiskIndex) Positions() int { return int(x.npos) }

// Pos returns the position of chunk h (see Positions).
func (x *DiskIndex) Pos(h ID) (int, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	_, pos, ok := x.find(&h, true)
	return int(pos), ok
}

// EachPos calls fn for every chunk of the cached runs with its position,
// in hash order, reading the runs through once (instead of At for every
// position).
func (x *DiskIndex) EachPos(fn func(pos int, h ID, l Location)) error {
	return x.walk(true, func(pos int64, h *ID, p packedLoc) { fn(int(pos), *h, x.unpack(p)) })
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

// walk visits each distinct usable hash once, in hash order, with the
// record that lookups return for it: from the cached runs and, unless
// cachedOnly, the added entries.
func (x *DiskIndex) walk(cachedOnly bool, fn func(pos int64, h *ID, p packedLoc)) error {
	type src struct {
		c    cursor
		r    *run
		run  int // index into x.runs, -1 for added entries
		head rec
		pos  int64
		ok   bool
	}
	var srcs []*src
	x.mu.Lock()
	for i, r := range x.runs {
		srcs = append(srcs, &src{c: newRunCursor(r, r.global), r: r, run: i, pos: x.base[i] - 1})
	}
	if !cachedOnly {
		recs := x.overlay.copyRecs()
		sortRecs(recs)
		srcs = append(srcs, &src{c: &sliceCursor{recs: recs}, run: -1})
		for _, r := range x.temps {
			srcs = append(srcs, &src{c: newRunCursor(r, r.global), r: r, run: -1})
		}
	}
	x.mu.Unlock()
	adv := func(s *src) error {
		ok, err := s.c.next(&s.head)
		s.ok = ok
		s.pos++
		if err != nil {
			x.mu.Lock()
			x.fail(s.r, err)
			x.mu.Unlock()
		}
		return err
	}
	for _, s := range srcs {
		if err := adv(s); err != nil {
			return err
		}
	}
	for {
		var min *ID
		for _, s := range srcs {
			if s.ok && (min == nil || compareID(&s.head.h, min) < 0) {
				min = &s.head.h
			}
		}
		if min == nil {
			return nil
		}
		h := *min
		found := false
		var win packedLoc
		var winPos int64
		for _, s := range srcs {
			for s.ok && s.head.h == h {
				p := packedLoc{pack: s.head.pack, offset: s.head.offset, stored: s.head.stored, raw: s.head.raw, typ: s.head.typ}
				if !found && x.usable(&p) {
					found, win, winPos = true, p, -1
					if s.run >= 0 {
						winPos = s.pos
					}
				}
				if err := adv(s); err != nil {
					return err
				}
			}
		}
		if found {
			fn(winPos, &h, win)
		}
	}
}

type sliceCursor struct {
	recs []rec
	i    int
}

func (c *sliceCursor) next(out *rec) (bool, error) {
	if c.i >= len(c.recs) {
		return false, nil
	}
	*out = c.recs[c.i]
	c.i++
	return true, nil
}

// PackCheck is what SetPacks found: what LoadIndex reports.
type PackCheck struct {
	// Dropped counts records whose pack is missing or shorter than they
	// need; Short lists the packs shorter than some record needs;
	// Covered holds every pack with at least one usable record.
	Dropped int
	Short   []ID
	Covered map[ID]bool
}

// SetPacks limits the index to the packs listed in sizes (pack -> size
// in bytes): records of other packs, and those extending into the last
// trailerLen bytes of their pack, are not used, as LoadIndex drops them.
// Packs named only by added entries are not limited. Unless some pack is
// short, this reads no record.
func (x *DiskIndex) SetPacks(sizes map[ID]int64, trailerLen int) (PackCheck, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	res := PackCheck{Covered: map[ID]bool{}}
	recs := make([]int, len(x.packs))
	maxEnd := make([]int64, len(x.packs))
	for _, r := range x.runs {
		for i, p := range r.packs {
			g := r.global[i]
			recs[g] += p.Records
			maxEnd[g] = max(maxEnd[g], p.MaxEnd)
		}
	}
	var short []uint32
	for g, id := range x.packs {
		if recs[g] == 0 {
			continue
		}
		size, ok := sizes[id]
		if !ok {
			x.limit[g] = -1
			res.Dropped += recs[g]
			continue
		}
		x.limit[g] = size - int64(trailerLen)
		if maxEnd[g] <= x.limit[g] {
			res.Covered[id] = true
		} else {
			short = append(short, uint32(g))
			res.Short = append(res.Short, id)
		}
	}
	x.baseLen = -1
	if len(short) == 0 {
		return res, nil
	}
	isShort := map[uint32]bool{}
	for _, g := range short {
		isShort[g] = true
	}
	for _, r := range x.runs {
		c := newRunCursor(r, r.global)
		var rc rec
		for {
			ok, err := c.next(&rc)
			if err != nil {
				x.fail(r, err)
				return res, err
			}
			if !ok {
				break
			}
			if !isShort[rc.pack] {
				continue
			}
			if int64(rc.offset)+int64(rc.stored) > x.limit[rc.pack] {
				res.Dropped++
			} else {
				res.Covered[x.packs[rc.pack]] = true
			}
		}
	}
	return res, nil
}

// Packs returns what the cached runs hold of each pack.
func (x *DiskIndex) Packs() []PackInfo {
	x.mu.Lock()
	defer x.mu.Unlock()
	out := make([]PackInfo, len(x.packs))
	for g, id := range x.packs {
		out[g].ID = id
	}
	for _, r := range x.runs {
		for i, p := range r.packs {
			o := &out[r.global[i]]
			o.Records += p.Records
			o.MaxEnd = max(o.MaxEnd, p.MaxEnd)
		}
	}
	return slices.DeleteFunc(out, func(p PackInfo) bool { return p.Records == 0 })
}

// Verify reads every cached run through and checks every block.
func (x *DiskIndex) Verify() error {
	x.mu.Lock()
	runs := slices.Clone(x.runs)
	x.mu.Unlock()
	for _, r := range runs {
		if err := r.verify(); err != nil {
			x.mu.Lock()
			x.fail(r, err)
			x.mu.Unlock()
			return err
		}
	}
	return nil
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
