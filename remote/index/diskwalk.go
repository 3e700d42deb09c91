package index

import "slices"

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

// EachPos calls fn for every chunk of the cached runs with its position,
// in hash order, reading the runs through once (instead of At for every
// position).
func (x *DiskIndex) EachPos(fn func(pos int, h ID, l Location)) error {
	return x.walk(true, func(pos int64, h *ID, p packedLoc) { fn(int(pos), *h, x.unpack(p)) })
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
