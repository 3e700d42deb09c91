package remote

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/vmasync/vmasync/chunkplan"
	"github.com/vmasync/vmasync/remote/backend"
	"github.com/vmasync/vmasync/remote/index"
	"github.com/vmasync/vmasync/remote/pack"
	"github.com/vmasync/vmasync/remote/tree"
)

// DamagedDir holds the objects repair set aside, under their original
// names (damaged/packs/ab/ab12….pack, damaged/index/…, damaged/backups/…).
// Nothing reads them; remove them once looked at.
const DamagedDir = "damaged"

// RepairOptions tune Repair.
type RepairOptions struct {
	// DryRun reports what Repair would do and changes nothing.
	DryRun bool
	// ReadData downloads every pack and checks every chunk; without it
	// only pack headers are read (damage inside a blob is then not seen).
	ReadData bool
	// Dumps are the local vzdump dumps (FindDumps) to look for backups
	// that lost data: a push of such a dump stores it whole again.
	Dumps []Dump
}

// LostBackup is a backup that lost data.
type LostBackup struct {
	Backup Backup
	// Missing of Chunks chunks are gone; Damaged is set when the manifest
	// itself was damaged (set aside: the backup is gone from the list).
	Missing, Chunks int
	Damaged         bool
	// Tree is set when nodes of the backup's chunk tree are gone (format
	// 3): what the walk found. Its root object is kept, so that a push of
	// the dump stores the missing nodes and chunks again.
	Tree string
	// Dump is a local dump whose push would store the backup again ("" if
	// none was given or found).
	Dump string
}

// RepairResult reports what Repair did (or would do).
type RepairResult struct {
	// SetAside lists the damaged objects moved under DamagedDir.
	SetAside []Damage
	// Packs is how many packs the new index describes, IndexWritten how
	// many index objects were written and IndexRemoved how many old ones
	// removed.
	Packs, IndexWritten, IndexRemoved int
	// TempRemoved counts temporary objects of interrupted uploads removed.
	TempRemoved int
	// Salvaged counts the chunks of damaged packs that still matched
	// their hashes and were copied into new packs before the damaged ones
	// were set aside.
	Salvaged int
	Lost     []LostBackup
}

// Repair rebuilds the repository's bookkeeping from its data, as restic's
// repair index and repair snapshots do: it reads every pack's header (and
// with ReadData every chunk), sets aside packs that are damaged and
// manifests that do not parse (moved under DamagedDir, never deleted),
// writes a new index of every readable pack and removes the old index
// objects, then lists the backups that lost data and the local dumps whose
// push would store them again (push does so on its own: see BackupState).
// The caller must hold the exclusive lock.
func (r *Repository) Repair(ctx context.Context, opt RepairOptions) (*RepairResult, error) {
	res := &RepairResult{}
	if !opt.DryRun {
		n, err := r.removeTemps(ctx)
		if err != nil {
			return nil, err
		}
		res.TempRemoved = n
	}
	packs, err := r.listPacks(ctx)
	if err != nil {
		return nil, err
	}
	indexNames, err := r.indexObjects(ctx)
	if err != nil {
		return nil, err
	}
	// The old index, quietly (what it finds is reported below): where
	// the chunks of a pack with a damaged header were.
	warn := r.Warn
	r.Warn = func(string) {}
	_, err = r.LoadIndex(ctx, false)
	r.Warn = warn
	if err != nil {
		return nil, err
	}
	entries, err := r.scanAll(ctx, packs, opt, res)
	if err != nil {
		return nil, err
	}
	// The damaged index objects LoadIndex found (not read a second time).
	for _, d := range r.Damage() {
		if d.Kind == "index" {
			res.SetAside = append(res.SetAside, d)
		}
	}
	// The new index, in memory, to judge the backups by.
	idx := index.New()
	for _, e := range entries {
		idx.Load(e.Hash, e.Location)
	}
	idx.Freeze()
	// From here on the repository reads through the new index: chunk
	// trees are walked through it (salvaged nodes are in new packs).
	r.mu.Lock()
	old := r.index
	r.index = memIndex{idx}
	r.mu.Unlock()
	if old != nil {
		old.Close()
	}
	if err := r.judgeBackups(ctx, idx, opt.Dumps, res); err != nil {
		return nil, err
	}
	if opt.DryRun {
		return res, nil
	}
	for _, d := range res.SetAside {
		if err := r.setAside(ctx, d.Object); err != nil {
			return nil, err
		}
	}
	written, err := r.writeIndexChecked(ctx, entries)
	if err != nil {
		return nil, err
	}
	res.IndexWritten = len(written)
	for _, n := range indexNames {
		if written[n] {
			continue
		}
		if err := r.B.Remove(ctx, n); err != nil {
			return nil, err
		}
		res.IndexRemoved++
	}
	if _, err := r.LoadIndex(ctx, false); err != nil {
		return nil, err
	}
	return res, nil
}

