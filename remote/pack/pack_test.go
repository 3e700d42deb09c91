package pack

import (
	"crypto/sha256"
	"errors"
	"testing"
)

// TestDecodeBlobShortFrame: zstd leaves the content size out of frames
// of fewer than 256 bytes; such a blob (the last chunk of an archive, as
// pushes before 2026-12-03 stored it) decodes, checked by length and
// hash, and a frame without a size claiming more is refused.
func TestDecodeBlobShortFrame(t *testing.T) {
	for _, n := range []int{1, 100, 255} {
		raw := make([]byte, n)
		z := testZstd.EncodeAll(raw, nil)
		loc := Location{Type: BlobZstd, Raw: uint32(n), Stored: uint32(len(z))}
		got, err := DecodeBlob(z, loc, sha256.Sum256(raw), nil)
		if err != nil || len(got) != n {
			t.Fatalf("%d bytes: %v (%d decoded)", n, err, len(got))
		}
		loc.Raw = 300
		if _, err := DecodeBlob(z, loc, sha256.Sum256(raw), nil); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("%d bytes read as 300: %v", n, err)
		}
	}
}
