package remote

import (
	"crypto/sha256"
	"testing"

	"github.com/vmasync/vmasync/remote/pack"
)

// TestShortChunkRestores: the last chunk of an archive can be a few
// bytes; zstd would frame fewer than 256 bytes without the content size,
// which readers refuse to decode unchecked, so such a chunk must be
// stored in a form every reader decodes (before 2026-12-03 a push could
// store a backup whose last chunk did not read).
func TestShortChunkRestores(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 200, 255, 256, 4096} {
		data := make([]byte, n)
		b := &blobBatch{}
		b.add(sha256.Sum256(data), data)
		b.compress(blobEncoder(""))
		c := b.chunks[0]
		loc := Location{Type: c.typ, Raw: c.raw, Stored: c.stored}
		if _, err := pack.DecodeBlob(b.out[:c.stored], loc, c.hash, nil); err != nil {
			t.Fatalf("%d zero bytes stored as type %d: %v", n, c.typ, err)
		}
	}
}
