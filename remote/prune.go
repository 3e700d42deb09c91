package remote

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/vmasync/vmasync/remote/backend"
	"github.com/vmasync/vmasync/remote/index"
	"github.com/vmasync/vmasync/remote/pack"
)

// KeepRules are Proxmox VE's retention options (vzdump --prune-backups,
// PBS prune). Zero means the rule is not set.
type KeepRules struct {
	Last, Hourly, Daily, Weekly, Monthly, Yearly int
	// All keeps every backup (as do rules that are all zero).
	All bool
}

// String is the rules as PVE writes them (keep-daily=7,keep-weekly=4).
func (k KeepRules) String() string {
	if k.All || k.none() {
		return "keep-all=1"
	}
	var s []string
	for _, r := range k.rules() {
		if r.n > 0 {
			s = append(s, fmt.Sprintf("%s=%d", r.name, r.n))
		}
	}
	return strings.Join(s, ",")
}

func (k KeepRules) none() bool {
	return k.Last <= 0 && k.Hourly <= 0 && k.Daily <= 0 && k.Weekly <= 0 && k.Monthly <= 0 && k.Yearly <= 0
}

type keepRule struct {
	name string
	n    int
	id   func(t time.Time) string
}

// rules in PVE's order; the period ids use the backup's local time as
// strftime's %Y/%m/%d/%H, %G/%V (ISO week) do.
func (k KeepRules) rules() []keepRule {
	return []keepRule{
		{"keep-last", k.Last, nil},
		{"keep-hourly", k.Hourly, func(t time.Time) string { return t.Format("2006/01/02/15") }},
		{"keep-daily", k.Daily, func(t time.Time) string { return t.Format("2006/01/02") }},
		{"keep-weekly", k.Weekly, func(t time.Time) string { y, w := t.ISOWeek(); return fmt.Sprintf("%04d/%02d", y, w) }},
		{"keep-monthly", k.Monthly, func(t time.Time) string { return t.Format("2006/01") }},
		{"keep-yearly", k.Yearly, func(t time.Time) string { return t.Format("2006") }},
	}
}

// Mark is a prune decision for one backup.
type Mark struct {
	Backup Backup
	// Keep is the decision; Reason the rule that keeps it ("keep-daily",
	// "protected", "keep-all") or why it goes.
	Keep   bool
	Reason string
}

// MarkBackups applies the keep rules to each VM's backups, as PVE's
// prune_mark_backup_group does: backups newest first; protected backups
// are kept and not counted; each rule in turn keeps the newest backup of
// each of its next N periods (hours, days, ...) that no earlier rule has
// covered, marking the other backups of a period it takes as removed; what
// no rule keeps is removed. Marks are returned in the order of backups.
func MarkBackups(backups []Backup, k KeepRules) []Mark {
	byVM := map[string][]int{}
	for i, b := range backups {
		byVM[b.VMID] = append(byVM[b.VMID], i)
	}
	marks := make([]Mark, len(backups))
	for i, b := range backups {
		marks[i].Backup = b
	}
	for _, idx := range byVM {
		sort.SliceStable(idx, func(a, b int) bool { return backups[idx[a]].Time.After(backups[idx[b]].Time) })
		decided := map[int]bool{}
		for _, i := range idx {
			if backups[i].Protected {
				marks[i] = Mark{Backup: backups[i], Keep: true, Reason: "protected"}
				decided[i] = true
			}
		}
		if k.All || k.none() {
			for _, i := range idx {
				if !decided[i] {
					marks[i] = Mark{Backup: backups[i], Keep: true, Reason: "keep-all"}
				}
			}
			continue
		}
		for _, rule := range k.rules() {
			if rule.n <= 0 {
				continue
			}
			id := rule.id
			if id == nil { // keep-last: every backup is its own period
				id = func(t time.Time) string { return t.String() }
			}
			already := map[string]bool{}
			for _, i := range idx {
				if decided[i] && marks[i].Keep && marks[i].Reason != "protected" {
					already[id(backups[i].Time)] = true
				}
			}
			newly := map[string]bool{}
			for _, i := range idx {
				p := id(backups[i].Time)
				if decided[i] || already[p] {
					continue
				}
				if !newly[p] {
					if len(newly) >= rule.n {
						break
					}
					newly[p] = true
					marks[i] = Mark{Backup: backups[i], Keep: true, Reason: rule.name}
				} else {
					marks[i] = Mark{Backup: backups[i], Keep: false, Reason: "a newer backup of the same period is kept by " + rule.name}
				}
				decided[i] = true
			}
		}
		for _, i := range idx {
			if !decided[i] {
				marks[i] = Mark{Backup: backups[i], Keep: false, Reason: "kept by no rule"}
			}
		}
	}
	return marks
}

