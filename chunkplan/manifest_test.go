package chunkplan

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"reflect"
	"testing"
)

func testManifest(t *testing.T) (*Manifest, []byte) {
	t.Helper()
	m, err := Build(bytes.NewReader(testInput()[:1<<20]), smallParams)
	if err != nil {
		t.Fatal(err)
	}
	m.Source = "vzdump-qemu-101-2026_11_21-01_00_00.vma.zst"
	m.VMID = "101"
	m.BackupTime = -1234567 // negative values survive too
	m.Devices = []Device{{Name: "drive-scsi0", Size: 32 << 30}, {Name: "", Size: 0}, {Name: "drive-efidisk0", Size: 528 << 10}}
	var buf bytes.Buffer
	n, err := m.WriteTo(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(buf.Len()) {
		t.Fatalf("WriteTo returned %d, wrote %d", n, buf.Len())
	}
	return m, buf.Bytes()
}

// resum recomputes the trailing checksum after a deliberate edit.
func resum(b []byte) {
	s := sha256.Sum256(b[:len(b)-32])
	copy(b[len(b)-32:], s[:])
}

func TestManifestRoundTrip(t *testing.T) {
	m, enc := testManifest(t)
	wantLen := 16 + 4 + 8 + 4 + 4 + 4 + 8 + 32 + 8 + (2 + len(m.Source)) + (2 + len(m.VMID)) + 2 + (2 + 11 + 8 + 2 + 0 + 8 + 2 + 14 + 8) + 8 + 36*len(m.Chunks) + 32
	if len(enc) != wantLen {
		t.Fatalf("encoded %d bytes, want %d", len(enc), wantLen)
	}
	if string(enc[:16]) != "VMASYNC-MANIFEST" || binary.BigEndian.Uint32(enc[16:]) != 1 {
		t.Fatalf("bad magic/version: %q", enc[:20])
	}
	got, err := ReadManifest(bytes.NewReader(enc))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, m) {
		t.Fatalf("round trip differs:\n got %+v\nwant %+v", got, m)
	}
	// And an empty manifest.
	e, err := Build(bytes.NewReader(nil), DefaultParams())
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := e.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	got, err = ReadManifest(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if got.ArchiveSize != 0 || len(got.Chunks) != 0 || got.Params != DefaultParams() {
		t.Fatalf("empty round trip: %+v", got)
	}
}

func TestManifestTruncated(t *testing.T) {
	_, enc := testManifest(t)
	for n := 0; n < len(enc); n++ {
		_, err := ReadManifest(bytes.NewReader(enc[:n]))
		if !errors.Is(err, ErrCorruptManifest) {
			t.Fatalf("truncated to %d of %d bytes: err = %v", n, len(enc), err)
		}
	}
	_, err := ReadManifest(bytes.NewReader(append(bytes.Clone(enc), 0)))
	if !errors.Is(err, ErrCorruptManifest) {
		t.Fatalf("trailing byte: err = %v", err)
	}
}

func TestManifestFlippedBytes(t *testing.T) {
	_, enc := testManifest(t)
	for i := range enc {
		for _, bit := range []byte{0x01, 0x80} {
			b := bytes.Clone(enc)
			b[i] ^= bit
			if _, err := ReadManifest(bytes.NewReader(b)); err == nil {
				t.Fatalf("flipping bit %#x of byte %d went unnoticed", bit, i)
			}
		}
	}
}

func TestManifestVersionRefused(t *testing.T) {
	_, enc := testManifest(t)
	for _, v := range []uint32{0, 2, 0xffffffff} {
		b := bytes.Clone(enc)
		binary.BigEndian.PutUint32(b[16:], v)
		resum(b)
		_, err := ReadManifest(bytes.NewReader(b))
		if !errors.Is(err, ErrUnsupportedVersion) {
			t.Fatalf("version %d: err = %v, want ErrUnsupportedVersion", v, err)
		}
		// Also refused when only the header is present.
		if _, err := ReadManifest(bytes.NewReader(b[:20])); !errors.Is(err, ErrUnsupportedVersion) {
			t.Fatalf("version %d, header only: err = %v", v, err)
		}
	}
}

func TestManifestSemanticChecks(t *testing.T) {
	m, enc := testManifest(t)
	countOff := len(enc) - 32 - 36*len(m.Chunks) - 8

	// A consistent-looking header claiming 2^40 chunks for 2^40 bytes,
	// followed by nothing: must fail without allocating for the claim.
	b := bytes.Clone(enc[:countOff+8])
	binary.BigEndian.PutUint64(b[40:], 1<<40)
	binary.BigEndian.PutUint64(b[countOff:], 1<<40)
	b = append(b, make([]byte, 32)...)
	resum(b)
	allocs := testing.AllocsPerRun(3, func() {
		if _, err := ReadManifest(bytes.NewReader(b)); !errors.Is(err, ErrCorruptManifest) {
			t.Fatalf("huge claimed count: err = %v", err)
		}
	})
	if allocs > 100 {
		t.Errorf("%v allocations reading a tiny manifest", allocs)
	}

	// Properly checksummed, but inconsistent content.
	edits := map[string]func(b []byte){
		"size mismatch":     func(b []byte) { binary.BigEndian.PutUint64(b[40:], m.ArchiveSize+1) },
		"bad params":        func(b []byte) { binary.BigEndian.PutUint32(b[36:], 0) },
		"zero chunk length": func(b []byte) { binary.BigEndian.PutUint32(b[countOff+8+32:], 0) },
		"too many chunks":   func(b []byte) { binary.BigEndian.PutUint64(b[countOff:], uint64(len(m.Chunks)+1)) },
		"too few chunks":    func(b []byte) { binary.BigEndian.PutUint64(b[countOff:], uint64(len(m.Chunks)-1)) },
		"long string":       func(b []byte) { binary.BigEndian.PutUint16(b[88:], 5000) },
		"bad magic":         func(b []byte) { b[0] = 'X' },
	}
	for name, edit := range edits {
		b := bytes.Clone(enc)
		edit(b)
		resum(b)
		if _, err := ReadManifest(bytes.NewReader(b)); !errors.Is(err, ErrCorruptManifest) {
			t.Errorf("%s: err = %v, want ErrCorruptManifest", name, err)
		}
	}
}

func TestWriteToRefusesInconsistent(t *testing.T) {
	m, _ := testManifest(t)
	for name, edit := range map[string]func(m *Manifest){
		"size":    func(m *Manifest) { m.ArchiveSize++ },
		"params":  func(m *Manifest) { m.Params.AverageBits = 0 },
		"length":  func(m *Manifest) { m.Chunks[0].Length = uint32(m.Params.MaxSize) + 1 },
		"source":  func(m *Manifest) { m.Source = string(make([]byte, MaxStringLen+1)) },
		"devices": func(m *Manifest) { m.Devices = make([]Device, MaxDevices+1) },
	} {
		c := *m
		c.Chunks = append([]ChunkRef(nil), m.Chunks...)
		edit(&c)
		var buf bytes.Buffer
		if _, err := c.WriteTo(&buf); err == nil {
			t.Errorf("%s: WriteTo accepted an inconsistent manifest", name)
		}
	}
}
