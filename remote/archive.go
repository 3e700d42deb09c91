package remote

import (
	"container/list"
	"context"
	"fmt"
	"io"
	"sort"
	"sync"

	"github.com/vmasync/vmasync/chunkplan"
	"github.com/vmasync/vmasync/remote/pack"
)

// ArchiveReader reads byte ranges of a backup's optimized archive on
// demand: only the chunks that cover a range are fetched (one ranged read
// each), each is checked against its SHA-256, and recently read chunks
// are kept in a bounded cache. It is safe for concurrent use. mount and
// pull --disk read disks through it.
type ArchiveReader struct {
	r    *Repository
	m    *chunkplan.Manifest
	ends []int64 // ends[i] is the archive offset where chunk i ends

	mu       sync.Mutex
	cache    map[int]*list.Element // chunk index -> element holding cachedChunk
	lru      *list.List
	cached   int64
	maxCache int64
	// Fetched counts the bytes read from the backend (stored, compressed).
	fetched int64
}

type cachedChunk struct {
	i    int
	data []byte
}

// OpenArchive returns a reader of the backup m's optimized archive with a
// cache of at most cacheBytes of chunk data. The index must be loaded.
func (r *Repository) OpenArchive(m *chunkplan.Manifest, cacheBytes int64) (*ArchiveReader, error) {
	a := &ArchiveReader{r: r, m: m, ends: make([]int64, len(m.Chunks)), cache: map[int]*list.Element{}, lru: list.New(), maxCache: cacheBytes}
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
func (a *ArchiveReader) Fetched() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.fetched
}

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

// Chunk returns chunk i's bytes (checked against its hash), from the
// cache or the remote. The slice must not be modified.
func (a *ArchiveReader) Chunk(ctx context.Context, i int) ([]byte, error) {
	a.mu.Lock()
	if e, ok := a.cache[i]; ok {
		a.lru.MoveToFront(e)
		data := e.Value.(*cachedChunk).data
		a.mu.Unlock()
		return data, nil
	}
	a.mu.Unlock()
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
	data, err := pack.DecodeBlob(stored, loc, h, nil)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.fetched += int64(len(stored))
	if _, ok := a.cache[i]; !ok && a.maxCache > 0 {
		a.cache[i] = a.lru.PushFront(&cachedChunk{i, data})
		a.cached += int64(len(data))
		for a.cached > a.maxCache && a.lru.Len() > 1 {
			e := a.lru.Back()
			cc := e.Value.(*cachedChunk)
			a.lru.Remove(e)
			delete(a.cache, cc.i)
			a.cached -= int64(len(cc.data))
		}
	}
	return data, nil
}
