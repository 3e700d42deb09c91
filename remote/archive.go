package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync/atomic"

	"github.com/vmasync/vmasync/chunkplan"
	"github.com/vmasync/vmasync/remote/pack"
	"github.com/vmasync/vmasync/remote/tree"
)

// ArchiveReader reads byte ranges of a backup's optimized archive on
// demand: only the chunks that cover a range are fetched (one ranged read
// each) and each is checked against its SHA-256. It maps archive offsets
// and chunk ordinals to chunks (ChunkAt, Span, Ref) for readers with a
// cache of their own (internal/chunkcache, used by mount and pull
// --disk). It is safe for concurrent use.
//
// A backup with a chunk tree (format 3, OpenBackup) is read by descending
// the tree: the bytes and chunks each inner entry carries say which child
// holds an offset, so a lookup loads one node per level, and the nodes
// read are kept in the repository's bounded cache of decoded nodes
// (nodeCacheSize); memory does not grow with the archive. A backup read
// from a whole manifest (OpenArchive; format 1 and 2) keeps its chunk
// list and the running sum of its lengths, 44 bytes a chunk.
type ArchiveReader struct {
	r    *Repository
	name string // the backup's, in errors ("" for OpenArchive)
	size int64
	list chunkList

	fetched atomic.Int64 // bytes read from the backend (stored, compressed)
}

// ArchiveChunk is a chunk of an archive as an ArchiveReader finds it: its
// hash and length, its ordinal in the archive's chunk list and the
// archive offset where it starts.
type ArchiveChunk struct {
	chunkplan.ChunkRef
	Index int
	Start int64
}

// End is the archive offset after the chunk.
func (c ArchiveChunk) End() int64 { return c.Start + int64(c.Length) }

// chunkList finds an archive's chunks: in a manifest held whole, or by
// descending a chunk tree.
type chunkList interface {
	// at returns the chunk holding archive byte pos, or with byIndex
	// the chunk number pos; pos is within the archive.
	at(ctx context.Context, pos int64, byIndex bool) (ArchiveChunk, error)
	// span appends to dst the chunks from the one holding byte off up
	// to the one holding byte end-1 (off < end <= the archive's size).
	span(ctx context.Context, off, end int64, dst []ArchiveChunk) ([]ArchiveChunk, error)
	// chunks is how many chunks the archive has.
	chunks() int64
}

// OpenArchive returns a reader of the backup m's optimized archive from
// its whole manifest (with every chunk), which it keeps. Every chunk must
// be in the index, which must be loaded, and the chunks must add up to
// the archive's size: a manifest that does not is refused here, not when
// read.
func (r *Repository) OpenArchive(m *chunkplan.Manifest) (*ArchiveReader, error) {
	l := &manifestList{m: m, ends: make([]int64, len(m.Chunks))}
	var off int64
	for i, c := range m.Chunks {
		if _, ok := r.Lookup(ID(c.Hash)); !ok {
			return nil, fmt.Errorf("chunk %d (%s) of the backup is not in the repository index (see 'vmasync check')", i, ID(c.Hash).Short())
		}
		off += int64(c.Length)
		l.ends[i] = off
	}
	if uint64(off) != m.ArchiveSize {
		return nil, fmt.Errorf("%w: the manifest's chunks add up to %d bytes, it says %d", ErrCorruptObject, off, m.ArchiveSize)
	}
	return &ArchiveReader{r: r, size: int64(m.ArchiveSize), list: l}, nil
}

