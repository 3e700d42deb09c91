package remote

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"

	"github.com/vmasync/vmasync/chunkplan"
	"github.com/vmasync/vmasync/remote/backend"
	"github.com/vmasync/vmasync/remote/index"
	"github.com/vmasync/vmasync/remote/pack"
	"github.com/vmasync/vmasync/remote/tree"
)

// GCOptions tune GC.
type GCOptions struct {
	// RepackThreshold: a pack whose unused share of bytes is at least this
	// (0 < t <= 1; default 0.5) is rewritten with only its used chunks.
	// Packs with no used chunk are always deleted.
	RepackThreshold float64
	// DryRun changes nothing and downloads no pack: the bytes after a
	// repack are estimated as the used blobs' bytes (pack headers left
	// out), the packs after it from the pack size.
	DryRun bool
	// Without lists backups to count as removed (prune --dry-run passes
	// the ones it would forget), so that the result says what removing
	// them would free.
	Without []Backup
}

// GCResult reports what GC did (or would do).
type GCResult struct {
	PacksBefore, PacksAfter int
	BytesBefore, BytesAfter int64
	Deleted, Repacked       int
	IndexObjects            int
	// Kept lists damaged packs and index objects that GC left alone
	// ('vmasync repair' sets them aside).
	Kept []string
	// Skipped says why GC deleted nothing (a kept backup's manifest is
	// unreadable, so what it references is unknown).
	Skipped string
	// TempRemoved counts temporary objects of interrupted uploads removed.
	TempRemoved int
}

// GC deletes the packs no backup uses, rewrites mostly unused ones, and
// replaces all index objects with new ones for the remaining packs. The
// caller must hold the exclusive lock. It deletes only what it proved
// unreferenced: nothing at all when a kept backup's manifest cannot be
// read, never a pack it could not read, and never an old object before
// the new packs and index objects that replace it are stored and checked
// (listed with their sizes). Crash-safe order: new packs, new index, then
// deletion of old index objects, then of old packs; a crash anywhere
// leaves duplicates that the next GC removes, never a chunk without a
// copy.
func (r *Repository) GC(ctx context.Context, opt GCOptions) (*GCResult, error) {
	if opt.RepackThreshold <= 0 || opt.RepackThreshold > 1 {
		opt.RepackThreshold = 0.5
	}
	g := &gcRun{r: r, opt: opt, res: &GCResult{}}
	if !opt.DryRun {
		n, err := r.removeTemps(ctx)
		if err != nil {
			return nil, err
		}
		g.res.TempRemoved = n
	}
	if err := g.load(ctx); err != nil {
		return nil, err
	}
	if g.res.Skipped != "" {
		return g.res, nil
	}
	g.plan()
	if err := g.rewrite(ctx); err != nil {
		return nil, err
	}
	g.count()
	if opt.DryRun || (len(g.gone) == 0 && len(g.indexNames) <= 1 && len(g.badIndex) == 0) {
		g.res.IndexObjects = len(g.indexNames)
		return g.res, nil
	}
	if err := g.commit(ctx); err != nil {
		return nil, err
	}
	return g.res, nil
}

// gcRun is one garbage collection's state, from what it reads to what it
// writes and deletes.
type gcRun struct {
	r   *Repository
	opt GCOptions
	res *GCResult

	used       index.Marks // chunks a kept backup references, by index position
	indexNames []string    // the readable index objects
	badIndex   []string    // damaged index objects: derived data, rebuilt from the packs' headers
	keep       map[ID]bool // damaged packs: never deleted or repacked by GC

	use          map[ID]*packUse
	drop, repack []ID
	gone         map[ID]bool     // packs to delete at the end
	moved        map[ID]Location // repacked chunk -> its new place
	newPacks     map[ID]int64
	walkErr      error // of the index walk of plan
}

// packUse is a pack's bytes (its listed size) and the bytes of the used
// chunks the index places in it.
type packUse struct{ used, total int64 }

