package remote

import (
	"context"
	"fmt"
	"io"
	"sort"
	"sync/atomic"

	"github.com/vmasync/vmasync/chunkplan"
	"github.com/vmasync/vmasync/remote/pack"
)

// ArchiveReader reads byte ranges of a backup's optimized archive on
// demand: only the chunks that cover a range are fetched (one ranged read
// each) and each is checked against its SHA-256. It maps archive offsets
// to chunks (ChunkAt) for readers with a cache of their own
// (internal/chunkcache, used by mount and pull --disk). It is safe for
// concurrent use.
type ArchiveReader struct {
	r    *Repository
	m    *chunkplan.Manifest
	ends []int64 // ends[i] is the archive offset where chunk i ends

	fetched atomic.Int64 // bytes read from the backend (stored, compressed)
}

// OpenArchive returns a reader of the backup m's optimized archive. The
// index must be loaded.
func (r *Repository) OpenArchive(m *chunkplan.Manifest) (*ArchiveReader, error) {
	a := &ArchiveReader{r: r, m: m, ends: make([]int64, len(m.Chunks))}
	var off int64
	for i, c := range m.Chunks {
		if _, ok := r.Lookup(ID(c.Hash)); !ok {
			return nil, fmt.Errorf("chunk %d (%s) of the backup is not in the repository index (see 'vmasync check')", i, ID(c.Hash).Short())
		}
		off += int64(c.Length)
		a.ends[i] = off
	}
	if uint64(off) != m.ArchiveSize {
		return nil, fmt.Errorf("%w: the manifest's chunks add up to %d bytes, it says %d", ErrCorruptObject, off, m.ArchiveSize)
	}
	return a, nil
}

// Size is the archive's size in bytes.
func (a *ArchiveReader) Size() int64 { return int64(a.m.ArchiveSize) }

// Fetched is how many bytes were read from the remote so far.
func (a *ArchiveReader) Fetched() int64 { return a.fetched.Load() }

// ChunkAt returns the index of the chunk holding archive offset off and
// the chunk's start.
func (a *ArchiveReader) ChunkAt(off int64) (int, int64) {
	i := sort.Search(len(a.ends), func(i int) bool { return a.ends[i] > off })
	start := int64(0)
	if i > 0 {
		start = a.ends[i-1]
	}
	return i, start
}

// ReadAt reads len(p) bytes from offset off (io.ReaderAt).
func (a *ArchiveReader) ReadAt(p []byte, off int64) (int, error) {
	return a.ReadAtContext(context.Background(), p, off)
}

// ReadAtContext is ReadAt under ctx. A chunk that cannot be read or does
// not match its hash fails the read with an error naming the chunk; no
// wrong byte is ever returned.
func (a *ArchiveReader) ReadAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("negative offset %d", off)
	}
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		if pos >= a.Size() {
			return n, io.EOF
		}
		i, start := a.ChunkAt(pos)
		data, err := a.Chunk(ctx, i)
		if err != nil {
			return n, err
		}
		n += copy(p[n:], data[pos-start:])
	}
	return n, nil
}

// Chunk fetches chunk i's bytes, checked against its hash.
func (a *ArchiveReader) Chunk(ctx context.Context, i int) ([]byte, error) {
	c := a.m.Chunks[i]
	h := ID(c.Hash)
	loc, ok := a.r.Lookup(h)
	if !ok {
		return nil, fmt.Errorf("chunk %d (%s) is not in the repository index", i, h.Short())
	}
	stored, err := a.r.B.Load(ctx, packName(loc.Pack), int64(loc.Offset), int64(loc.Stored))
	if err != nil {
		return nil, fmt.Errorf("chunk %d (%s) in pack %s: %w", i, h.Short(), loc.Pack.Short(), err)
	}
	a.fetched.Add(int64(len(stored)))
	return pack.DecodeBlob(stored, loc, h, nil)
}