// Forget removes the backups' manifests (first, so that they disappear at
// once) and sidecars. Their data stays until GC.
func (r *Repository) Forget(ctx context.Context, backups []Backup) error {
	for _, b := range backups {
		if b.Protected {
			return fmt.Errorf("backup %s is protected", b.Name)
		}
		if err := r.B.Remove(ctx, b.Object); err != nil {
			return fmt.Errorf("removing %s: %w", b.Name, err)
		}
		for _, obj := range b.Sidecars {
			if err := r.B.Remove(ctx, obj); err != nil {
				return fmt.Errorf("removing %s: %w", obj, err)
			}
		}
	}
	return nil
}

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
	res := &GCResult{}
	if !opt.DryRun {
		n, err := r.removeTemps(ctx)
		if err != nil {
			return nil, err
		}
		res.TempRemoved = n
	}
	if _, err := r.LoadIndex(ctx, !opt.DryRun); err != nil {
		return nil, err
	}
	used, unreadable, err := r.usedChunks(ctx, opt.Without)
	if err != nil {
		return nil, err
	}
	all, indexNames, err := r.allEntries(ctx)
	if err != nil {
		return nil, err
	}
	keep := map[ID]bool{} // damaged packs: never deleted or repacked by GC
	var badIndex []string // damaged index objects: derived data, rebuilt from the packs' headers
	for _, d := range r.Damage() {
		switch d.Kind {
		case "pack":
			id, _ := parseID(strings.TrimSuffix(path.Base(d.Object), packSuffix))
			keep[id] = true
			res.Kept = append(res.Kept, d.Object)
		case "index":
			badIndex = append(badIndex, d.Object)
		}
	}
	for _, size := range r.packs {
		res.BytesBefore += size
	}
	res.PacksBefore = len(r.packs)
	if len(unreadable) > 0 {
		res.Skipped = fmt.Sprintf("the manifest of %s cannot be read, so what it references is unknown (push its dump again, or 'vmasync repair' to set it aside)", strings.Join(unreadable, ", "))
		res.PacksAfter, res.BytesAfter, res.IndexObjects = res.PacksBefore, res.BytesBefore, len(indexNames)
		return res, nil
	}

	// For each used chunk keep one location: the one the index holds.
	type packUse struct{ used, total int64 }
	use := map[ID]*packUse{}
	for id := range r.packs {
		if !keep[id] {
			use[id] = &packUse{}
		}
	}
	for _, e := range all {
		u := use[e.Pack]
		if u == nil {
			continue
		}
		u.total += int64(e.Stored)
		if loc, ok := r.index.Get(e.Hash); ok && used[e.Hash] && loc.Pack == e.Pack && loc.Offset == e.Offset {
			u.used += int64(e.Stored)
		}
	}
	var drop, repack []ID
	for id, u := range use {
		switch {
		case u.used == 0 && u.total > 0:
			drop = append(drop, id)
		case u.used == 0:
			// Listed but in no index and no readable header: LoadIndex
			// reported it as damaged; never deleted unproven.
		case float64(u.total-u.used) >= opt.RepackThreshold*float64(u.total):
			repack = append(repack, id)
		}
	}
	slices.SortFunc(repack, func(a, b ID) int { return index.Compare(&a, &b) })
	gone := map[ID]bool{}
	for _, id := range drop {
		gone[id] = true
	}
	for _, id := range repack {
		gone[id] = true
	}

	moved := map[ID]Location{} // repacked chunk -> its new place
	var newPacks map[ID]int64
	if len(repack) > 0 && opt.DryRun {
		var usedBytes int64
		for _, id := range repack {
			usedBytes += use[id].used
		}
		res.BytesAfter += usedBytes
		res.PacksAfter += int((usedBytes + int64(r.Config.PackSize) - 1) / int64(r.Config.PackSize))
	} else if len(repack) > 0 {
		var failed []ID
		newPacks, failed, err = r.repack(ctx, repack, used, moved)
		if err != nil {
			return nil, err
		}
		for _, id := range failed {
			delete(gone, id) // unreadable: kept, reported
			res.Kept = append(res.Kept, packName(id))
		}
		for id, size := range newPacks {
			delete(gone, id) // a new pack never has the name of one GC deletes
			res.BytesAfter += size
		}
	}
	for id := range gone {
		if slices.Contains(drop, id) {
			res.Deleted++
		} else {
			res.Repacked++
		}
	}
	for id, size := range r.packs {
		if !gone[id] && newPacks[id] == 0 {
			res.BytesAfter += size
		}
	}
	res.PacksAfter += len(r.packs) - len(gone) + len(newPacks)
	for id := range newPacks {
		if _, ok := r.packs[id]; ok {
			res.PacksAfter--
		}
	}
	if opt.DryRun || (len(gone) == 0 && len(indexNames) <= 1 && len(badIndex) == 0) {
		res.IndexObjects = len(indexNames)
		return res, nil
	}

	// The new index: every used chunk where it now is.
	var live []index.Entry
	for h := range used {
		if loc, ok := moved[h]; ok {
			live = append(live, index.Entry{Hash: h, Location: loc})
		} else if loc, ok := r.index.Get(h); ok && !gone[loc.Pack] {
			live = append(live, index.Entry{Hash: h, Location: loc})
		}
	}
	slices.SortFunc(live, func(a, b index.Entry) int { return index.Compare(&a.Hash, &b.Hash) })
	written := map[string]bool{}
	for len(live) > 0 {
		part := live[:min(len(live), indexEvery)]
		live = live[len(part):]
		id, size, err := r.writeIndex(ctx, part)
		if err != nil {
			return nil, err
		}
		if err := r.verifySize(ctx, indexName(id), int64(size)); err != nil {
			return nil, err
		}
		written[indexName(id)] = true
		res.IndexObjects++
	}
	// The old index objects, the damaged ones too: LoadIndex indexed
	// every pack they could describe again from its header.
	for _, n := range append(indexNames, badIndex...) {
		if !written[n] {
			if err := r.B.Remove(ctx, n); err != nil {
				return nil, err
			}
		}
	}
	for id := range gone {
		if err := r.B.Remove(ctx, packName(id)); err != nil {
			return nil, err
		}
	}
	if _, err := r.LoadIndex(ctx, false); err != nil {
		return nil, err
	}
	return res, nil
}

