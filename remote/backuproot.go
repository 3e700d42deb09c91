package remote

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/vmasync/vmasync/chunkplan"
	"github.com/vmasync/vmasync/remote/backend"
	"github.com/vmasync/vmasync/remote/tree"
)

// rootFormat names a backup root object (a format 3 manifest object).
const rootFormat = "vmasync-backup"

// maxRoot bounds a backup root object: a few hundred bytes of JSON, with
// up to 256 device names of at most 4 KiB each.
const maxRoot = 2 << 20

// backupRoot is the manifest object of a backup in a format 3 repository:
// what the backup is, and the root of the tree of its chunk list (package
// remote/tree), whose nodes are blobs in packs like chunks. Two backups
// share every node their chunk lists have in common.
type backupRoot struct {
	Format        string       `json:"format"`
	Version       int          `json:"version"`
	Source        string       `json:"source"`
	VMID          string       `json:"vmid"`
	BackupTime    int64        `json:"backup_time"`
	Devices       []rootDevice `json:"devices"`
	ArchiveSHA256 string       `json:"archive_sha256"`
	ArchiveSize   uint64       `json:"archive_size"`
	Chunker       Chunking     `json:"chunker"`
	Tree          rootTree     `json:"tree"`
}

type rootDevice struct {
	Name string `json:"name"`
	Size uint64 `json:"size"`
}

type rootTree struct {
	ID     string `json:"id"`
	Level  int    `json:"level"`
	Bytes  uint64 `json:"bytes"`
	Chunks uint64 `json:"chunks"`
}

// encodeRoot builds the root object of the backup m (its chunks are not
// used) whose chunk tree is t.
func encodeRoot(m *chunkplan.Manifest, t tree.Ref) ([]byte, error) {
	r := backupRoot{Format: rootFormat, Version: 3, Source: m.Source, VMID: m.VMID, BackupTime: m.BackupTime,
		Devices: []rootDevice{}, ArchiveSHA256: hex.EncodeToString(m.ArchiveSHA256[:]), ArchiveSize: m.ArchiveSize,
		Chunker: chunkingOf(m.Params),
		Tree:    rootTree{ID: hex.EncodeToString(t.ID[:]), Level: t.Level, Bytes: t.Bytes, Chunks: t.Chunks}}
	for _, d := range m.Devices {
		r.Devices = append(r.Devices, rootDevice(d))
	}
	b, err := json.MarshalIndent(r, "", " ")
	if err != nil {
		return nil, err
	}
	if _, _, err := decodeRoot(b); err != nil {
		return nil, fmt.Errorf("push: the backup's root object would not read back: %w", err)
	}
	return append(b, '\n'), nil
}

// decodeRoot parses and checks a root object: the manifest it describes
// (without chunks) and its tree's root.
func decodeRoot(b []byte) (*chunkplan.Manifest, tree.Ref, error) {
	var r backupRoot
	if len(b) > maxRoot {
		return nil, tree.Ref{}, fmt.Errorf("root object of %d bytes, at most %d", len(b), maxRoot)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, tree.Ref{}, err
	}
	if r.Format != rootFormat || r.Version != 3 {
		return nil, tree.Ref{}, fmt.Errorf("format %q version %d, want %q version 3", r.Format, r.Version, rootFormat)
	}
	p, err := r.Chunker.Params()
	if err != nil {
		return nil, tree.Ref{}, err
	}
	m := &chunkplan.Manifest{Version: chunkplan.ManifestVersion, Source: r.Source, VMID: r.VMID, BackupTime: r.BackupTime,
		ArchiveSize: r.ArchiveSize, Params: p}
	if len(r.Source) > chunkplan.MaxStringLen || len(r.VMID) > chunkplan.MaxStringLen || len(r.Devices) > chunkplan.MaxDevices {
		return nil, tree.Ref{}, errors.New("source, vmid or device list too long")
	}
	for _, d := range r.Devices {
		if len(d.Name) > chunkplan.MaxStringLen {
			return nil, tree.Ref{}, errors.New("device name too long")
		}
		m.Devices = append(m.Devices, chunkplan.Device(d))
	}
	if h, err := hex.DecodeString(r.ArchiveSHA256); err != nil || len(h) != 32 {
		return nil, tree.Ref{}, fmt.Errorf("archive_sha256 %q is not a SHA-256", r.ArchiveSHA256)
	} else {
		copy(m.ArchiveSHA256[:], h)
	}
	id, ok := parseID(r.Tree.ID)
	if !ok {
		return nil, tree.Ref{}, fmt.Errorf("tree id %q is not a SHA-256", r.Tree.ID)
	}
	t := tree.Ref{ID: id, Level: r.Tree.Level, Bytes: r.Tree.Bytes, Chunks: r.Tree.Chunks}
	switch {
	case t.Level < 0 || t.Level > tree.MaxLevel:
		return nil, tree.Ref{}, fmt.Errorf("tree level %d", t.Level)
	case t.Bytes != r.ArchiveSize:
		return nil, tree.Ref{}, fmt.Errorf("the tree holds %d bytes, the archive has %d", t.Bytes, r.ArchiveSize)
	case t.Chunks == 0 || t.Bytes < t.Chunks || t.Bytes/uint64(p.MaxSize) > t.Chunks:
		return nil, tree.Ref{}, fmt.Errorf("the tree claims %d chunks in %d bytes", t.Chunks, t.Bytes)
	}
	return m, t, nil
}