// OpenBackup returns a reader of backup b's optimized archive. The index
// must be loaded.
//
// A format 3 backup is read through its chunk tree, never held whole
// (see ArchiveReader). Open reads the root object and the tree's root
// node and checks them; the rest is checked lazily, as reads reach it:
// every node loaded is checked as tree.Walk checks it (its hash, format,
// bounds, level, and that it holds the bytes and chunks its parent
// says), so the chunks of any path add up to the archive's size, and a
// chunk missing from the index or damaged fails the read that needs it
// with an error naming the chunk (and its pack), as a missing or damaged
// node fails it naming the node, wrapping ErrCorruptObject. Nothing wrong
// is ever returned. Use 'vmasync check' to check a whole backup.
//
// A format 1 or 2 backup (a whole manifest, no tree) is opened with
// OpenArchive: its manifest is checked whole here.
func (r *Repository) OpenBackup(ctx context.Context, b Backup) (*ArchiveReader, error) {
	if !r.indexLoaded() {
		return nil, errors.New("remote: the index must be loaded to read a backup")
	}
	s, err := r.readManifest(ctx, b)
	if err != nil {
		return nil, err
	}
	if s.tree == nil {
		a, err := r.OpenArchive(s.m)
		if err != nil {
			return nil, fmt.Errorf("backup %s: %w", b.Name, err)
		}
		a.name = b.Name
		return a, nil
	}
	a := &ArchiveReader{r: r, name: b.Name, size: int64(s.m.ArchiveSize)}
	l := &treeList{a: a, root: *s.tree, maxChunk: uint32(s.m.Params.MaxSize), nodes: r.nodeCache()}
	if _, err := l.node(ctx, nil, 0); err != nil {
		return nil, err
	}
	a.list = l
	return a, nil
}

// Size is the archive's size in bytes.
func (a *ArchiveReader) Size() int64 { return a.size }

// Chunks is how many chunks the archive has.
func (a *ArchiveReader) Chunks() int64 { return a.list.chunks() }

// Fetched is how many bytes were read from the remote so far (chunks read
// by ReadAt and Chunk, and tree nodes).
func (a *ArchiveReader) Fetched() int64 { return a.fetched.Load() }

// ChunkAt returns the index of the chunk holding archive offset off and
// the chunk's start.
func (a *ArchiveReader) ChunkAt(ctx context.Context, off int64) (int, int64, error) {
	c, err := a.ChunkAtRef(ctx, off)
	return c.Index, c.Start, err
}

// ChunkAtRef returns the chunk holding archive offset off.
func (a *ArchiveReader) ChunkAtRef(ctx context.Context, off int64) (ArchiveChunk, error) {
	if off < 0 || off >= a.size {
		return ArchiveChunk{}, fmt.Errorf("offset %d outside the archive of %d bytes", off, a.size)
	}
	return a.list.at(ctx, off, false)
}

// Ref returns chunk number i.
func (a *ArchiveReader) Ref(ctx context.Context, i int) (ArchiveChunk, error) {
	if i < 0 || int64(i) >= a.list.chunks() {
		return ArchiveChunk{}, fmt.Errorf("chunk %d outside the archive of %d chunks", i, a.list.chunks())
	}
	return a.list.at(ctx, int64(i), true)
}

// Span returns the chunks that cover archive bytes [off, off+n), in
// order (none when n <= 0; the range is cut at the archive's end).
func (a *ArchiveReader) Span(ctx context.Context, off, n int64) ([]ArchiveChunk, error) {
	if off < 0 {
		return nil, fmt.Errorf("negative offset %d", off)
	}
	end := min(off+n, a.size)
	if off >= end {
		return nil, nil
	}
	return a.list.span(ctx, off, end, nil)
}

// ReadAt reads len(p) bytes from offset off (io.ReaderAt).
func (a *ArchiveReader) ReadAt(p []byte, off int64) (int, error) {
	return a.ReadAtContext(context.Background(), p, off)
}