// load reads the index, the manifests and every index object; with an
// unreadable manifest it sets res.Skipped.
func (g *gcRun) load(ctx context.Context) error {
	r := g.r
	if _, err := r.LoadIndex(ctx, !g.opt.DryRun); err != nil {
		return err
	}
	used, unreadable, err := r.usedChunks(ctx, g.opt.Without)
	if err != nil {
		return err
	}
	g.used = used
	names, err := r.indexObjects(ctx)
	if err != nil {
		return err
	}
	g.keep = map[ID]bool{}
	for _, d := range r.Damage() {
		switch d.Kind {
		case "pack":
			id, _ := parseID(strings.TrimSuffix(path.Base(d.Object), packSuffix))
			g.keep[id] = true
			g.res.Kept = append(g.res.Kept, d.Object)
		case "index":
			g.badIndex = append(g.badIndex, d.Object)
		}
	}
	for _, n := range names { // the readable index objects, replaced at the end
		if !slices.Contains(g.badIndex, n) {
			g.indexNames = append(g.indexNames, n)
		}
	}
	for _, size := range r.packs {
		g.res.BytesBefore += size
	}
	g.res.PacksBefore = len(r.packs)
	if len(unreadable) > 0 {
		g.res.Skipped = fmt.Sprintf("the manifest of %s cannot be read, so what it references is unknown (push its dump again, or 'vmasync repair' to set it aside)", strings.Join(unreadable, ", "))
		g.res.PacksAfter, g.res.BytesAfter, g.res.IndexObjects = g.res.PacksBefore, g.res.BytesBefore, len(g.indexNames)
	}
	return nil
}

// plan decides which packs go (no used chunk) and which are rewritten
// (a share of at least RepackThreshold unused), counting for each used
// chunk the one location the index holds.
func (g *gcRun) plan() {
	r := g.r
	g.use = map[ID]*packUse{}
	for id, size := range r.packs {
		if !g.keep[id] && r.indexed[id] {
			g.use[id] = &packUse{total: size}
		}
	}
	// The bytes in use in each pack: of each used chunk, the one place
	// the index holds. The index is walked, no index object read again.
	g.walkErr = r.index.EachPos(func(i int, _ ID, loc Location) {
		if i < 0 || !g.used.Has(i) {
			return
		}
		if u := g.use[loc.Pack]; u != nil {
			u.used += int64(loc.Stored)
		}
	})
	// Packs that are listed but in no index and have no readable header
	// are not in use: LoadIndex reported them as damaged, and GC never
	// deletes what it did not prove unreferenced.
	g.gone = map[ID]bool{}
	for id, u := range g.use {
		switch {
		case u.used == 0:
			g.drop = append(g.drop, id)
			g.gone[id] = true
		case float64(u.total-u.used) >= g.opt.RepackThreshold*float64(u.total):
			g.repack = append(g.repack, id)
			g.gone[id] = true
		}
	}
	slices.SortFunc(g.repack, func(a, b ID) int { return index.Compare(&a, &b) })
}

// rewrite repacks the packs to rewrite (in a dry run, estimates what that
// would leave).
func (g *gcRun) rewrite(ctx context.Context) error {
	g.moved = map[ID]Location{}
	if len(g.repack) == 0 {
		return nil
	}
	if g.opt.DryRun {
		var usedBytes int64
		for _, id := range g.repack {
			usedBytes += g.use[id].used
		}
		g.res.BytesAfter += usedBytes
		g.res.PacksAfter += int((usedBytes + int64(g.r.Config.PackSize) - 1) / int64(g.r.Config.PackSize))
		return nil
	}
	newPacks, failed, err := g.r.repack(ctx, g.repack, g.used, g.moved)
	if err != nil {
		return err
	}
	g.newPacks = newPacks
	for _, id := range failed {
		delete(g.gone, id) // unreadable: kept, reported
		g.res.Kept = append(g.res.Kept, packName(id))
	}
	for id, size := range newPacks {
		delete(g.gone, id) // a new pack never has the name of one GC deletes
		g.res.BytesAfter += size
	}
	return nil
}

