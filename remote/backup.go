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

// Manifest downloads and parses a backup's manifest. A manifest that does
// not parse (or is larger than any manifest can be) is reported as an
// error wrapping ErrCorruptObject, naming the backup and the object.
func (r *Repository) Manifest(ctx context.Context, b Backup) (*chunkplan.Manifest, error) {
	data, err := backend.LoadAll(ctx, r.B, b.Object, maxManifest)
	if err != nil && !errors.Is(err, backend.ErrNotFound) && !errors.Is(err, backend.ErrTransient) && !errors.Is(err, context.Canceled) {
		err = fmt.Errorf("%w: %v", ErrCorruptObject, err)
	}
	if err != nil {
		return nil, fmt.Errorf("backup %s: reading the manifest %s: %w", b.Name, b.Object, err)
	}
	m, err := chunkplan.ReadManifest(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("backup %s: manifest %s: %w: %w", b.Name, b.Object, ErrCorruptObject, err)
	}
	return m, nil
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
	want, err := chunkplan.ManifestSize(prefix)
	if err == nil && want != size {
		err = fmt.Errorf("%d bytes, its header says %d", size, want)
	}
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return BackupDamaged, fmt.Sprintf("manifest %s is damaged: %v", name, err), nil
	}
	r.mu.Lock()
	suspect := len(r.damage) > 0 || r.dropped > 0 || r.hasDamagedDir
	r.mu.Unlock()
	if !suspect && err == nil {
		return BackupComplete, "", nil
	}
	m, err := r.Manifest(ctx, Backup{VMID: vmid, Name: stem, Object: name})
	if errors.Is(err, ErrCorruptObject) {
		return BackupDamaged, err.Error(), nil
	}
	if err != nil {
		return 0, "", err
	}
	missing := 0
	for _, c := range m.Chunks {
		if _, ok := r.Lookup(ID(c.Hash)); !ok {
			missing++
		}
	}
	if missing > 0 {
		return BackupDamaged, fmt.Sprintf("%d of its %d chunks are no longer stored", missing, len(m.Chunks)), nil
	}
	return BackupComplete, "", nil
}
