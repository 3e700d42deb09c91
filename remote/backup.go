package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/vmasync/vmasync/chunkplan"
	"github.com/vmasync/vmasync/internal/vzdump"
	"github.com/vmasync/vmasync/remote/backend"
	"github.com/vmasync/vmasync/remote/tree"
)

// Backup is one backup stored in the repository.
type Backup struct {
	// VMID and Name (the dump's stem) identify it; Stamp and Time come
	// from the name.
	VMID, Name, Stamp string
	Time              time.Time
	// Object is the manifest's object name.
	Object string
	// Sidecars maps ".log", ".notes", ".protected" to their object names
	// where they exist.
	Sidecars map[string]string
	// Protected is true if a .protected sidecar was pushed.
	Protected bool
}

// backupObject is the object name of a backup's manifest or sidecar.
func backupObject(vmid, stem, ext string) string {
	return BackupsDir + "/" + vmid + "/" + stem + ext
}

// Backups lists the complete backups (those with a manifest), sorted by
// VM id and time.
func (r *Repository) Backups(ctx context.Context) ([]Backup, error) {
	byName := map[string]*Backup{}
	side := map[string]map[string]string{}
	err := r.list(ctx, BackupsDir, func(o backend.Entry) {
		rel := o.Name
		dir, base := path.Split(rel)
		vmid := path.Base(dir)
		for _, ext := range vzdump.Sidecars {
			if stem, ok := strings.CutSuffix(base, ext); ok {
				if side[stem] == nil {
					side[stem] = map[string]string{}
				}
				side[stem][ext] = rel
				return
			}
		}
		stem, ok := strings.CutSuffix(base, ManifestExt)
		if !ok {
			return
		}
		d, ok := vzdump.ParseName(stem + ".vma")
		if !ok || d.VMID != vmid {
			r.warnf("ignoring %s: not a vzdump backup name", rel)
			return
		}
		byName[stem] = &Backup{VMID: vmid, Name: stem, Stamp: d.Stamp, Time: d.Time, Object: rel}
	})
	if err != nil {
		return nil, fmt.Errorf("listing backups: %w", err)
	}
	out := make([]Backup, 0, len(byName))
	for stem, b := range byName {
		b.Sidecars = side[stem]
		_, b.Protected = b.Sidecars[".protected"]
		out = append(out, *b)
	}
	sortBackups(out)
	return out, nil
}

func sortBackups(b []Backup) {
	sort.Slice(b, func(i, j int) bool {
		if b[i].VMID != b[j].VMID {
			if len(b[i].VMID) != len(b[j].VMID) {
				return len(b[i].VMID) < len(b[j].VMID)
			}
			return b[i].VMID < b[j].VMID
		}
		return b[i].Stamp < b[j].Stamp
	})
}

// storedManifest is a backup's manifest object as read: a chunkplan
// manifest with its chunks (repository format 1 and 2), or, in format 3,
// the manifest without chunks and the root of its chunk tree.
type storedManifest struct {
	m    *chunkplan.Manifest
	tree *tree.Ref
}

// readManifest downloads and parses a backup's manifest object. One that
// does not parse (or is larger than any can be) is reported as an error
// wrapping ErrCorruptObject, naming the backup and the object.
func (r *Repository) readManifest(ctx context.Context, b Backup) (*storedManifest, error) {
	data, err := backend.LoadAll(ctx, r.B, b.Object, maxManifest)
	if err != nil && !errors.Is(err, backend.ErrNotFound) && !errors.Is(err, backend.ErrTransient) && !errors.Is(err, context.Canceled) {
		err = fmt.Errorf("%w: %v", ErrCorruptObject, err)
	}
	if err != nil {
		return nil, fmt.Errorf("backup %s: reading the manifest %s: %w", b.Name, b.Object, err)
	}
	if isRoot(data) {
		m, t, err := decodeRoot(data)
		if err != nil {
			return nil, fmt.Errorf("backup %s: manifest %s: %w: %w", b.Name, b.Object, ErrCorruptObject, err)
		}
		return &storedManifest{m: m, tree: &t}, nil
	}
	m, err := chunkplan.ReadManifest(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("backup %s: manifest %s: %w: %w", b.Name, b.Object, ErrCorruptObject, err)
	}
	return &storedManifest{m: m}, nil
}

// eachChunk calls v.Chunk for every chunk of the backup in order (and,
// for a tree, v.Node for its nodes; see tree.Walk). A tree node that is
// missing or damaged fails it with ErrCorruptObject, naming the backup.
func (r *Repository) eachChunk(ctx context.Context, b Backup, s *storedManifest, v tree.Visitor) error {
	if s.tree == nil {
		if v.Chunk == nil {
			return nil
		}
		for _, c := range s.m.Chunks {
			if err := v.Chunk(c); err != nil {
				return err
			}
		}
		return nil
	}
	if err := r.walkTree(ctx, s.m, *s.tree, v); err != nil {
		return fmt.Errorf("backup %s: chunk list: %w", b.Name, err)
	}
	return nil
}

// Manifest returns a backup's manifest with every chunk: the manifest
// object itself (format 1 and 2), or built from the backup's root object
// and its chunk tree (format 3). Damage (of the object or of a tree node)
// is reported as an error wrapping ErrCorruptObject that names the backup.
func (r *Repository) Manifest(ctx context.Context, b Backup) (*chunkplan.Manifest, error) {
	s, err := r.readManifest(ctx, b)
	if err != nil || s.tree == nil {
		return s.manifest(), err
	}
	m := s.m
	m.Chunks = make([]chunkplan.ChunkRef, 0, min(s.tree.Chunks, 1<<20))
	err = r.eachChunk(ctx, b, s, tree.Visitor{Chunk: func(c chunkplan.ChunkRef) error {
		m.Chunks = append(m.Chunks, c)
		return nil
	}})
	if err != nil {
		return nil, err
	}
	return m, nil
}