// scanAll returns every pack's entries, from its own header (and with
// ReadData its blobs), recording damaged packs in res; the chunks of
// damaged packs that still read are copied into new packs (salvager) and
// their entries returned too.
func (r *Repository) scanAll(ctx context.Context, packs map[ID]int64, opt RepairOptions, res *RepairResult) ([]index.Entry, error) {
	// Every pack's entries, from its own header (and blobs); the chunks of
	// damaged packs that still read go into new packs (sv).
	var entries []index.Entry
	sv := &salvager{r: r, dry: opt.DryRun}
	for _, id := range sortedIDs(packs) {
		pe, err := r.scanPack(ctx, id, packs[id], opt.ReadData)
		if errors.Is(err, backend.ErrTransient) || errors.Is(err, context.Canceled) {
			return nil, err
		}
		if err != nil {
			res.SetAside = append(res.SetAside, Damage{Object: packName(id), Kind: "pack", Err: err})
			if err := sv.salvage(ctx, id, packs[id]); err != nil {
				return nil, err
			}
			continue
		}
		res.Packs++
		for _, e := range pe {
			entries = append(entries, index.Entry{Hash: e.Hash, Location: Location{Pack: id, Offset: e.Offset, Stored: e.Stored, Raw: e.Raw, Type: e.Type}})
		}
	}
	if err := sv.flush(ctx); err != nil {
		return nil, err
	}
	entries = append(entries, sv.entries...)
	res.Salvaged = sv.chunks
	return entries, nil
}

// scanPack returns a pack's entries from its header, checking with
// readData every blob against its hash.
func (r *Repository) scanPack(ctx context.Context, id ID, size int64, readData bool) ([]pack.Entry, error) {
	if !readData {
		return r.readPackHeader(ctx, id, size)
	}
	data, err := backend.LoadAll(ctx, r.B, packName(id), 2*int64(r.Config.PackSize)+packSlack)
	if err != nil {
		return nil, err
	}
	entries, err := pack.Parse(data, id, r.Config.Version)
	if err != nil {
		return nil, err
	}
	var raw []byte
	for _, e := range entries {
		loc := Location{Pack: id, Offset: e.Offset, Stored: e.Stored, Raw: e.Raw, Type: e.Type}
		if raw, err = pack.DecodeBlob(data[e.Offset:e.Offset+e.Stored], loc, e.Hash, raw); err != nil {
			return nil, err
		}
	}
	return entries, nil
}

// judgeBackups finds the backups whose manifest is damaged (to be set
// aside) or whose chunks index does not hold.
func (r *Repository) judgeBackups(ctx context.Context, idx *index.Index, dumps []Dump, res *RepairResult) error {
	backups, err := r.Backups(ctx)
	if err != nil {
		return err
	}
	local := map[string]string{}
	for _, d := range dumps {
		local[d.Stem] = d.Path
	}
	for _, b := range backups {
		s, err := r.readManifest(ctx, b)
		if errors.Is(err, ErrCorruptObject) {
			res.SetAside = append(res.SetAside, Damage{Object: b.Object, Kind: "manifest", Err: err})
			res.Lost = append(res.Lost, LostBackup{Backup: b, Damaged: true, Dump: local[b.Name]})
			continue
		}
		if err != nil {
			return err
		}
		missing, total := 0, 0
		err = r.eachChunk(ctx, b, s, tree.Visitor{Chunk: func(c chunkplan.ChunkRef) error {
			total++
			if !idx.Has(ID(c.Hash)) {
				missing++
			}
			return nil
		}})
		if errors.Is(err, ErrCorruptObject) {
			res.Lost = append(res.Lost, LostBackup{Backup: b, Tree: err.Error(), Dump: local[b.Name]})
			continue
		}
		if err != nil {
			return err
		}
		if missing > 0 {
			res.Lost = append(res.Lost, LostBackup{Backup: b, Missing: missing, Chunks: total, Dump: local[b.Name]})
		}
	}
	return nil
}

