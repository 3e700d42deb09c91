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

func TestBuilderGrow(t *testing.T) {
	t.Parallel()
	var p Builder
	p.SetBuffer(make([]byte, 0, 50))
	blob := make([]byte, 60)
	var caps []int
	for range 28 {
		p.Grow(len(blob), 1600)
		p.Add(ID{}, len(blob), 0, blob)
		caps = append(caps, cap(p.buf))
	}
	// 60 bytes: doubled to 100; 120: doubling reaches 200, an eighth of
	// the limit, so the limit; 1,620 (27 blobs): beyond the limit, only
	// what is needed.
	if caps[0] != 100 || caps[1] != 1600 || caps[25] != 1600 || caps[26] != 1620 || caps[27] != 1680 {
		t.Fatalf("capacities %v", caps)
	}
	if p.Len() != 28*60 {
		t.Fatalf("Len %d", p.Len())
	}
}
