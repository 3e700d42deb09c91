package index

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
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

// OpenDisk opens the index cache of a repository for the given index
// objects, building what is missing from them.
func OpenDisk(o DiskOptions) (*DiskIndex, DiskStats, error) {
	var st DiskStats
	if err := o.setDefaults(); err != nil {
		return nil, st, err
	}
	dir := filepath.Join(o.Dir, o.RepoID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, st, err
	}
	want := map[string]bool{}
	for _, s := range o.Sources {
		want[s] = true
	}
	cands, err := openCachedRuns(dir, want, o.Verify, &st)
	if err != nil {
		return nil, st, err
	}
	cands, covered := dropOverlapping(cands)
	st.Reused = len(cands)
	closeAll := func() {
		for _, r := range cands {
			r.close()
		}
	}
	var missing []string
	for s := range want {
		if !covered[s] {
			missing = append(missing, s)
		}
	}
	if len(missing) > 0 {
		r, err := buildMissing(dir, missing, o, &st)
		if err != nil {
			closeAll()
			return nil, st, err
		}
		if r != nil {
			cands = append(cands, r)
		}
	}
	if len(cands) > o.MaxRuns {
		merged, err := mergeSmallest(dir, cands, o.MaxRuns, &st)
		if err != nil {
			closeAll()
			return nil, st, err
		}
		cands = merged
	}
	sortByPriority(cands)
	return newDiskIndex(dir, cands, o.FlushAt), st, nil
}

// setDefaults checks the repository id and directory and fills in the
// defaults of the sizes left zero.
func (o *DiskOptions) setDefaults() error {
	if o.RepoID == "" || strings.ContainsAny(o.RepoID, `/\`) || o.RepoID == "." || o.RepoID == ".." {
		return fmt.Errorf("index cache: bad repository id %q", o.RepoID)
	}
	if o.Dir == "" {
		return errors.New("index cache: no directory")
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
	return nil
}

// openCachedRuns opens the runs in dir whose index objects are all
// wanted (checking every block with verify). Damaged runs and runs naming
// an object that is gone are deleted, other processes' temporary files
// older than a day too.
func openCachedRuns(dir string, want map[string]bool, verify bool, st *DiskStats) ([]*run, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var cands []*run
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
		if err == nil && verify {
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
	return cands, nil
}

// dropOverlapping deletes the runs whose objects overlap another's (two
// processes built them at once): the larger is kept, the other deleted.
// It returns the runs kept and the index objects they cover.
func dropOverlapping(cands []*run) ([]*run, map[string]bool) {
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
	return chosen, covered
}

// buildMissing builds one run from the index objects that no cached run
// covers and opens it (nil when Read left out every one).
func buildMissing(dir string, missing []string, o DiskOptions, st *DiskStats) (*run, error) {
	if o.Read == nil {
		return nil, fmt.Errorf("index cache: %d index objects to read and no reader", len(missing))
	}
	r, err := build(dir, missing, o.Read, o.SortRecords, st)
	if err != nil || r == nil {
		return nil, err
	}
	st.Built++
	return r, nil
}

// mergeSmallest merges the smallest of cands into one run so that
// maxRuns remain, deleting the runs it merged, and returns the runs left.
// On failure cands are left open for the caller to close.
func mergeSmallest(dir string, cands []*run, maxRuns int, st *DiskStats) ([]*run, error) {
	slices.SortFunc(cands, func(a, b *run) int { return int(a.n - b.n) })
	k := len(cands) - maxRuns + 1
	r, err := mergeRuns(dir, cands[:k])
	if err != nil {
		return nil, err
	}
	for _, old := range cands[:k] {
		old.close()
		if old.path != r.path {
			os.Remove(old.path)
		}
	}
	st.Merged = k
	return append(cands[k:], r), nil
}

// newDiskIndex makes the index of the opened runs, numbering their packs.
func newDiskIndex(dir string, runs []*run, flushAt int) *DiskIndex {
	x := &DiskIndex{dir: dir, runs: runs, packNum: map[ID]uint32{}, overlay: newAdded(flushAt), flushAt: flushAt, baseLen: -1}
	for _, r := range runs {
		r.global = make([]uint32, len(r.packs))
		for i, p := range r.packs {
			r.global[i] = x.packNumber(p.ID)
		}
		x.base = append(x.base, x.npos)
		x.npos += r.n
	}
	return x
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

// build writes one run from the named index objects by an external merge
// sort and returns it opened (nil when no object was read).
func build(dir string, names []string, read func(string) ([]Entry, error), memRecs int, st *DiskStats) (*run, error) {
	slices.Sort(names)
	s := &extSort{dir: dir, memRecs: memRecs, packNum: map[ID]uint32{}}
	defer s.removeSpills()
	var sources []string
	records := 0
	for _, name := range names {
		entries, err := read(name)
		if errors.Is(err, ErrSkip) {
			st.Skipped++
			continue
		}
		if err != nil {
			return nil, err
		}
		st.Read++
		sources = append(sources, name)
		records += len(entries)
		if err := s.add(entries); err != nil {
			return nil, err
		}
	}
	if len(sources) == 0 {
		return nil, nil
	}
	w, err := newRunWriter(dir, records)
	if err != nil {
		return nil, err
	}
	defer w.abort()
	if err := s.writeTo(w); err != nil {
		return nil, err
	}
	return w.finish(s.packs, sources, false)
}

// mergeRuns merges runs into one new run file and returns it opened.
func mergeRuns(dir string, runs []*run) (*run, error) {
	runs = slices.Clone(runs)
	sortByPriority(runs)
	packNum := map[ID]uint32{}
	var packs []ID
	var sources []string
	var cursors []cursor
	var records int64
	for _, r := range runs {
		records += r.n
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
	w, err := newRunWriter(dir, int(min(records, 1<<30)))
	if err != nil {
		return nil, err
	}
	defer w.abort()
	if err := merge(cursors, func(r *rec) error { w.add(r); return w.err }); err != nil {
		return nil, err
	}
	return w.finish(packs, sources, false)
}
