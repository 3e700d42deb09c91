package remote

import (
	"bytes"
	"crypto/sha256"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/klauspost/compress/zstd"
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

// TestBlobWindowKeepsFrames: the blob encoders' small window (which
// saves each encoder state megabytes of history) stores the same bytes
// as the levels' default windows for chunks of every size the default
// chunker cuts, so stored sizes and dedup figures do not move.
func TestBlobWindowKeepsFrames(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(7, 8))
	const text = "the quick brown fox jumps over the lazy dog "
	for _, l := range []CompressionLevel{CompressFastest, CompressDefault, CompressBetter} {
		lvl := map[CompressionLevel]zstd.EncoderLevel{CompressFastest: zstd.SpeedFastest, CompressDefault: zstd.SpeedDefault, CompressBetter: zstd.SpeedBetterCompression}[l]
		wide, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(lvl), zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)), zstd.WithEncoderCRC(false))
		for i := range 300 {
			n := 1 + rng.IntN(64<<10)
			if i%10 == 0 {
				n = 1 + rng.IntN(2048)
			}
			data := make([]byte, n)
			for j := range data {
				if i%3 == 0 || rng.IntN(5) == 0 {
					data[j] = byte(rng.IntN(256))
				} else {
					data[j] = text[j%len(text)]
				}
			}
			if got, want := blobEncoder(l).EncodeAll(data, nil), wide.EncodeAll(data, nil); !bytes.Equal(got, want) {
				t.Fatalf("level %s, %d bytes: %d-byte frame with the blob window, %d with the default", l, n, len(got), len(want))
			}
		}
	}
}
