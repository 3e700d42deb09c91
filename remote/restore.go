package remote

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"

	"github.com/vmasync/vmasync/chunkplan"
	"github.com/vmasync/vmasync/remote/pack"
)

// maxRangeRead bounds one ranged read of consecutive blobs of a pack.
const maxRangeRead = 16 << 20

// Restore writes the optimized VMA described by m to w, chunk by chunk,
// checking every chunk against its hash and the whole stream against the
// manifest's SHA-256 and size. The index must be loaded. Consecutive
// chunks stored next to each other in a pack are fetched with one ranged
// read; the next range is fetched while the current one is written.
func (r *Repository) Restore(ctx context.Context, m *chunkplan.Manifest, w io.Writer, progress func(written int64)) error {
	type span struct {
		pack       ID
		off, n     int64
		first, end int // chunk indexes [first, end)
	}
	// Plan the reads.
	var spans []span
	for i, c := range m.Chunks {
		loc, ok := r.Lookup(ID(c.Hash))
		if !ok {
			return fmt.Errorf("chunk %d (%s) of the manifest is not in the repository index", i, ID(c.Hash).Short())
		}
		if loc.Raw != c.Length {
			return fmt.Errorf("chunk %d (%s): the index says %d bytes, the manifest %d", i, ID(c.Hash).Short(), loc.Raw, c.Length)
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

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type fetched struct {
		data []byte
		err  error
	}
	results := make(chan fetched, 2)
	go func() {
		defer close(results)
		for _, s := range spans {
			b, err := r.B.Load(ctx, packName(s.pack), s.off, s.n)
			if err != nil {
				err = fmt.Errorf("pack %s: %w", s.pack.Short(), err)
			}
			select {
			case results <- fetched{b, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()

	whole := sha256.New()
	var written int64
	var raw []byte
	for _, s := range spans {
		f, ok := <-results
		if !ok {
			return ctx.Err()
		}
		if f.err != nil {
			return f.err
		}
		for i := s.first; i < s.end; i++ {
			c := m.Chunks[i]
			loc, _ := r.Lookup(ID(c.Hash))
			rel := int64(loc.Offset) - s.off
			var err error
			raw, err = pack.DecodeBlob(f.data[rel:rel+int64(loc.Stored)], loc, ID(c.Hash), raw)
			if err != nil {
				return err
			}
			if _, err := w.Write(raw); err != nil {
				return err
			}
			whole.Write(raw)
			written += int64(len(raw))
		}
		if progress != nil {
			progress(written)
		}
	}
	if uint64(written) != m.ArchiveSize {
		return fmt.Errorf("restored %d bytes, the manifest says %d", written, m.ArchiveSize)
	}
	if [32]byte(whole.Sum(nil)) != m.ArchiveSHA256 {
		return fmt.Errorf("%w: the restored archive's SHA-256 does not match the manifest", ErrCorruptObject)
	}
	return nil
}
