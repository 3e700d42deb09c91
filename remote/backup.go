package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/vmasync/vmasync/chunkplan"
	"github.com/vmasync/vmasync/remote/backend"
)

// dumpRE matches a vzdump VM dump name: vzdump-qemu-VMID-YYYY_MM_DD-HH_MM_SS
// with .vma and an optional compression suffix.
var dumpRE = regexp.MustCompile(`^(vzdump-qemu-([0-9]{1,9})-([0-9]{4}_[0-9]{2}_[0-9]{2}-[0-9]{2}_[0-9]{2}_[0-9]{2}))\.vma(\.zst|\.gz|\.lzo)?$`)

// stampLayout is vzdump's time stamp in dump names (local time).
const stampLayout = "2006_01_02-15_04_05"

// Dump is one vzdump VM backup file in a dump directory.
type Dump struct {
	// Path is the file's path; Stem its name without extensions
	// (vzdump-qemu-105-2026_11_21-01_00_02), the backup's name.
	Path, Stem string
	// VMID is the VM id; Stamp the time stamp of the name.
	VMID  string
	Stamp string
	// Time is Stamp as a time (in the local zone, as vzdump writes it).
	Time time.Time
}

// ParseDumpName parses a vzdump VM dump file name.
func ParseDumpName(name string) (Dump, bool) {
	m := dumpRE.FindStringSubmatch(name)
	if m == nil {
		return Dump{}, false
	}
	t, err := time.ParseInLocation(stampLayout, m[3], time.Local)
	if err != nil {
		return Dump{}, false
	}
	return Dump{Path: name, Stem: m[1], VMID: m[2], Stamp: m[3], Time: t}, true
}

// FindDumps lists the VM dumps in dir, oldest first per VM (sorted by VM
// id, then time). Files vzdump is still writing (.dat, .tmp and other
// names) are not dumps; container dumps (vzdump-lxc-*) are returned in
// skipped with a note.
func FindDumps(dir string) (dumps []Dump, skipped []string, err error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, "vzdump-lxc-") && !strings.HasSuffix(name, ".log") && !strings.HasSuffix(name, ".notes") && !strings.HasSuffix(name, ".protected") && !strings.HasSuffix(name, ".tmp") && !strings.HasSuffix(name, ".dat") {
			skipped = append(skipped, name+": container backup (only VM backups are pushed)")
			continue
		}
		d, ok := ParseDumpName(name)
		if !ok {
			continue
		}
		if !e.Type().IsRegular() { // a symlink to a dump counts, a directory does not
			if st, err := os.Stat(filepath.Join(dir, name)); err != nil || !st.Mode().IsRegular() {
				continue
			}
		}
		d.Path = filepath.Join(dir, name)
		dumps = append(dumps, d)
	}
	sort.Slice(dumps, func(i, j int) bool {
		a, b := dumps[i], dumps[j]
		if a.VMID != b.VMID {
			if len(a.VMID) != len(b.VMID) {
				return len(a.VMID) < len(b.VMID)
			}
			return a.VMID < b.VMID
		}
		if a.Stamp != b.Stamp {
			return a.Stamp < b.Stamp
		}
		return a.Path < b.Path
	})
	return dumps, skipped, nil
}

// Sidecars are the files vzdump writes next to a dump, carried with it.
// In the repository they are stored as backups/<vmid>/<stem><ext>.
var Sidecars = []string{".log", ".notes", ".protected"}

// SidecarPaths returns where Proxmox VE keeps a dump's sidecar with
// extension ext, in the order to look: pve-storage names the log after
// the dump's stem (vzdump-qemu-105-….log) but the notes and the
// protection flag after the whole archive name
// (vzdump-qemu-105-….vma.zst.notes, ….vma.zst.protected); the stem form
// of those is read as well (older vmasync and hand-made copies).
func SidecarPaths(dumpPath, ext string) []string {
	stem := strings.TrimSuffix(dumpPath, dumpExt(dumpPath))
	if ext == ".log" {
		return []string{stem + ext}
	}
	return []string{dumpPath + ext, stem + ext}
}

// SidecarPath is where a sidecar with extension ext belongs next to an
// archive written at archivePath, under Proxmox VE's names.
func SidecarPath(archivePath, ext string) string {
	if ext == ".log" {
		return strings.TrimSuffix(archivePath, dumpExt(archivePath)) + ext
	}
	return archivePath + ext
}

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
		for _, ext := range Sidecars {
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
		d, ok := ParseDumpName(stem + ".vma")
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
