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
// sizes and what each added over the VM's previous backup. Backups stored
// as trees (format 3) are compared through the parts of their trees that
// differ (compareTrees); the index is loaded only when such a comparison
// needs it.
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
	var prev *prevBackup
	for _, b := range backups {
		if len(want) > 0 && !want[b.VMID] {
			continue
		}
		s, err := r.readManifest(ctx, b)
		var newBytes uint64
		if err == nil {
			newBytes = s.m.ArchiveSize
			if prev != nil && prev.b.VMID == b.VMID && prev.s.m.Params == s.m.Params {
				newBytes, err = r.addedBytes(ctx, prev, b, s)
			}
		}
		if errors.Is(err, ErrCorruptObject) {
			// Listed, marked damaged; the other backups are listed as usual.
			out = append(out, Snapshot{VMID: b.VMID, Name: b.Name, Time: b.Time, Protected: b.Protected, Damaged: err.Error()})
			prev = nil
			continue
		}
		if err != nil {
			return nil, err
		}
		m := s.m
		out = append(out, Snapshot{VMID: b.VMID, Name: b.Name, Time: b.Time, Size: m.ArchiveSize, NewBytes: newBytes,
			Disks: len(m.Devices), Source: m.Source, Protected: b.Protected})
		prev = &prevBackup{b: b, s: s}
	}
	return out, nil
}

// addedBytes is the bytes of backup b (read as s) in chunks its
// predecessor prev lacks: chunkplan.Compare of two format 2 manifests,
// compareTrees of two trees, and a tree against a format 2 manifest (as
// after a migration) through the whole chunk list of the tree.
func (r *Repository) addedBytes(ctx context.Context, prev *prevBackup, b Backup, s *storedManifest) (uint64, error) {
	if s.tree != nil || prev.s.tree != nil {
		if !r.indexLoaded() {
			if _, err := r.LoadIndex(ctx, false); err != nil {
				return 0, err
			}
		}
	}
	if s.tree != nil && prev.s.tree != nil {
		c, err := r.compareTrees(ctx, prev.b, prev.s, b, s)
		var ce *compareError
		if errors.As(err, &ce) && !ce.inB {
			// The previous backup's tree does not read (check reports
			// it): this one is not damaged for that; all of it counts.
			r.warnf("%v", err)
			return s.m.ArchiveSize, nil
		}
		return c.NewBytes, err
	}
	pm, m := prev.s.m, s.m
	var err error
	if prev.s.tree != nil {
		pm, err = r.Manifest(ctx, prev.b)
	}
	if err == nil && s.tree != nil {
		m, err = r.Manifest(ctx, b)
	}
	if err != nil {
		return 0, err
	}
	return chunkplan.Compare(pm, m).NewBytes, nil
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
	r.index, r.packs = memIndex{index.New()}, map[ID]int64{}
	return r, nil
}
