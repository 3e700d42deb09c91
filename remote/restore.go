package remote

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"

	"golang.org/x/sync/errgroup"

	"github.com/vmasync/vmasync/chunkplan"
	"github.com/vmasync/vmasync/remote/pack"
	"github.com/vmasync/vmasync/remote/tree"
)

// maxRangeRead bounds one ranged read of consecutive blobs of a pack.
const maxRangeRead = 4 << 20

// span is one ranged read: consecutive blobs of one pack, the chunks
// chunks of the archive.
type span struct {
	pack   ID
	off, n int64
	chunks []spanChunk
}

type spanChunk struct {
	hash ID
	loc  Location
}

// fetched is a span read and decoded: its chunks, one after another.
type fetched struct {
	data []byte
	err  error
}

// Restore writes the optimized VMA described by m (with its chunks) to
// w; see RestoreBackup.
func (r *Repository) Restore(ctx context.Context, m *chunkplan.Manifest, w io.Writer, progress func(written int64)) error {
	each := func(fn func(chunkplan.ChunkRef) error) error {
		for _, c := range m.Chunks {
			if err := fn(c); err != nil {
				return err
			}
		}
		return nil
	}
	return r.restore(ctx, m, each, w, progress)
}

// RestoreBackup writes the optimized VMA of backup b to w, chunk by
// chunk, checking every chunk against its hash and the whole stream
// against the manifest's SHA-256 and size. The index must be loaded. The
// chunk list is read as the restore goes (a format 3 tree in batches of
// nodes), never held whole. Consecutive chunks stored next to each other
// in a pack are fetched with one ranged read; Transfers reads run at
// once, each decompressing and checking its chunks, and their results are
// written in order (at most Transfers + 2 ranges of at most 4 MiB stored
// are held in memory).
func (r *Repository) RestoreBackup(ctx context.Context, b Backup, w io.Writer, progress func(written int64)) error {
	s, err := r.readManifest(ctx, b)
	if err != nil {
		return err
	}
	each := func(fn func(chunkplan.ChunkRef) error) error {
		return r.eachChunk(ctx, b, s, tree.Visitor{Chunk: fn})
	}
	return r.restore(ctx, s.m, each, w, progress)
}

// Header returns a backup's manifest without reading its chunk tree: in
// format 3 without chunks, before that with them (they are in the object).
func (r *Repository) Header(ctx context.Context, b Backup) (*chunkplan.Manifest, error) {
	s, err := r.readManifest(ctx, b)
	return s.manifest(), err
}

func (r *Repository) restore(ctx context.Context, m *chunkplan.Manifest, each func(func(chunkplan.ChunkRef) error) error, w io.Writer, progress func(written int64)) error {
	workers := max(r.Transfers, 1)
	if r.Transfers == 0 {
		workers = 4
	}
	g, ctx := errgroup.WithContext(ctx)
	type job struct {
		s   span
		out chan fetched
	}
	work := make(chan job)
	order := make(chan job, workers+2) // bounds what is held in memory
	emit := func(s span) error {
		j := job{s, make(chan fetched, 1)}
		select {
		case order <- j:
		case <-ctx.Done():
			return ctx.Err()
		}
		select {
		case work <- j:
		case <-ctx.Done():
			return ctx.Err()
		}
		return nil
	}
	g.Go(func() error {
		defer close(work)
		defer close(order)
		return r.planRestore(each, emit)
	})
	for range workers {
		g.Go(func() error {
			for j := range work {
				data, err := r.fetchSpan(ctx, j.s)
				j.out <- fetched{data, err}
			}
			return nil
		})
	}
	g.Go(func() error {
		whole := sha256.New()
		var written int64
		for j := range order {
			var f fetched
			select {
			case f = <-j.out:
			case <-ctx.Done():
				return ctx.Err()
			}
			if f.err != nil {
				return f.err
			}
			if _, err := w.Write(f.data); err != nil {
				return err
			}
			whole.Write(f.data)
			written += int64(len(f.data))
			if progress != nil {
				progress(written)
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if uint64(written) != m.ArchiveSize {
			return fmt.Errorf("restored %d bytes, the manifest says %d", written, m.ArchiveSize)
		}
		if [32]byte(whole.Sum(nil)) != m.ArchiveSHA256 {
			return fmt.Errorf("%w: the restored archive's SHA-256 does not match the manifest", ErrCorruptObject)
		}
		return nil
	})
	return g.Wait()
}

// planRestore groups the chunks, as each hands them out, into ranged
// reads and hands each to emit when it is complete.
func (r *Repository) planRestore(each func(func(chunkplan.ChunkRef) error) error, emit func(span) error) error {
	var cur span
	i := 0
	err := each(func(c chunkplan.ChunkRef) error {
		h := ID(c.Hash)
		loc, ok := r.Lookup(h)
		if !ok {
			return fmt.Errorf("chunk %d (%s) of the manifest is not in the repository index", i, h.Short())
		}
		if loc.Raw != c.Length {
			return fmt.Errorf("chunk %d (%s): the index says %d bytes, the manifest %d", i, h.Short(), loc.Raw, c.Length)
		}
		i++
		if len(cur.chunks) > 0 && cur.pack == loc.Pack && cur.off+cur.n == int64(loc.Offset) && cur.n+int64(loc.Stored) <= maxRangeRead {
			cur.n += int64(loc.Stored)
			cur.chunks = append(cur.chunks, spanChunk{h, loc})
			return nil
		}
		if len(cur.chunks) > 0 {
			if err := emit(cur); err != nil {
				return err
			}
		}
		cur = span{pack: loc.Pack, off: int64(loc.Offset), n: int64(loc.Stored), chunks: []spanChunk{{h, loc}}}
		return nil
	})
	if err == nil && len(cur.chunks) > 0 {
		err = emit(cur)
	}
	return err
}

// fetchSpan reads one span and returns its chunks decoded and checked.
func (r *Repository) fetchSpan(ctx context.Context, s span) ([]byte, error) {
	stored, err := r.B.Load(ctx, packName(s.pack), s.off, s.n)
	if err != nil {
		return nil, fmt.Errorf("pack %s: %w", s.pack.Short(), err)
	}
	var size int
	for _, c := range s.chunks {
		size += int(c.loc.Raw)
	}
	out := make([]byte, 0, size)
	for _, c := range s.chunks {
		rel := int64(c.loc.Offset) - s.off
		n := len(out)
		raw, err := pack.DecodeBlob(stored[rel:rel+int64(c.loc.Stored)], c.loc, c.hash, out[n:n])
		if err != nil {
			return nil, err
		}
		if len(raw) > 0 && cap(out) > n && &out[:n+1][n] == &raw[0] {
			out = out[:n+len(raw)] // decoded in place
		} else {
			out = append(out, raw...)
		}
	}
	return out, nil
}