// usedChunks returns the chunks that the backups (but those in without)
// reference, and the names of backups whose manifest cannot be read.
func (r *Repository) usedChunks(ctx context.Context, without []Backup) (map[ID]bool, []string, error) {
	backups, err := r.Backups(ctx)
	if err != nil {
		return nil, nil, err
	}
	skip := map[string]bool{} // backup names hold the VM id
	for _, b := range without {
		skip[b.Name] = true
	}
	used := map[ID]bool{}
	var unreadable []string
	for _, b := range backups {
		if skip[b.Name] {
			continue
		}
		m, err := r.Manifest(ctx, b)
		if errors.Is(err, ErrCorruptObject) {
			r.warnf("%v", err)
			unreadable = append(unreadable, b.Name)
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		for _, c := range m.Chunks {
			used[ID(c.Hash)] = true
		}
	}
	return used, unreadable, nil
}

// repack copies the used chunks of the packs ids into new packs, checking
// each chunk against its hash, and records their new places in moved. It
// returns the new packs (stored and checked) and the packs it could not
// read or found damaged, which the caller keeps.
func (r *Repository) repack(ctx context.Context, ids []ID, used map[ID]bool, moved map[ID]Location) (map[ID]int64, []ID, error) {
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
			if !used[e.Hash] || !ok || loc.Pack != pid || loc.Offset != e.Offset {
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

// allEntries reads every readable index object and returns all entries
// (including duplicates and entries of removed packs) and the names of
// the objects read. Damaged index objects are left out (LoadIndex
// reported them; their packs were indexed again from their headers).
func (r *Repository) allEntries(ctx context.Context) ([]index.Entry, []string, error) {
	names, err := r.indexObjects(ctx)
	if err != nil {
		return nil, nil, err
	}
	var all []index.Entry
	var read []string
	for _, n := range names {
		e, err := r.readIndexObject(ctx, n)
		if errors.Is(err, ErrCorruptObject) || errors.Is(err, backend.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		all = append(all, e...)
		read = append(read, n)
	}
	return all, read, nil
}
