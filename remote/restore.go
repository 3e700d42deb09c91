package remote

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"

	"golang.org/x/sync/errgroup"

	"github.com/vmasync/vmasync/chunkplan"
	"github.com/vmasync/vmasync/remote/pack"
)

// maxRangeRead bounds one ranged read of consecutive blobs of a pack.
const maxRangeRead = 4 << 20

// span is one ranged read: consecutive blobs of one pack, chunks
// [first, end) of the manifest.
type span struct {
	pack       ID
	off, n     int64
	first, end int
}

// fetched is a span read and decoded: its chunks, one after another.
type fetched struct {
	data []byte
	err  error
}

// Restore writes the optimized VMA described by m to w, chunk by chunk,
// checking every chunk against its hash and the whole stream against the
// manifest's SHA-256 and size. The index must be loaded. Consecutive
// chunks stored next to each other in a pack are fetched with one ranged
// read; Transfers reads run at once, each decompressing and checking its
// chunks, and their results are written in order (at most Transfers + 2
// ranges of at most 4 MiB stored are held in memory).
func (r *Repository) Restore(ctx context.Context, m *chunkplan.Manifest, w io.Writer, progress func(written int64)) error {
	spans, err := r.planRestore(m)
	if err != nil {
		return err
	}
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
	g.Go(func() error {
		defer close(work)
		defer close(order)
		for _, s := range spans {
			j := job{s, make(chan fetched, 1)}
			select {
			case order <- j:
			case <-ctx.Done():
				return nil
			}
			select {
			case work <- j:
			case <-ctx.Done():
				return nil
			}
		}
		return nil
	})
	for range workers {
		g.Go(func() error {
			for j := range work {
				data, err := r.fetchSpan(ctx, m, j.s)
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

// planRestore groups the manifest's chunks into ranged reads.
func (r *Repository) planRestore(m *chunkplan.Manifest) ([]span, error) {
	var spans []span
	for i, c := range m.Chunks {
		loc, ok := r.Lookup(ID(c.Hash))
		if !ok {
			return nil, fmt.Errorf("chunk %d (%s) of the manifest is not in the repository index", i, ID(c.Hash).Short())
		}
		if loc.Raw != c.Length {
			return nil, fmt.Errorf("chunk %d (%s): the index says %d bytes, the manifest %d", i, ID(c.Hash).Short(), loc.Raw, c.Length)
		}
		if n := len(spans); n > 0 {
			s := &spans[n-1]
			if s.pack == loc.Pack && s.off+s.n == int64(loc.Offset) && s.n+int64(loc.Stored) <= maxRangeRead {
				s.n += int64(loc.Stored)
				s.end = i + 1
				continue
			}
		}
		spans = append(spans, span{pack: loc.Pack, off: int64(loc.Offset), n: int64(loc.Stored), first: i, end: i + 1})
	}
	return spans, nil
}

// fetchSpan reads one span and returns its chunks decoded and checked.
func (r *Repository) fetchSpan(ctx context.Context, m *chunkplan.Manifest, s span) ([]byte, error) {
	stored, err := r.B.Load(ctx, packName(s.pack), s.off, s.n)
	if err != nil {
		return nil, fmt.Errorf("pack %s: %w", s.pack.Short(), err)
	}
	var size int
	for i := s.first; i < s.end; i++ {
		size += int(m.Chunks[i].Length)
	}
	out := make([]byte, 0, size)
	for i := s.first; i < s.end; i++ {
		h := ID(m.Chunks[i].Hash)
		loc, _ := r.Lookup(h)
		rel := int64(loc.Offset) - s.off
		n := len(out)
		raw, err := pack.DecodeBlob(stored[rel:rel+int64(loc.Stored)], loc, h, out[n:n])
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
