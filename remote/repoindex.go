package remote

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"path"
	"runtime/debug"
	"runtime/metrics"
	"sort"
	"strings"

	"github.com/vmasync/vmasync/remote/backend"
	"github.com/vmasync/vmasync/remote/index"
	"github.com/vmasync/vmasync/remote/pack"
)

// chunkIndex is the index as the repository uses it: index.DiskIndex
// (with CacheDir) or the in-memory index.Index (memIndex).
type chunkIndex interface {
	Get(h ID) (Location, bool)
	Has(h ID) bool
	Add(h ID, l Location)
	Len() int
	// Positions, Pos and EachPos number the indexed chunks for
	// index.Marks (entries added after loading have no position).
	Positions() int
	Pos(h ID) (int, bool)
	EachPos(fn func(pos int, h ID, l Location)) error
	// Err is set when the index failed while in use (a damaged cache
	// block): lookups may then have missed chunks that are stored.
	Err() error
	Close() error
}

// memIndex is the in-memory index as a chunkIndex.
type memIndex struct{ *index.Index }

func (memIndex) Err() error { return nil }

func (memIndex) Close() error { return nil }

// indexLoaded reports whether LoadIndex has run.
func (r *Repository) indexLoaded() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.index != nil
}

// Damage lists the damaged objects the last LoadIndex set aside.
func (r *Repository) Damage() []Damage {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Damage(nil), r.damage...)
}

// IndexStats describes the loaded index.
type IndexStats struct {
	Chunks, Packs, IndexObjects int
	// Recovered counts packs found without an index entry (left by an
	// interrupted push) whose headers were read and indexed.
	Recovered int
	// Dropped counts index entries set aside because their pack is
	// missing or shorter than the entry says.
	Dropped int
	// Damaged lists the objects set aside (see Repository.Damage).
	Damaged []Damage
}

// listPacks returns every pack with its size.
func (r *Repository) listPacks(ctx context.Context) (map[ID]int64, error) {
	packs := map[ID]int64{}
	err := r.list(ctx, PacksDir, func(e backend.Entry) {
		name := path.Base(e.Name)
		if id, ok := parseID(strings.TrimSuffix(name, packSuffix)); ok && strings.HasSuffix(name, packSuffix) {
			packs[id] = e.Size
		}
	})
	if err != nil {
		return nil, fmt.Errorf("listing packs: %w", err)
	}
	return packs, nil
}