// ReadAtContext is ReadAt under ctx. A chunk (or tree node) that cannot
// be read or does not match its hash fails the read with an error naming
// it; no wrong byte is ever returned.
func (a *ArchiveReader) ReadAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("negative offset %d", off)
	}
	if off >= a.size {
		return 0, io.EOF
	}
	want := min(int64(len(p)), a.size-off)
	cs, err := a.Span(ctx, off, want)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, c := range cs {
		data, err := a.fetch(ctx, c)
		if err != nil {
			return n, err
		}
		n += copy(p[n:want], data[off+int64(n)-c.Start:])
	}
	if want < int64(len(p)) {
		return n, io.EOF
	}
	return n, nil
}

// Chunk fetches chunk i's bytes, checked against its hash.
func (a *ArchiveReader) Chunk(ctx context.Context, i int) ([]byte, error) {
	c, err := a.Ref(ctx, i)
	if err != nil {
		return nil, err
	}
	return a.fetch(ctx, c)
}

func (a *ArchiveReader) fetch(ctx context.Context, c ArchiveChunk) ([]byte, error) {
	h := ID(c.Hash)
	loc, ok := a.r.Lookup(h)
	if !ok {
		return nil, fmt.Errorf("chunk %d (%s) is not in the repository index", c.Index, h.Short())
	}
	stored, err := a.r.B.Load(ctx, packName(loc.Pack), int64(loc.Offset), int64(loc.Stored))
	if err != nil {
		return nil, fmt.Errorf("chunk %d (%s) in pack %s: %w", c.Index, h.Short(), loc.Pack.Short(), err)
	}
	a.fetched.Add(int64(len(stored)))
	return pack.DecodeBlob(stored, loc, h, nil)
}

// manifestList is the chunk list of a whole manifest.
type manifestList struct {
	m    *chunkplan.Manifest
	ends []int64 // ends[i] is the archive offset where chunk i ends
}

func (l *manifestList) chunks() int64 { return int64(len(l.ends)) }

func (l *manifestList) chunk(i int) ArchiveChunk {
	start := int64(0)
	if i > 0 {
		start = l.ends[i-1]
	}
	return ArchiveChunk{ChunkRef: l.m.Chunks[i], Index: i, Start: start}
}

func (l *manifestList) at(_ context.Context, pos int64, byIndex bool) (ArchiveChunk, error) {
	if byIndex {
		return l.chunk(int(pos)), nil
	}
	return l.chunk(sort.Search(len(l.ends), func(i int) bool { return l.ends[i] > pos })), nil
}

func (l *manifestList) span(ctx context.Context, off, end int64, dst []ArchiveChunk) ([]ArchiveChunk, error) {
	c, _ := l.at(ctx, off, false)
	for i := c.Index; i < len(l.ends); i++ {
		c := l.chunk(i)
		if c.Start >= end {
			break
		}
		dst = append(dst, c)
	}
	return dst, nil
}

// treeList is the chunk list of a format 3 backup: its chunk tree,
// descended from the root for each lookup through the repository's cache
// of decoded nodes.
type treeList struct {
	a        *ArchiveReader
	root     tree.Ref
	maxChunk uint32
	// nodes is the repository's node cache, kept here: the repository's
	// lock is held through index lookups, which may read the disk.
	nodes *nodeCache
}

func (l *treeList) chunks() int64 { return int64(l.root.Chunks) }

// leaf descends to the leaf holding pos (a byte, or with byIndex a chunk
// number) and returns it with the archive offset and chunk number where
// it starts.
func (l *treeList) leaf(ctx context.Context, pos int64, byIndex bool) (*tree.Node, int64, int64, error) {
	nd, err := l.node(ctx, nil, 0)
	var bytes, chunks uint64
	for err == nil && nd.Level > 0 {
		p := uint64(pos) - bytes
		if byIndex {
			p = uint64(pos) - chunks
		}
		i, b, c, ok := nd.Locate(p, byIndex)
		if !ok { // Check makes this impossible below a checked root
			return nil, 0, 0, fmt.Errorf("backup %s: chunk list: %w: position %d beyond a node of level %d", l.a.name, ErrCorruptObject, pos, nd.Level)
		}
		bytes, chunks = bytes+b, chunks+c
		nd, err = l.node(ctx, nd, i)
	}
	if err != nil {
		return nil, 0, 0, err
	}
	return nd, int64(bytes), int64(chunks), nil
}

