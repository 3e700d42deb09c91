// Package chunkcache reads the optimized archives of a repository's
// backups by ranges for `vmasync mount` and `pull --disk`. The chunks that
// cover a range (remote.ArchiveReader maps offsets to chunks, through a
// format 3 backup's chunk tree without holding its chunk list) are fetched
// with remote's LoadChunks, one ranged read per run of chunks stored next
// to each other, several runs at once, each chunk checked against its
// SHA-256 and fetched at most once at a time, and kept in one bounded
// cache shared by every backup and keyed by the chunk's hash (two backups
// of a VM share most of their chunks).
package chunkcache

import (
	"container/list"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/vmasync/vmasync/chunkplan"
	"github.com/vmasync/vmasync/remote"
)

// Cache holds recently read chunks of any backup, at most Max bytes.
type Cache struct {
	max int64
	// Fetch is how many chunks a read or a read-ahead fetches at once.
	Fetch int
	// Log, if set, is told about every chunk that could not be read.
	Log func(msg string)

	mu       sync.Mutex
	lru      *list.List // of *entry, most recent first
	entries  map[[32]byte]*list.Element
	held     int64
	inflight map[[32]byte]*call

	logged map[[32]byte]time.Time // when a bad chunk was last logged

	fetched atomic.Int64 // stored bytes read from the remote
	hits    atomic.Int64
	misses  atomic.Int64
}

type entry struct {
	key  [32]byte
	data []byte
}

type call struct {
	done chan struct{}
	data []byte
	err  error
}

// New returns a cache of at most maxBytes of chunk data.
func New(maxBytes int64) *Cache {
	return &Cache{max: maxBytes, Fetch: 8, lru: list.New(), entries: map[[32]byte]*list.Element{}, inflight: map[[32]byte]*call{}}
}

// Fetched is how many bytes were read from the remote (stored,
// compressed) for the chunks.
func (c *Cache) Fetched() int64 { return c.fetched.Load() }

// Stats returns the cache hits and misses so far.
func (c *Cache) Stats() (hits, misses int64) { return c.hits.Load(), c.misses.Load() }

// Archive is one backup's archive read through the cache.
type Archive struct {
	c *Cache
	r *remote.Repository
	a *remote.ArchiveReader
	// Name names the backup in log lines.
	Name    string
	fetched atomic.Int64
}

// Open returns the archive of the backup whose whole manifest (with
// every chunk) is m, read through c. The repository's index must be
// loaded.
func (c *Cache) Open(r *remote.Repository, m *chunkplan.Manifest, name string) (*Archive, error) {
	a, err := r.OpenArchive(m) // the shared cache is ours
	if err != nil {
		return nil, err
	}
	return &Archive{c: c, r: r, a: a, Name: name}, nil
}

// OpenBackup returns backup b's archive read through c, its chunks found
// as remote.Repository.OpenBackup finds them (a format 3 backup's chunk
// tree is descended, never held whole; damage below its root is found by
// the reads that reach it). The repository's index must be loaded.
func (c *Cache) OpenBackup(ctx context.Context, r *remote.Repository, b remote.Backup) (*Archive, error) {
	a, err := r.OpenBackup(ctx, b)
	if err != nil {
		return nil, err
	}
	return &Archive{c: c, r: r, a: a, Name: b.Name}, nil
}

// Size is the archive's size.
func (x *Archive) Size() int64 { return x.a.Size() }

// Fetched is how many bytes this archive read from the remote.
func (x *Archive) Fetched() int64 { return x.fetched.Load() }

// pend is a chunk a read waits for: the k-th of the read's chunks.
type pend struct {
	k  int
	ch remote.ArchiveChunk
	cl *call
}

// chunks returns the data of the chunks cs, from the cache, from fetches
// in progress, or from the remote: the missing ones are fetched in runs
// of chunks stored next to each other (one ranged read per run), several
// runs at once.
func (x *Archive) chunks(ctx context.Context, cs []remote.ArchiveChunk) ([][]byte, error) {
	out := make([][]byte, len(cs))
	mine, others := x.claim(cs, out)
	var g errgroup.Group
	g.SetLimit(max(x.c.Fetch, 1))
	for _, run := range x.runs(mine) {
		g.Go(func() error { x.fetch(ctx, run); return nil })
	}
	g.Wait()
	for _, p := range append(mine, others...) {
		select {
		case <-p.cl.done:
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
		err := p.cl.err
		if err != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) && ctx.Err() == nil {
			// Whoever fetched it gave up: fetch it ourselves.
			d, err := x.chunks(ctx, []remote.ArchiveChunk{p.ch})
			if err != nil {
				return nil, err
			}
			out[p.k] = d[0]
			continue
		}
		if err != nil {
			return nil, err
		}
		out[p.k] = p.cl.data
	}
	return out, nil
}

// claim fills out with the cached chunks of cs and returns the others:
// those this read is to fetch (now in flight) and those another read is
// fetching.
func (x *Archive) claim(cs []remote.ArchiveChunk, out [][]byte) (mine, others []pend) {
	c := x.c
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, ch := range cs {
		key := ch.Hash
		if e, ok := c.entries[key]; ok {
			c.lru.MoveToFront(e)
			out[k] = e.Value.(*entry).data
			c.hits.Add(1)
		} else if cl, ok := c.inflight[key]; ok {
			others = append(others, pend{k, ch, cl})
		} else {
			cl := &call{done: make(chan struct{})}
			c.inflight[key] = cl
			mine = append(mine, pend{k, ch, cl})
			c.misses.Add(1)
		}
	}
	return mine, others
}

