package pack

import (
	"crypto/sha256"
	"errors"
	"slices"
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
	p.SetBuffer(make([]byte, 0, 100))
	blob := make([]byte, 60)
	var caps []int
	for range 6 {
		p.Grow(len(blob), 300)
		p.Add(ID{}, len(blob), 0, blob)
		caps = append(caps, cap(p.buf))
	}
	// 60, 120 (doubled to 200), 180, 240 (doubled, capped at 300), 300,
	// 360: beyond the limit only what is needed.
	want := []int{100, 200, 200, 300, 300, 360}
	if !slices.Equal(caps, want) {
		t.Fatalf("capacities %v, want %v", caps, want)
	}
	if p.Len() != 360 {
		t.Fatalf("Len %d", p.Len())
	}
}