// setAside moves an object under DamagedDir: a copy is stored there
// first, then the original is removed.
func (r *Repository) setAside(ctx context.Context, name string) error {
	size, err := r.B.Stat(ctx, name)
	if errors.Is(err, backend.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	data, err := r.B.Load(ctx, name, 0, size)
	if err != nil {
		return fmt.Errorf("setting aside %s: %w", name, err)
	}
	if err := r.B.Save(ctx, path.Join(DamagedDir, name), data); err != nil {
		return fmt.Errorf("setting aside %s: %w", name, err)
	}
	return r.B.Remove(ctx, name)
}

// hasSetAside reports whether anything lies under DamagedDir.
func (r *Repository) hasSetAside(ctx context.Context) (bool, error) {
	found := false
	err := r.B.List(ctx, DamagedDir, func(e backend.Entry) error {
		if !strings.Contains(e.Name, backend.TempMarker) {
			found = true
		}
		return nil
	})
	return found, err
}

func sortedIDs(m map[ID]int64) []ID {
	ids := make([]ID, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b ID) int { return index.Compare(&a, &b) })
	return ids
}

// salvager copies the chunks of damaged packs that still match their
// hashes into new packs, written (and checked) before the damaged packs
// are set aside; in a dry run it only counts them.
type salvager struct {
	r       *Repository
	dry     bool
	pb      pack.Builder
	entries []index.Entry
	chunks  int
	seen    map[ID]bool
}

// salvage reads pack id whole and keeps every blob that decodes to its
// hash, found from the pack's own header when it parses, else from the
// old index's entries for the pack.
func (s *salvager) salvage(ctx context.Context, id ID, size int64) error {
	r := s.r
	data, err := backend.LoadAll(ctx, r.B, packName(id), 2*int64(r.Config.PackSize)+packSlack)
	if errors.Is(err, backend.ErrTransient) || errors.Is(err, context.Canceled) {
		return err
	}
	if err != nil {
		return nil // nothing to read: nothing to salvage
	}
	var cands []index.Entry
	if pe, perr := pack.Parse(data, id, r.Config.Version); perr == nil {
		for _, e := range pe {
			cands = append(cands, index.Entry{Hash: e.Hash, Location: Location{Pack: id, Offset: e.Offset, Stored: e.Stored, Raw: e.Raw, Type: e.Type}})
		}
	} else if r.index != nil {
		for _, h := range r.indexedIn(id) {
			loc, _ := r.index.Get(h)
			cands = append(cands, index.Entry{Hash: h, Location: loc})
		}
	}
	if s.seen == nil {
		s.seen = map[ID]bool{}
	}
	for _, c := range cands {
		end := int64(c.Offset) + int64(c.Stored)
		if end > int64(len(data)) || s.seen[c.Hash] {
			continue
		}
		blob := data[c.Offset:end]
		if _, err := pack.DecodeBlob(blob, c.Location, c.Hash, nil); err != nil {
			continue
		}
		s.seen[c.Hash] = true
		s.chunks++
		if s.dry {
			s.entries = append(s.entries, index.Entry{Hash: c.Hash}) // for judging only
			continue
		}
		s.pb.Add(c.Hash, int(c.Raw), c.Type, blob)
		if s.pb.Len() >= r.Config.PackSize {
			if err := s.flush(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// flush stores the pack being built, checks it, and records its entries.
func (s *salvager) flush(ctx context.Context) error {
	if s.dry || s.pb.Len() == 0 {
		return nil
	}
	data, id, pe := s.pb.Finish(s.r.Config.Version)
	if _, err := s.r.saveContent(ctx, packName(id), data); err != nil {
		return err
	}
	if err := s.r.verifySize(ctx, packName(id), int64(len(data))); err != nil {
		return err
	}
	for _, e := range pe {
		s.entries = append(s.entries, index.Entry{Hash: e.Hash, Location: Location{Pack: id, Offset: e.Offset, Stored: e.Stored, Raw: e.Raw, Type: e.Type}})
	}
	return nil
}