// indexObjects lists the index objects' names and ids, sorted.
func (r *Repository) indexObjects(ctx context.Context) ([]string, error) {
	var names []string
	err := r.list(ctx, IndexDir, func(e backend.Entry) {
		if _, ok := parseID(strings.TrimSuffix(path.Base(e.Name), indexSuffix)); ok && strings.HasSuffix(e.Name, indexSuffix) {
			names = append(names, e.Name)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("listing index objects: %w", err)
	}
	sort.Strings(names)
	return names, nil
}

// readIndexObject reads and decodes one index object. A damaged object
// (wrong content for its name, undecodable, too large) is returned as
// ErrCorruptObject; a read failure as itself.
func (r *Repository) readIndexObject(ctx context.Context, name string) ([]index.Entry, error) {
	id, _ := parseID(strings.TrimSuffix(path.Base(name), indexSuffix))
	b, err := backend.LoadAll(ctx, r.B, name, index.MaxObject)
	if err != nil && !errors.Is(err, backend.ErrNotFound) && !errors.Is(err, backend.ErrTransient) && !errors.Is(err, context.Canceled) {
		return nil, fmt.Errorf("%w: %v", ErrCorruptObject, err)
	}
	if err != nil {
		return nil, err
	}
	return index.Decode(b, id)
}

// LoadIndex reads every index object and lists the packs. Damage does not
// stop it: an index object that does not match its name or does not
// decode is set aside (reported through Warn and Damage), and entries
// whose pack is missing or too short for them are dropped, so that a push
// uploads those chunks again instead of building on data that is gone.
// Packs that no readable index covers (an interrupted push uploaded them
// but died before writing its index, or their index was damaged) are
// read back from their headers and indexed; with write set, an index
// object for them is stored.
func (r *Repository) LoadIndex(ctx context.Context, write bool) (IndexStats, error) {
	var st IndexStats
	packs, err := r.listPacks(ctx)
	if err != nil {
		return st, err
	}
	names, err := r.indexObjects(ctx)
	if err != nil {
		return st, err
	}
	var loaded *loadedIndex
	if r.CacheDir != "" && r.Config.ID != "" { // a repository not stored yet (Empty) has no id
		loaded, err = r.loadDiskIndex(ctx, names, packs, &st)
	} else {
		loaded, err = r.loadMemIndex(ctx, names, packs, &st)
	}
	if err != nil {
		return st, err
	}
	idx, covered, short := loaded.idx, loaded.covered, loaded.short
	keep := false
	defer func() {
		if !keep {
			idx.Close()
		}
	}()
	for id := range short {
		st.Damaged = append(st.Damaged, Damage{Object: packName(id), Kind: "pack", Err: fmt.Errorf("%w: %d bytes, shorter than its index entries say", ErrCorruptObject, packs[id])})
	}
	orphans, recovered, err := r.recoverOrphans(ctx, packs, covered, short, &st)
	if err != nil {
		return st, err
	}
	if err := loaded.addOrphans(orphans); err != nil {
		return st, fmt.Errorf("index cache: %w", err)
	}
	for _, d := range st.Damaged {
		r.warnf("set aside %s (run 'vmasync repair')", d)
	}
	if write && len(orphans) > 0 {
		n, err := r.writeIndexParts(ctx, orphans)
		if err != nil {
			return st, err
		}
		st.IndexObjects += n
	}
	setAside, err := r.hasSetAside(ctx)
	if err != nil {
		return st, err
	}
	r.mu.Lock()
	for id := range recovered {
		covered[id] = true
	}
	old := r.index
	r.index, r.packs, r.damage, r.dropped, r.hasDamagedDir, r.recovered, r.indexed = idx, packs, st.Damaged, st.Dropped, setAside, recovered, covered
	r.mu.Unlock()
	keep = true
	if old != nil {
		old.Close()
	}
	st.Chunks, st.Packs = idx.Len(), len(packs)
	return st, nil
}

// loadedIndex is an index just loaded, before the packs that no index
// object covers are added (addOrphans).
type loadedIndex struct {
	idx        chunkIndex
	covered    map[ID]bool // packs with usable entries
	short      map[ID]bool // packs shorter than their entries need
	addOrphans func([]index.Entry) error
}

// loadMemIndex reads every index object into an in-memory index,
// dropping the entries of packs that are missing or too short.
func (r *Repository) loadMemIndex(ctx context.Context, names []string, packs map[ID]int64, st *IndexStats) (*loadedIndex, error) {
	idx := index.New()
	covered := map[ID]bool{}
	short := map[ID]bool{}
	for _, name := range names {
		entries, err := r.readIndexObject(ctx, name)
		if errors.Is(err, backend.ErrNotFound) {
			continue // removed meanwhile (a prune finishing)
		}
		if errors.Is(err, ErrCorruptObject) {
			st.Damaged = append(st.Damaged, Damage{Object: name, Kind: "index", Err: err})
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", name, err)
		}
		for _, e := range entries {
			size, ok := packs[e.Pack]
			if !ok {
				st.Dropped++
				continue // pack removed (by prune) or missing: check reports it
			}
			if int64(e.Offset)+int64(e.Stored) > size-int64(pack.TrailerLen) {
				st.Dropped++
				short[e.Pack] = true
				continue
			}
			covered[e.Pack] = true
			idx.Load(e.Hash, e.Location)
		}
		st.IndexObjects++
	}
	return &loadedIndex{idx: memIndex{idx}, covered: covered, short: short, addOrphans: func(orphans []index.Entry) error {
		for _, e := range orphans {
			idx.Load(e.Hash, e.Location)
		}
		idx.Freeze()
		return nil
	}}, nil
}

// loadDiskIndex opens the local cache of the index (CacheDir), reading
// only the index objects it does not hold yet, and limits it to the
// listed packs (entries of missing or too short packs are not used).
// Damaged index objects are left out and reported on every load, as by
// loadMemIndex; what the cache holds of an object that was read whole
// once stays usable as long as its packs are listed.
func (r *Repository) loadDiskIndex(ctx context.Context, names []string, packs map[ID]int64, st *IndexStats) (*loadedIndex, error) {
	read := func(name string) ([]index.Entry, error) {
		entries, err := r.readIndexObject(ctx, name)
		switch {
		case errors.Is(err, backend.ErrNotFound):
			return nil, fmt.Errorf("%w: removed meanwhile", index.ErrSkip)
		case errors.Is(err, ErrCorruptObject):
			st.Damaged = append(st.Damaged, Damage{Object: name, Kind: "index", Err: err})
			return nil, fmt.Errorf("%w: %v", index.ErrSkip, err)
		case err != nil:
			return nil, fmt.Errorf("reading %s: %w", name, err)
		}
		return entries, nil
	}
	allocated := heapAllocs()
	idx, ds, err := index.OpenDisk(index.DiskOptions{Dir: r.CacheDir, RepoID: r.Config.ID, Sources: names, Read: read})
	allocated = heapAllocs() - allocated
	if err != nil {
		return nil, fmt.Errorf("index cache in %s: %w", r.CacheDir, err)
	}
	st.IndexObjects = len(names) - ds.Skipped
	if ds.Built+ds.Merged > 0 && allocated > freeAfterBuild {
		// The sort's buffers are garbage now; hand their pages back
		// before the command's own work needs memory, instead of when the
		// runtime's scavenger gets to it, so that the peaks do not add up.
		debug.FreeOSMemory()
	}
	pc, err := idx.SetPacks(packs, pack.TrailerLen)
	if err != nil {
		idx.Close()
		return nil, fmt.Errorf("index cache in %s: %w", r.CacheDir, err)
	}
	st.Dropped += pc.Dropped
	short := map[ID]bool{}
	for _, id := range pc.Short {
		short[id] = true
	}
	return &loadedIndex{idx: idx, covered: pc.Covered, short: short, addOrphans: idx.LoadExtra}, nil
}

// recoverOrphans reads back from their headers the packs that no readable
// index covers (left by an interrupted push, or described only by a
// damaged index object) and returns their entries, with the set of those
// packs. A pack whose header does not read is recorded in st as damaged.
func (r *Repository) recoverOrphans(ctx context.Context, packs map[ID]int64, covered, short map[ID]bool, st *IndexStats) ([]index.Entry, map[ID]bool, error) {
	var orphans []index.Entry
	recovered := map[ID]bool{}
	for id, size := range packs {
		if covered[id] || short[id] {
			continue
		}
		entries, err := r.readPackHeader(ctx, id, size)
		if err != nil {
			if errors.Is(err, backend.ErrTransient) || errors.Is(err, context.Canceled) {
				return nil, nil, err
			}
			st.Damaged = append(st.Damaged, Damage{Object: packName(id), Kind: "pack", Err: fmt.Errorf("not indexed and its header is unreadable: %w", err)})
			continue
		}
		st.Recovered++
		recovered[id] = true
		for _, e := range entries {
			loc := Location{Pack: id, Offset: e.Offset, Stored: e.Stored, Raw: e.Raw, Type: e.Type}
			orphans = append(orphans, index.Entry{Hash: e.Hash, Location: loc})
		}
	}
	return orphans, recovered, nil
}

// readPackHeader reads a pack's header with two ranged reads (and, from
// format version 2 on, checks it against the pack's name).
func (r *Repository) readPackHeader(ctx context.Context, id ID, size int64) ([]pack.Entry, error) {
	if size < int64(pack.TrailerLen)+4 {
		return nil, fmt.Errorf("%w: pack %s: %d bytes", ErrCorruptObject, id.Short(), size)
	}
	name := packName(id)
	t, err := r.B.Load(ctx, name, size-int64(pack.TrailerLen), int64(pack.TrailerLen))
	if err != nil {
		return nil, err
	}
	n, err := pack.HeaderLen(t, size)
	if err != nil {
		return nil, err
	}
	start := size - int64(pack.TrailerLen) - int64(n)
	hdr, err := r.B.Load(ctx, name, start, int64(n))
	if err != nil {
		return nil, err
	}
	if r.Config.Version != 1 {
		if err := pack.CheckTail(append(hdr, t...), id); err != nil {
			return nil, err
		}
	}
	return pack.DecodeHeader(hdr, start)
}

// writeIndex uploads entries as one index object and returns its id and
// size.
func (r *Repository) writeIndex(ctx context.Context, entries []index.Entry) (ID, int, error) {
	b := index.Encode(entries)
	id := ID(sha256.Sum256(b))
	_, err := r.saveContent(ctx, indexName(id), b)
	return id, len(b), err
}

// writeIndexParts uploads entries as index objects of at most indexEvery
// entries each and returns how many it wrote.
func (r *Repository) writeIndexParts(ctx context.Context, entries []index.Entry) (int, error) {
	n := 0
	for len(entries) > 0 {
		part := entries[:min(len(entries), indexEvery)]
		entries = entries[len(part):]
		if _, _, err := r.writeIndex(ctx, part); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// writeIndexChecked writes entries as index objects of at most
// indexEvery entries and checks each is stored whole (listed with its
// size) before the caller deletes what they replace. It returns the names
// written.
func (r *Repository) writeIndexChecked(ctx context.Context, entries []index.Entry) (map[string]bool, error) {
	written := map[string]bool{}
	for len(entries) > 0 {
		part := entries[:min(len(entries), indexEvery)]
		entries = entries[len(part):]
		id, size, err := r.writeIndex(ctx, part)
		if err != nil {
			return nil, err
		}
		if err := r.verifySize(ctx, indexName(id), int64(size)); err != nil {
			return nil, err
		}
		written[indexName(id)] = true
	}
	return written, nil
}

// Lookup returns where chunk h is stored.
func (r *Repository) Lookup(h ID) (Location, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.index.Get(h)
}

func (r *Repository) addIndex(entries []index.Entry, packID ID, packSize int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.packs[packID] = packSize
	for _, e := range entries {
		r.index.Add(e.Hash, e.Location)
	}
}

// freeAfterBuild is what building the index cache must have allocated
// for LoadIndex to hand the memory back at once. Below it, a forced
// collection and the pages faulted in again cost more than they save
// (most of the CPU of a test suite that opens small repositories
// thousands of times), and the garbage kept adds less than that to the
// peak (a 2 GiB VM's day-2 push, whose build allocates a few MiB, peaked
// 8 MiB higher with 16 MiB here; as before with 4 MiB).
const freeAfterBuild = 4 << 20

// heapAllocs is the bytes the process has allocated on the heap so far.
func heapAllocs() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}