// count fills the result's figures.
func (g *gcRun) count() {
	res := g.res
	for id := range g.gone {
		if slices.Contains(g.drop, id) {
			res.Deleted++
		} else {
			res.Repacked++
		}
	}
	for id, size := range g.r.packs {
		if !g.gone[id] && g.newPacks[id] == 0 {
			res.BytesAfter += size
		}
	}
	res.PacksAfter += len(g.r.packs) - len(g.gone) + len(g.newPacks)
	for id := range g.newPacks {
		if _, ok := g.r.packs[id]; ok {
			res.PacksAfter--
		}
	}
}

// commit writes the new index (every used chunk where it now is), checks
// it, then deletes the old index objects (the damaged ones too: LoadIndex
// indexed every pack they could describe again from its header), then
// the packs that go.
func (g *gcRun) commit(ctx context.Context) error {
	r := g.r
	// The live entries come in hash order and are written in parts as
	// they come, never held all at once.
	written := map[string]bool{}
	var part []index.Entry
	var err error
	flush := func() {
		if err != nil || len(part) == 0 {
			return
		}
		var w map[string]bool
		if w, err = r.writeIndexChecked(ctx, part); err == nil {
			maps.Copy(written, w)
		}
		part = part[:0]
	}
	walkErr := r.index.EachPos(func(i int, h ID, loc Location) {
		if i < 0 || !g.used.Has(i) || err != nil {
			return
		}
		if moved, ok := g.moved[h]; ok {
			part = append(part, index.Entry{Hash: h, Location: moved})
		} else if !g.gone[loc.Pack] {
			part = append(part, index.Entry{Hash: h, Location: loc})
		}
		if len(part) >= indexEvery {
			flush()
		}
	})
	flush()
	if err == nil {
		err = walkErr
	}
	if err == nil {
		err = cmp.Or(g.walkErr, r.index.Err())
		if err != nil {
			err = fmt.Errorf("the local index cache failed while garbage collection read it, so nothing was deleted (run prune again): %w", err)
		}
	}
	if err != nil {
		return err
	}
	g.res.IndexObjects = len(written)
	for _, n := range append(g.indexNames, g.badIndex...) {
		if !written[n] {
			if err := r.B.Remove(ctx, n); err != nil {
				return err
			}
		}
	}
	for id := range g.gone {
		if err := r.B.Remove(ctx, packName(id)); err != nil {
			return err
		}
	}
	_, err = r.LoadIndex(ctx, false)
	return err
}

// usedChunks returns the chunks that the backups (but those in without)
// reference, and the names of backups whose manifest cannot be read.
func (r *Repository) usedChunks(ctx context.Context, without []Backup) (index.Marks, []string, error) {
	backups, err := r.Backups(ctx)
	if err != nil {
		return nil, nil, err
	}
	skip := map[string]bool{} // backup names hold the VM id
	for _, b := range without {
		skip[b.Name] = true
	}
	used := index.NewMarks(r.index.Positions())
	var unreadable []string
	for _, b := range backups {
		if skip[b.Name] {
			continue
		}
		s, err := r.readManifest(ctx, b)
		if err == nil {
			err = r.eachChunk(ctx, b, s, tree.Visitor{Node: r.markNode(used), Chunk: func(c chunkplan.ChunkRef) error {
				if i, ok := r.index.Pos(ID(c.Hash)); ok {
					used.Set(i)
				}
				return nil
			}})
		}
		if errors.Is(err, ErrCorruptObject) {
			r.warnf("%v", err)
			unreadable = append(unreadable, b.Name)
			continue
		}
		if err != nil {
			return nil, nil, err
		}
	}
	return used, unreadable, nil
}

// markNode marks a node of a chunk tree as used and tells the walk to
// descend only the first time: below a node seen before, everything is
// marked already (or the walk failed, and GC stops).
func (r *Repository) markNode(used index.Marks) func(t tree.Ref) bool {
	return func(t tree.Ref) bool {
		i, ok := r.index.Pos(ID(t.ID))
		if !ok {
			return true // the walk reports it missing
		}
		if used.Has(i) {
			return false
		}
		used.Set(i)
		return true
	}
}

