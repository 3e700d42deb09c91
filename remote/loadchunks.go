package remote

import (
	"context"
	"fmt"

	"github.com/vmasync/vmasync/remote/pack"
)

// maxGap is the most bytes LoadChunks reads through between two chunks
// to fetch them with one request.
const maxGap = 16 << 10

// LoadChunks fetches the chunks with the given hashes (the index must be
// loaded) for readers of parts of an archive (mount, pull --disk): runs
// of chunks stored next to each other in one pack, in the order given,
// (gaps of up to 16 KiB read through) are read with one ranged read each
// (at most 4 MiB), so that a read of
// many small chunks costs few requests. Every chunk is checked against
// its hash; errs[i] is chunk i's error (a damaged chunk fails alone, an
// unreadable range fails its chunks), naming the chunk and its pack.
// stored is the bytes read from the backend.
func (r *Repository) LoadChunks(ctx context.Context, hashes []ID) (data [][]byte, errs []error, stored int64) {
	data, errs = make([][]byte, len(hashes)), make([]error, len(hashes))
	locs := make([]Location, len(hashes))
	for i := 0; i < len(hashes); {
		loc, ok := r.Lookup(hashes[i])
		if !ok {
			errs[i] = fmt.Errorf("chunk %s is not in the repository index", hashes[i].Short())
			i++
			continue
		}
		locs[i] = loc
		// The run of chunks after i stored after it in the same pack, with
		// gaps of at most maxGap read through (a tree's nodes of one level
		// lie between a few of another).
		end, n := i+1, int64(loc.Stored)
		for end < len(hashes) {
			next, ok := r.Lookup(hashes[end])
			gap := int64(next.Offset) - (int64(loc.Offset) + n)
			if !ok || next.Pack != loc.Pack || gap < 0 || gap > maxGap || n+gap+int64(next.Stored) > maxRangeRead {
				break
			}
			locs[end] = next
			n += gap + int64(next.Stored)
			end++
		}
		b, err := r.B.Load(ctx, packName(loc.Pack), int64(loc.Offset), n)
		if err == nil {
			stored += n
		}
		for j := i; j < end; j++ {
			if err != nil {
				errs[j] = fmt.Errorf("chunk %s in pack %s: %w", hashes[j].Short(), loc.Pack.Short(), err)
				continue
			}
			rel := int64(locs[j].Offset) - int64(loc.Offset)
			data[j], errs[j] = pack.DecodeBlob(b[rel:rel+int64(locs[j].Stored)], locs[j], hashes[j], nil) // errors match ErrCorruptObject
		}
		i = end
	}
	return data, errs, stored
}
