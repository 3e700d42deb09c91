package index

import (
	"bufio"
	"container/heap"
	"io"
	"os"
	"slices"
)

// extSort is the external merge sort that builds a run: entries are
// collected in a buffer of memRecs records (plus at most one index
// object's), sorted and spilled to a temporary file when full; the
// spills are merged, in passes of at most fanIn files, into the run.
type extSort struct {
	dir     string
	memRecs int
	packNum map[ID]uint32
	packs   []ID // the run's pack numbers
	buf     []rec
	spills  []string
}

// fanIn is how many spill files one merge reads at once (64 KiB of
// buffer each).
const fanIn = 256

// add collects the entries of one index object, spilling the buffer when
// it is full.
func (s *extSort) add(entries []Entry) error {
	if need := len(s.buf) + len(entries); need > cap(s.buf) {
		// Grown by hand: append's growth would overshoot the bound.
		nb := make([]rec, len(s.buf), max(need, min(2*cap(s.buf), s.memRecs+MaxEntries)))
		copy(nb, s.buf)
		s.buf = nb
	}
	for i := range entries {
		e := &entries[i]
		n, ok := s.packNum[e.Pack]
		if !ok {
			n = uint32(len(s.packs))
			s.packs = append(s.packs, e.Pack)
			s.packNum[e.Pack] = n
		}
		s.buf = append(s.buf, rec{h: e.Hash, pack: n, offset: e.Offset, stored: e.Stored, raw: e.Raw, typ: e.Type})
	}
	if len(s.buf) >= s.memRecs {
		return s.spill()
	}
	return nil
}

// spill sorts the buffer and writes it to a new spill file.
func (s *extSort) spill() error {
	sortRecs(s.buf)
	p, err := writeSpill(s.dir, s.buf)
	if err != nil {
		return err
	}
	s.spills = append(s.spills, p)
	s.buf = s.buf[:0]
	return nil
}

// writeTo adds every record collected to w in order: straight from the
// buffer when nothing was spilled, else by merging the spills.
func (s *extSort) writeTo(w *runWriter) error {
	if len(s.spills) == 0 {
		sortRecs(s.buf)
		for i := range s.buf {
			w.add(&s.buf[i])
		}
		return nil
	}
	if len(s.buf) > 0 {
		if err := s.spill(); err != nil {
			return err
		}
	}
	s.buf = nil
	if err := s.mergePasses(); err != nil {
		return err
	}
	return mergeSpills(s.spills, func(r *rec) error { w.add(r); return w.err })
}

// mergePasses merges the spills, fanIn at a time, into fewer and larger
// ones until at most fanIn are left.
func (s *extSort) mergePasses() error {
	for len(s.spills) > fanIn {
		var next []string
		for len(s.spills) > 0 {
			group := s.spills[:min(fanIn, len(s.spills))]
			sw, err := newSpillWriter(s.dir)
			if err != nil {
				return err
			}
			err = mergeSpills(group, func(r *rec) error { return sw.add(r) })
			if err == nil {
				err = sw.close()
			}
			if err != nil {
				sw.abort()
				return err
			}
			for _, p := range group {
				os.Remove(p)
			}
			s.spills = s.spills[len(group):]
			next = append(next, sw.path)
		}
		s.spills = next
	}
	return nil
}

// removeSpills deletes the spill files left.
func (s *extSort) removeSpills() {
	for _, p := range s.spills {
		os.Remove(p)
	}
}

// spillWriter writes a spill file.
type spillWriter struct {
	path string
	f    *os.File
	w    *bufio.Writer
	b    [EntrySize]byte
}

func newSpillWriter(dir string) (*spillWriter, error) {
	p, err := tempName(dir)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	return &spillWriter{path: p, f: f, w: bufio.NewWriterSize(f, 1<<20)}, nil
}

func (s *spillWriter) add(r *rec) error {
	r.put(s.b[:])
	_, err := s.w.Write(s.b[:])
	return err
}

func (s *spillWriter) close() error {
	err := s.w.Flush()
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	return err
}

func (s *spillWriter) abort() {
	s.f.Close()
	os.Remove(s.path)
}

// writeSpill writes sorted records to a new spill file.
func writeSpill(dir string, rs []rec) (string, error) {
	s, err := newSpillWriter(dir)
	if err != nil {
		return "", err
	}
	for i := range rs {
		if err := s.add(&rs[i]); err != nil {
			s.abort()
			return "", err
		}
	}
	if err := s.close(); err != nil {
		os.Remove(s.path)
		return "", err
	}
	return s.path, nil
}

// mergeSpills merges spill files into fn, 64 KiB of buffer each.
func mergeSpills(paths []string, fn func(*rec) error) error {
	var cursors []cursor
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		cursors = append(cursors, &spillCursor{r: bufio.NewReaderSize(f, 64<<10)})
	}
	return merge(cursors, fn)
}

// spill files: plain sorted records, EntrySize bytes each, written by
// the external sort and read once by its merge (never kept).
type spillCursor struct {
	r   *bufio.Reader
	buf [EntrySize]byte
}

func (c *spillCursor) next(out *rec) (bool, error) {
	if _, err := io.ReadFull(c.r, c.buf[:]); err != nil {
		if err == io.EOF {
			return false, nil
		}
		return false, err
	}
	out.get(c.buf[:])
	return true, nil
}

// mergeHeap merges cursors by compareRec; of equal records the cursor
// listed first comes first.
type mergeHeap struct {
	cur  []cursor
	head []rec
	idx  []int // heap of cursor numbers
}

func (m *mergeHeap) Len() int { return len(m.idx) }

func (m *mergeHeap) Less(i, j int) bool {
	a, b := m.idx[i], m.idx[j]
	if c := compareRec(&m.head[a], &m.head[b]); c != 0 {
		return c < 0
	}
	return a < b
}

func (m *mergeHeap) Swap(i, j int) { m.idx[i], m.idx[j] = m.idx[j], m.idx[i] }

func (m *mergeHeap) Push(x any) { m.idx = append(m.idx, x.(int)) }

func (m *mergeHeap) Pop() any {
	x := m.idx[len(m.idx)-1]
	m.idx = m.idx[:len(m.idx)-1]
	return x
}

// merge feeds the records of cursors to fn in compareRec order.
func merge(cursors []cursor, fn func(*rec) error) error {
	m := &mergeHeap{cur: cursors, head: make([]rec, len(cursors))}
	for i, c := range cursors {
		ok, err := c.next(&m.head[i])
		if err != nil {
			return err
		}
		if ok {
			m.idx = append(m.idx, i)
		}
	}
	heap.Init(m)
	for m.Len() > 0 {
		i := m.idx[0]
		if err := fn(&m.head[i]); err != nil {
			return err
		}
		ok, err := m.cur[i].next(&m.head[i])
		if err != nil {
			return err
		}
		if ok {
			heap.Fix(m, 0)
		} else {
			heap.Pop(m)
		}
	}
	return nil
}

// sortRecs sorts records in memory.
func sortRecs(rs []rec) { slices.SortFunc(rs, func(a, b rec) int { return compareRec(&a, &b) }) }
