package remote

import (
	"context"

	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/rclone/rclone/fs"
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
		if err := r.removeObject(ctx, b.Object); err != nil {
			return fmt.Errorf("removing %s: %w", b.Name, err)
		}
		for _, obj := range b.Sidecars {
			if err := r.removeObject(ctx, obj); err != nil {
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
}

// GC deletes the packs no backup uses, rewrites mostly unused ones, and
// replaces all index objects with one for the remaining packs. The caller
// must hold the exclusive lock. Crash-safe order: new packs, new index,
// then deletion of old indexes and packs.
func (r *Repository) GC(ctx context.Context, opt GCOptions) (*GCResult, error) {
	if opt.RepackThreshold <= 0 || opt.RepackThreshold > 1 {
		opt.RepackThreshold = 0.5
	}
	res := &GCResult{}
	if _, err := r.LoadIndex(ctx, !opt.DryRun); err != nil {
		return nil, err
	}
	// Every entry of every index and readable orphan pack.
	all, indexNames, err := r.allEntries(ctx)
	if err != nil {
		return nil, err
	}
	used := map[ID]bool{}
	backups, err := r.Backups(ctx)
	if err != nil {
		return nil, err
	}
	without := map[string]bool{} // backup names hold the VM id
	for _, b := range opt.Without {
		without[b.Name] = true
	}
	for _, b := range backups {
		if without[b.Name] {
			continue
		}
		m, err := r.Manifest(ctx, b)
		if err != nil {
			return nil, err
		}
		for _, c := range m.Chunks {
			used[ID(c.Hash)] = true
		}
	}
	for _, size := range r.packs {
		res.BytesBefore += size
	}
	res.PacksBefore = len(r.packs)

	// For each used chunk keep one location: the one the index holds.
	type packUse struct{ used, total int64 }
	use := map[ID]*packUse{}
	for id := range r.packs {
		use[id] = &packUse{}
	}
	for _, e := range all {
		u := use[e.Pack]
		if u == nil {
			continue
		}
		u.total += int64(e.Stored)
		if loc, ok := r.index.get(e.Hash); ok && used[e.Hash] && loc.Pack == e.Pack && loc.Offset == e.Offset {
			u.used += int64(e.Stored)
		}
	}
	var drop, repack []ID
	for id, u := range use {
		switch {
		case u.used == 0:
			drop = append(drop, id)
		case float64(u.total-u.used) >= opt.RepackThreshold*float64(u.total):
			repack = append(repack, id)
		}
	}
	sort.Slice(repack, func(i, j int) bool { return repack[i].String() < repack[j].String() })
	gone := map[ID]bool{}
	for _, id := range drop {
		gone[id] = true
	}
	for _, id := range repack {
		gone[id] = true
	}
	res.Deleted, res.Repacked = len(drop), len(repack)

	// Live entries of kept packs, then the repacked chunks.
	var live []indexEntryOf
	for h := range used {
		if loc, ok := r.index.get(h); ok && !gone[loc.Pack] {
			live = append(live, indexEntryOf{Hash: h, Location: loc})
		}
	}
	var newPacks []ID
	estimated := 0
	if len(repack) > 0 && opt.DryRun {
		var usedBytes int64
		for _, id := range repack {
			usedBytes += use[id].used
		}
		res.BytesAfter += usedBytes
		estimated = int((usedBytes + int64(r.Config.PackSize) - 1) / int64(r.Config.PackSize))
	} else if len(repack) > 0 {
		var pb packBuilder
		flush := func() error {
			if pb.len() == 0 {
				return nil
			}
			data, id, entries := pb.finish(r.Config.Version)
			if !opt.DryRun {
				if err := putObject(ctx, r.Fs, packName(id), data); err != nil {
					return err
				}
			}
			newPacks = append(newPacks, id)
			res.BytesAfter += int64(len(data))
			for _, e := range entries {
				live = append(live, indexEntryOf{Hash: e.Hash, Location: Location{Pack: id, Offset: e.Offset, Stored: e.Stored, Raw: e.Raw, Type: e.Type}})
			}
			return nil
		}
		for _, pid := range repack {
			data, err := getObject(ctx, r.Fs, packName(pid))
			if err != nil {
				return nil, fmt.Errorf("repacking %s: %w", pid.Short(), err)
			}
			entries, err := parsePack(data, pid, r.Config.Version)
			if err != nil {
				return nil, fmt.Errorf("repacking: %w (run 'vmasync check --read-data')", err)
			}
			for _, e := range entries {
				loc, ok := r.index.get(e.Hash)
				if !used[e.Hash] || !ok || loc.Pack != pid || loc.Offset != e.Offset {
					continue
				}
				blob := data[e.Offset : e.Offset+e.Stored]
				if _, err := decodeBlob(blob, loc, e.Hash, nil); err != nil {
					return nil, fmt.Errorf("repacking: %w (run 'vmasync check --read-data')", err)
				}
				pb.add(e.Hash, int(e.Raw), e.Type, blob)
				if pb.len() >= r.Config.PackSize {
					if err := flush(); err != nil {
						return nil, err
					}
				}
			}
		}
		if err := flush(); err != nil {
			return nil, err
		}
	}
	for id, size := range r.packs {
		if !gone[id] {
			res.BytesAfter += size
		}
	}
	res.PacksAfter = len(r.packs) - len(gone) + len(newPacks) + estimated
	if opt.DryRun || (len(gone) == 0 && len(indexNames) <= 1) {
		res.IndexObjects = len(indexNames)
		return res, nil
	}
	sort.Slice(live, func(i, j int) bool { return live[i].Hash.String() < live[j].Hash.String() })
	newIndex := ""
	if len(live) > 0 {
		id, _, err := r.writeIndex(ctx, live)
		if err != nil {
			return nil, err
		}
		newIndex = indexName(id)
		res.IndexObjects = 1
	}
	for _, n := range indexNames {
		if n != newIndex {
			if err := r.removeObject(ctx, n); err != nil {
				return nil, err
			}
		}
	}
	for id := range gone {
		if err := r.removeObject(ctx, packName(id)); err != nil {
			return nil, err
		}
	}
	if _, err := r.LoadIndex(ctx, false); err != nil {
		return nil, err
	}
	return res, nil
}

// allEntries reads every index object and returns all entries (including
// duplicates and entries of removed packs) and the index object names.
// Packs without an index entry were indexed by LoadIndex(write) before.
func (r *Repository) allEntries(ctx context.Context) ([]indexEntryOf, []string, error) {
	var names []string
	if err := list(ctx, r.Fs, IndexDir, func(o fs.Object) {
		if strings.HasSuffix(o.Remote(), indexSuffix) {
			names = append(names, o.Remote())
		}
	}); err != nil {
		return nil, nil, err
	}
	var all []indexEntryOf
	for _, n := range names {
		id, ok := parseID(strings.TrimSuffix(n[strings.LastIndexByte(n, '/')+1:], indexSuffix))
		if !ok {
			continue
		}
		b, err := getObject(ctx, r.Fs, n)
		if err != nil {
			return nil, nil, err
		}
		e, err := decodeIndex(b, id)
		if err != nil {
			return nil, nil, err
		}
		all = append(all, e...)
	}
	return all, names, nil
}