func (s *storedManifest) manifest() *chunkplan.Manifest {
	if s == nil {
		return nil
	}
	return s.m
}

// manifestWhole checks a manifest object without its chunks: a root
// object parses; a chunkplan manifest is as long as its header says
// (io.ErrUnexpectedEOF when prefix is too short to tell). damage says
// what is wrong; err is a failure to read the rest of a root object.
func manifestWhole(ctx context.Context, b backend.Backend, name string, prefix []byte, size int64) (damage, err error) {
	if isRoot(prefix) {
		if size > maxRoot {
			return fmt.Errorf("%d bytes, a root object has at most %d", size, maxRoot), nil
		}
		data := prefix
		if int64(len(prefix)) < size {
			if data, err = b.Load(ctx, name, 0, size); err != nil {
				return nil, err
			}
		}
		_, _, damage = decodeRoot(data)
		return damage, nil
	}
	want, damage := chunkplan.ManifestSize(prefix)
	if damage == nil && want != size {
		damage = fmt.Errorf("%d bytes, its header says %d", size, want)
	}
	return damage, nil
}

// Select finds the backup of vmid named by sel: "" or "latest" (the
// newest), a vzdump time stamp (2026_11_21-01_00_02) or a date-time
// (2026-11-21T01:00:02, 2026-11-21 01:00:02); unique prefixes of a stamp
// (2026_11_21) also match.
func Select(backups []Backup, vmid, sel string) (Backup, error) {
	var mine []Backup
	for _, b := range backups {
		if b.VMID == vmid {
			mine = append(mine, b)
		}
	}
	if len(mine) == 0 {
		return Backup{}, fmt.Errorf("no backup of VM %s on the remote", vmid)
	}
	if sel == "" || sel == "latest" {
		return mine[len(mine)-1], nil
	}
	stamp := sel
	if len(sel) >= 10 && sel[4] == '-' && sel[7] == '-' { // ISO date: 2026-11-21T01:00:02
		stamp = strings.ReplaceAll(sel[:10], "-", "_") + strings.NewReplacer(":", "_", "T", "-", " ", "-").Replace(sel[10:])
	}
	var found []Backup
	for _, b := range mine {
		if b.Stamp == stamp {
			return b, nil
		}
		if strings.HasPrefix(b.Stamp, stamp) {
			found = append(found, b)
		}
	}
	switch len(found) {
	case 0:
		return Backup{}, fmt.Errorf("VM %s has no backup at %s (see 'vmasync snapshots')", vmid, sel)
	case 1:
		return found[0], nil
	}
	return Backup{}, fmt.Errorf("VM %s has %d backups matching %s; give the full time stamp (e.g. %s)", vmid, len(found), sel, found[0].Stamp)
}

// HasBackup reports whether the repository holds a manifest for the
// backup named stem of vmid (complete or not: see BackupState).
func (r *Repository) HasBackup(ctx context.Context, vmid, stem string) (bool, error) {
	_, err := r.B.Stat(ctx, backupObject(vmid, stem, ManifestExt))
	if errors.Is(err, backend.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// BackupState says whether a backup is stored and usable.
type BackupState int

const (
	// BackupAbsent: no manifest.
	BackupAbsent BackupState = iota
	// BackupComplete: the manifest is whole and, as far as the index and
	// the listing of packs tell, every chunk it needs is stored.
	BackupComplete
	// BackupDamaged: the manifest is damaged, or chunks it needs are gone.
	BackupDamaged
)

// BackupState checks the backup stem of vmid without downloading packs:
// the manifest's size against its header (a truncated manifest is
// damaged), and, after LoadIndex set aside damaged objects or dropped
// entries, every chunk of the manifest against the index. The index must
// be loaded. reason says what is wrong with a damaged backup.
func (r *Repository) BackupState(ctx context.Context, vmid, stem string) (st BackupState, reason string, err error) {
	name := backupObject(vmid, stem, ManifestExt)
	size, err := r.B.Stat(ctx, name)
	if errors.Is(err, backend.ErrNotFound) {
		return BackupAbsent, "", nil
	}
	if err != nil {
		return 0, "", err
	}
	prefix, err := r.B.Load(ctx, name, 0, min(size, 64<<10))
	if err != nil {
		return 0, "", err
	}
	bad, err := manifestWhole(ctx, r.B, name, prefix, size)
	if err != nil {
		return 0, "", err
	}
	if bad != nil && !errors.Is(bad, io.ErrUnexpectedEOF) {
		return BackupDamaged, fmt.Sprintf("manifest %s is damaged: %v", name, bad), nil
	}
	r.mu.Lock()
	suspect := len(r.damage) > 0 || r.dropped > 0 || r.hasDamagedDir
	r.mu.Unlock()
	if !suspect && bad == nil {
		return BackupComplete, "", nil
	}
	b := Backup{VMID: vmid, Name: stem, Object: name}
	s, err := r.readManifest(ctx, b)
	missing, total := 0, 0
	if err == nil {
		err = r.eachChunk(ctx, b, s, tree.Visitor{Chunk: func(c chunkplan.ChunkRef) error {
			total++
			if _, ok := r.Lookup(ID(c.Hash)); !ok {
				missing++
			}
			return nil
		}})
	}
	if errors.Is(err, ErrCorruptObject) {
		return BackupDamaged, err.Error(), nil
	}
	if err != nil {
		return 0, "", err
	}
	if missing > 0 {
		return BackupDamaged, fmt.Sprintf("%d of its %d chunks are no longer stored", missing, total), nil
	}
	return BackupComplete, "", nil
}
