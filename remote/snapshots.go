package remote

import (
	"context"
	"errors"
	"time"

	"github.com/vmasync/vmasync/chunkplan"
	"github.com/vmasync/vmasync/remote/backend"
	"github.com/vmasync/vmasync/remote/index"
)

// Snapshot is one backup as listed by Snapshots.
type Snapshot struct {
	VMID string    `json:"vmid"`
	Name string    `json:"backup"`
	Time time.Time `json:"time"`
	// Size is the optimized archive's size; NewBytes the bytes in chunks
	// the VM's previous backup did not have (all of Size for the first).
	Size     uint64 `json:"size"`
	NewBytes uint64 `json:"new_bytes"`
	// Disks is the number of devices; Source the dump file it came from.
	Disks     int    `json:"disks"`
	Source    string `json:"source"`
	Protected bool   `json:"protected"`
	// Damaged says what is wrong with a backup whose manifest cannot be
	// read ("" for a readable one).
	Damaged string `json:"damaged,omitempty"`
}

// Snapshots lists the backups (of the given VM ids, or all) with their
// sizes and what each added over the VM's previous backup.
func (r *Repository) Snapshots(ctx context.Context, vmids []string) ([]Snapshot, error) {
	backups, err := r.Backups(ctx)
	if err != nil {
		return nil, err
	}
	want := map[string]bool{}
	for _, id := range vmids {
		want[id] = true
	}
	var out []Snapshot
	var prev *chunkplan.Manifest
	prevVM := ""
	for _, b := range backups {
		if len(want) > 0 && !want[b.VMID] {
			continue
		}
		m, err := r.snapshotManifest(ctx, b)
		if errors.Is(err, ErrCorruptObject) {
			// Listed, marked damaged; the other backups are listed as usual.
			out = append(out, Snapshot{VMID: b.VMID, Name: b.Name, Time: b.Time, Protected: b.Protected, Damaged: err.Error()})
			prev = nil
			continue
		}
		if err != nil {
			return nil, err
		}
		s := Snapshot{VMID: b.VMID, Name: b.Name, Time: b.Time, Size: m.ArchiveSize, NewBytes: m.ArchiveSize,
			Disks: len(m.Devices), Source: m.Source, Protected: b.Protected}
		if prev != nil && prevVM == b.VMID && prev.Params == m.Params {
			s.NewBytes = chunkplan.Compare(prev, m).NewBytes
		}
		prev, prevVM = m, b.VMID
		out = append(out, s)
	}
	return out, nil
}

// snapshotManifest is Manifest for Snapshots, which loads the index only
// when a backup's chunks are a tree (format 3) whose nodes it must find.
func (r *Repository) snapshotManifest(ctx context.Context, b Backup) (*chunkplan.Manifest, error) {
	r.mu.Lock()
	loaded := r.index != nil
	r.mu.Unlock()
	if !loaded {
		s, err := r.readManifest(ctx, b)
		if err != nil || s.tree == nil {
			return s.manifest(), err
		}
		if _, err := r.LoadIndex(ctx, false); err != nil {
			return nil, err
		}
	}
	return r.Manifest(ctx, b)
}

// Object downloads a small object of the repository (a sidecar).
func (r *Repository) Object(ctx context.Context, name string) ([]byte, error) {
	return backend.LoadAll(ctx, r.B, name, maxSidecar)
}

// Empty returns a repository value for b that is not stored anywhere (for
// dry runs against a remote that has none yet).
func Empty(b backend.Backend, p chunkplan.Params) (*Repository, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	c := &Config{Format: configFormat, Version: FormatVersion, Chunker: chunkingOf(p), Compression: "zstd", PackSize: DefaultPackSize}
	r := newRepository(b, c)
	r.index, r.packs = index.New(), map[ID]int64{}
	return r, nil
}
