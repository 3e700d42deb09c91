// Package vzdump knows the files vzdump writes into a dump directory: the
// names of VM dumps (vzdump-qemu-<vmid>-<stamp>.vma[.zst|.gz|.lzo]), how
// to find them, and where Proxmox VE keeps each dump's log, notes and
// protection flag. It is the project's one parser of those names.
package vzdump

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

// dumpRE matches a vzdump VM dump name: vzdump-qemu-VMID-YYYY_MM_DD-HH_MM_SS
// with .vma and an optional compression suffix.
var dumpRE = regexp.MustCompile(`^(vzdump-qemu-([0-9]{1,9})-([0-9]{4}_[0-9]{2}_[0-9]{2}-[0-9]{2}_[0-9]{2}_[0-9]{2}))\.vma(\.zst|\.gz|\.lzo)?$`)

// StampLayout is vzdump's time stamp in dump names (local time).
const StampLayout = "2006_01_02-15_04_05"

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

// ParseName parses a vzdump VM dump file name.
func ParseName(name string) (Dump, bool) {
	m := dumpRE.FindStringSubmatch(name)
	if m == nil {
		return Dump{}, false
	}
	t, err := time.ParseInLocation(StampLayout, m[3], time.Local)
	if err != nil {
		return Dump{}, false
	}
	return Dump{Path: name, Stem: m[1], VMID: m[2], Stamp: m[3], Time: t}, true
}

// Find lists the VM dumps in dir, oldest first per VM (sorted by VM
// id, then time). Files vzdump is still writing (.dat, .tmp and other
// names) are not dumps; container dumps (vzdump-lxc-*) are returned in
// skipped with a note.
func Find(dir string) (dumps []Dump, skipped []string, err error) {
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
		d, ok := ParseName(name)
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
	stem := strings.TrimSuffix(dumpPath, Ext(dumpPath))
	if ext == ".log" {
		return []string{stem + ext}
	}
	return []string{dumpPath + ext, stem + ext}
}

// SidecarPath is where a sidecar with extension ext belongs next to an
// archive written at archivePath, under Proxmox VE's names.
func SidecarPath(archivePath, ext string) string {
	if ext == ".log" {
		return strings.TrimSuffix(archivePath, Ext(archivePath)) + ext
	}
	return archivePath + ext
}

// Ext is the ".vma[.zst|.gz|.lzo]" suffix of a dump path.
func Ext(p string) string {
	if i := strings.LastIndex(p, ".vma"); i >= 0 {
		return p[i:]
	}
	return ""
}