// runs groups chunks into runs stored next to each other in a pack, at
// most maxRun bytes each.
func (x *Archive) runs(ps []pend) [][]pend {
	var runs [][]pend
	var prev remote.Location
	var runBytes int64
	for k, p := range ps {
		loc, ok := x.r.Lookup(remote.ID(p.ch.Hash))
		if k > 0 && ok && loc.Pack == prev.Pack && loc.Offset == prev.Offset+prev.Stored && runBytes+int64(loc.Stored) <= maxRun {
			runs[len(runs)-1] = append(runs[len(runs)-1], p)
			runBytes += int64(loc.Stored)
		} else {
			runs = append(runs, []pend{p})
			runBytes = int64(loc.Stored)
		}
		prev = loc
	}
	return runs
}

// fetch reads a run of chunks with one ranged read, caches them, logs
// the ones that failed and completes their calls.
func (x *Archive) fetch(ctx context.Context, run []pend) {
	c := x.c
	hashes := make([]remote.ID, len(run))
	for k, p := range run {
		hashes[k] = remote.ID(p.ch.Hash)
	}
	data, errs, stored := x.r.LoadChunks(ctx, hashes)
	c.fetched.Add(stored)
	x.fetched.Add(stored)
	c.mu.Lock()
	for k, p := range run {
		p.cl.data, p.cl.err = data[k], errs[k]
		delete(c.inflight, hashes[k])
		if p.cl.err == nil {
			c.add(hashes[k], p.cl.data)
		}
	}
	c.mu.Unlock()
	for k, p := range run {
		if err := p.cl.err; err != nil && ctx.Err() == nil && c.Log != nil && c.firstLog(hashes[k]) {
			c.Log(fmt.Sprintf("%s: archive bytes %d-%d: %v", x.Name, p.ch.Start, p.ch.End(), err))
		}
		close(p.cl.done)
	}
}

// maxRun bounds one ranged read of chunks stored next to each other.
const maxRun = 4 << 20

// firstLog reports whether a failure of chunk key should be logged: not
// again within a minute (the kernel retries a failed read page by page).
func (c *Cache) firstLog(key [32]byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.logged == nil {
		c.logged = map[[32]byte]time.Time{}
	}
	if t, ok := c.logged[key]; ok && time.Since(t) < time.Minute {
		return false
	}
	c.logged[key] = time.Now()
	return true
}

// add caches data under key. Called with mu held.
func (c *Cache) add(key [32]byte, data []byte) {
	if c.max <= 0 {
		return
	}
	if _, ok := c.entries[key]; ok {
		return
	}
	c.entries[key] = c.lru.PushFront(&entry{key, data})
	c.held += int64(len(data))
	for c.held > c.max && c.lru.Len() > 1 {
		e := c.lru.Back()
		en := e.Value.(*entry)
		c.lru.Remove(e)
		delete(c.entries, en.key)
		c.held -= int64(len(en.data))
	}
}

// ReadAtContext reads len(p) archive bytes at off; the chunks that cover
// them are fetched several at once. A chunk that cannot be read or does
// not match its hash fails the read (the error names the chunk).
func (x *Archive) ReadAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("negative offset %d", off)
	}
	if off >= x.Size() {
		return 0, io.EOF
	}
	want := min(int64(len(p)), x.Size()-off)
	cs, err := x.span(ctx, off, want)
	if err != nil {
		return 0, err
	}
	chunks, err := x.chunks(ctx, cs)
	if err != nil {
		return 0, err
	}
	n := 0
	pos := off - cs[0].Start
	for _, d := range chunks {
		k := copy(p[n:want], d[pos:])
		n += k
		pos = 0
	}
	if want < int64(len(p)) {
		return n, io.EOF
	}
	return n, nil
}

// Prefetch fetches the chunks covering archive bytes [off, off+n) into
// the cache, several at once, and returns when they are there (or on the
// first error, which a later read reports).
func (x *Archive) Prefetch(ctx context.Context, off, n int64) {
	if off >= x.Size() || n <= 0 {
		return
	}
	cs, err := x.span(ctx, off, n)
	if err == nil {
		x.chunks(ctx, cs)
	}
}

// span returns the chunks covering archive bytes [off, off+n). A chunk
// list that cannot be read (a format 3 tree node missing or damaged) is
// logged like a damaged chunk: the read fails with it.
func (x *Archive) span(ctx context.Context, off, n int64) ([]remote.ArchiveChunk, error) {
	cs, err := x.a.Span(ctx, off, n)
	if err != nil && ctx.Err() == nil && x.c.Log != nil && errors.Is(err, remote.ErrCorruptObject) && x.c.firstLog(sha256.Sum256([]byte(err.Error()))) {
		x.c.Log(fmt.Sprintf("%s: archive bytes %d-%d: %v", x.Name, off, off+n, err))
	}
	return cs, err
}