// repack copies the used chunks of the packs ids into new packs, checking
// each chunk against its hash, and records their new places in moved. It
// returns the new packs (stored and checked) and the packs it could not
// read or found damaged, which the caller keeps.
func (r *Repository) repack(ctx context.Context, ids []ID, used index.Marks, moved map[ID]Location) (map[ID]int64, []ID, error) {
	newPacks := map[ID]int64{}
	var failed []ID
	var pb pack.Builder
	flush := func() error {
		if pb.Len() == 0 {
			return nil
		}
		data, id, entries := pb.Finish(r.Config.Version)
		if _, err := r.saveContent(ctx, packName(id), data); err != nil {
			return err
		}
		if err := r.verifySize(ctx, packName(id), int64(len(data))); err != nil {
			return err
		}
		newPacks[id] = int64(len(data))
		for _, e := range entries {
			moved[e.Hash] = Location{Pack: id, Offset: e.Offset, Stored: e.Stored, Raw: e.Raw, Type: e.Type}
		}
		return nil
	}
	limit := 2*int64(r.Config.PackSize) + packSlack
	for _, pid := range ids {
		data, err := backend.LoadAll(ctx, r.B, packName(pid), limit)
		if errors.Is(err, backend.ErrTransient) || errors.Is(err, context.Canceled) {
			return nil, nil, err
		}
		var entries []pack.Entry
		if err == nil {
			entries, err = pack.Parse(data, pid, r.Config.Version)
		}
		if err != nil {
			r.warnf("not repacking pack %s: %v (kept; run 'vmasync check --read-data')", pid.Short(), err)
			failed = append(failed, pid)
			continue
		}
		var blobs []pack.Entry
		for _, e := range entries {
			loc, ok := r.index.Get(e.Hash)
			if !ok || !r.isUsed(used, e.Hash) || loc.Pack != pid || loc.Offset != e.Offset {
				continue
			}
			if _, err = pack.DecodeBlob(data[e.Offset:e.Offset+e.Stored], loc, e.Hash, nil); err != nil {
				break
			}
			blobs = append(blobs, e)
		}
		if err != nil {
			r.warnf("not repacking pack %s: %v (kept; run 'vmasync check --read-data')", pid.Short(), err)
			failed = append(failed, pid)
			continue
		}
		for _, e := range blobs {
			pb.Add(e.Hash, int(e.Raw), e.Type, data[e.Offset:e.Offset+e.Stored])
			if pb.Len() >= r.Config.PackSize {
				if err := flush(); err != nil {
					return nil, nil, err
				}
			}
		}
	}
	if err := flush(); err != nil {
		return nil, nil, err
	}
	return newPacks, failed, nil
}

// verifySize checks that an object just stored is there with its size:
// GC deletes nothing before what replaces it has been seen whole.
func (r *Repository) verifySize(ctx context.Context, name string, want int64) error {
	size, err := r.B.Stat(ctx, name)
	if err != nil {
		return fmt.Errorf("checking %s after storing it: %w", name, err)
	}
	if size != want {
		return fmt.Errorf("%w: %s has %d bytes after storing %d", ErrCorruptObject, name, size, want)
	}
	return nil
}

// removeTemps removes the temporary objects of interrupted uploads. Only
// under the exclusive lock: no other process writes data then. Lock
// objects are still written (a process that wants a lock writes one, sees
// the exclusive lock and removes its own), so temporary objects under
// locks/ are left alone.
func (r *Repository) removeTemps(ctx context.Context) (int, error) {
	var temps []string
	err := r.B.List(ctx, "", func(e backend.Entry) error {
		if backend.IsTemp(e.Name) && !strings.HasPrefix(e.Name, LocksDir+"/") {
			temps = append(temps, e.Name)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	for _, n := range temps {
		if err := r.B.Remove(ctx, n); err != nil {
			return 0, err
		}
	}
	return len(temps), nil
}

// isUsed reports whether chunk h is marked in used.
func (r *Repository) isUsed(used index.Marks, h ID) bool {
	i, ok := r.index.Pos(h)
	return ok && used.Has(i)
}