func (l *treeList) at(ctx context.Context, pos int64, byIndex bool) (ArchiveChunk, error) {
	nd, start, first, err := l.leaf(ctx, pos, byIndex)
	if err != nil {
		return ArchiveChunk{}, err
	}
	p := pos - start
	if byIndex {
		p = pos - first
	}
	i, b, _, ok := nd.Locate(uint64(p), byIndex)
	if !ok {
		return ArchiveChunk{}, fmt.Errorf("backup %s: chunk list: %w: position %d beyond its leaf", l.a.name, ErrCorruptObject, pos)
	}
	return ArchiveChunk{ChunkRef: nd.Chunks[i], Index: int(first) + i, Start: start + int64(b)}, nil
}

func (l *treeList) span(ctx context.Context, off, end int64, dst []ArchiveChunk) ([]ArchiveChunk, error) {
	for off < end {
		nd, start, first, err := l.leaf(ctx, off, false)
		if err != nil {
			return dst, err
		}
		pos := start
		for i, c := range nd.Chunks {
			next := pos + int64(c.Length)
			if next > off && pos < end {
				dst = append(dst, ArchiveChunk{ChunkRef: c, Index: int(first) + i, Start: pos})
			}
			pos = next
		}
		off = pos // the next leaf's first byte
	}
	return dst, nil
}

// nodeBatch is how many children of a node, from the one wanted on, a
// lookup that misses the cache loads at once: a tree's nodes of a level
// lie next to each other in its packs, so one ranged read brings the
// neighbours a sequential reader needs next.
const nodeBatch = 16

// node returns child i of parent (the root when parent is nil), from the
// cache or loaded with those after it, checked against what the parent
// says of it. Errors name the backup and the node.
func (l *treeList) node(ctx context.Context, parent *tree.Node, i int) (*tree.Node, error) {
	ref := l.root
	if parent != nil {
		ref = parent.Children[i]
	}
	c := l.nodes
	e := c.get(ref.ID, l.maxChunk)
	if e == nil {
		// Load the node and its next siblings that are not cached.
		ids := []tree.ID{ref.ID}
		if parent != nil {
			for _, s := range parent.Children[i+1 : min(i+nodeBatch, len(parent.Children))] {
				if !c.has(s.ID, l.maxChunk) {
					ids = append(ids, s.ID)
				}
			}
		}
		data, errs, stored := l.a.r.loadNodeBlobs(ctx, ids)
		l.a.fetched.Add(stored)
		for k, id := range ids {
			if errs[k] != nil {
				if k == 0 {
					return nil, l.nodeError(ref, errs[k])
				}
				continue // a sibling fails when it is needed
			}
			nd, err := tree.Parse(data[k], l.maxChunk)
			if err != nil {
				if k == 0 {
					return nil, l.nodeError(ref, err)
				}
				continue
			}
			ce := newCachedNode(nd)
			c.put(id, l.maxChunk, ce)
			if k == 0 {
				e = ce
			}
		}
	}
	if e.level != ref.Level || e.bytes != ref.Bytes || e.chunks != ref.Chunks {
		return nil, l.nodeError(ref, e.nd.Check(ref))
	}
	return e.nd, nil
}

// nodeError names the backup and the node as tree.Walk does; damage
// wraps ErrCorruptObject.
func (l *treeList) nodeError(r tree.Ref, err error) error {
	if errors.Is(err, tree.ErrCorrupt) && !errors.Is(err, ErrCorruptObject) {
		err = fmt.Errorf("%w: %w", ErrCorruptObject, err)
	}
	return fmt.Errorf("backup %s: chunk list: tree node %x (level %d): %w", l.a.name, r.ID[:4], r.Level, err)
}