// isRoot tells a root object (JSON) from a chunkplan manifest (binary,
// "VMASYNC-MANIFEST").
func isRoot(b []byte) bool { return len(b) > 0 && b[0] == '{' }

// loadNodes is the tree.Loader of a repository: nodes are blobs found
// through the index. A node the index does not hold, or whose pack is
// gone, is damage (ErrCorruptObject); other backend errors are not.
func (r *Repository) loadNodes(ctx context.Context, ids []tree.ID) ([][]byte, []error) {
	data, errs, _ := r.loadNodeBlobs(ctx, ids)
	return data, errs
}

// loadNodeBlobs is loadNodes, also returning the bytes read from the
// backend.
func (r *Repository) loadNodeBlobs(ctx context.Context, ids []tree.ID) ([][]byte, []error, int64) {
	if !r.indexLoaded() {
		errs := make([]error, len(ids))
		for i := range errs {
			errs[i] = errors.New("remote: the index must be loaded to read a chunk tree")
		}
		return make([][]byte, len(ids)), errs, 0
	}
	hs := make([]ID, len(ids))
	for i, id := range ids {
		hs[i] = ID(id)
	}
	data, errs, stored := r.LoadChunks(ctx, hs)
	for i, err := range errs {
		if err == nil {
			continue
		}
		if _, ok := r.Lookup(hs[i]); !ok || errors.Is(err, backend.ErrNotFound) {
			errs[i] = fmt.Errorf("%w: %v", ErrCorruptObject, err)
		}
	}
	return data, errs, stored
}

// walkTree visits a backup's chunk tree (see tree.Walk); a tree that does
// not add up is reported as ErrCorruptObject.
func (r *Repository) walkTree(ctx context.Context, m *chunkplan.Manifest, t tree.Ref, v tree.Visitor) error {
	err := tree.Walk(ctx, t, uint32(m.Params.MaxSize), r.loadNodes, v)
	if errors.Is(err, tree.ErrCorrupt) {
		err = fmt.Errorf("%w: %w", ErrCorruptObject, err)
	}
	return err
}

// compareTrees is chunkplan.Compare of backup b (with tree) against a
// (with tree) read through tree.Diff: only the leaves that differ are
// read, and only their chunks are held. A chunk of a differing part of b
// that a holds only in a part the two share counts as new, so NewBytes is
// an upper bound of Compare's (equal when nothing moved within the list,
// as in a VM's optimized archives, which are in device order). A failure
// is a *compareError naming the backup whose tree failed.
func (r *Repository) compareTrees(ctx context.Context, ab Backup, a *storedManifest, bb Backup, b *storedManifest) (chunkplan.Comparison, error) {
	// The parts that differ, as two manifests for chunkplan.Compare.
	onlyA := &chunkplan.Manifest{Params: a.m.Params}
	onlyB := &chunkplan.Manifest{Params: b.m.Params}
	err := tree.Diff(ctx, *a.tree, *b.tree, uint32(max(a.m.Params.MaxSize, b.m.Params.MaxSize)), r.loadNodes,
		func(ch chunkplan.ChunkRef) error { onlyA.Chunks = append(onlyA.Chunks, ch); return nil },
		func(ch chunkplan.ChunkRef) error { onlyB.Chunks = append(onlyB.Chunks, ch); return nil })
	var de *tree.DiffError
	if errors.As(err, &de) {
		name := ab.Name
		if de.InB {
			name = bb.Name
		}
		err = &compareError{inB: de.InB, err: fmt.Errorf("backup %s: chunk list: %w", name, de.Err)}
	}
	if err != nil {
		return chunkplan.Comparison{}, err
	}
	// What the shared subtrees hold is shared; the rest as Compare says.
	c := chunkplan.Compare(onlyA, onlyB)
	c.TotalChunks, c.TotalBytes = int(b.tree.Chunks), b.tree.Bytes
	c.SharedChunks = c.TotalChunks - c.NewChunksWithRepeats
	c.SharedBytes = c.TotalBytes - c.NewBytesWithRepeats
	return c, nil
}

// compareError is compareTrees' error: the tree of the second backup
// (inB) or of the first failed to read.
type compareError struct {
	inB bool
	err error
}

func (e *compareError) Error() string { return e.err.Error() }
func (e *compareError) Unwrap() error { return e.err }
