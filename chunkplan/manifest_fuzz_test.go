package chunkplan

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// TestManifestSize: the size a header implies is the manifest's size; a
// prefix too short for the header says so; a truncated manifest is told
// apart by its size without reading it.
func TestManifestSize(t *testing.T) {
	_, enc := testManifest(t)
	for _, n := range []int{len(enc), len(enc) - 100, 300} {
		got, err := ManifestSize(enc[:n])
		if err != nil || got != int64(len(enc)) {
			t.Fatalf("prefix %d: %d, %v; want %d", n, got, err, len(enc))
		}
	}
	if _, err := ManifestSize(enc[:40]); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("short prefix: %v", err)
	}
	bad := bytes.Clone(enc)
	bad[0] = 'X'
	if _, err := ManifestSize(bad); !errors.Is(err, ErrCorruptManifest) {
		t.Fatalf("bad magic: %v", err)
	}
}

// FuzzManifest: ReadManifest and ManifestSize on arbitrary bytes never
// panic, and agree: a manifest that reads has the size its header says.
func FuzzManifest(f *testing.F) {
	m, err := Build(bytes.NewReader(testInput()[:1<<16]), smallParams)
	if err != nil {
		f.Fatal(err)
	}
	m.Devices = []Device{{Name: "drive-scsi0", Size: 1 << 16}}
	var buf bytes.Buffer
	m.WriteTo(&buf)
	f.Add(buf.Bytes())
	f.Add([]byte(ManifestMagic + "\x00\x00\x00\x01"))
	f.Fuzz(func(t *testing.T, data []byte) {
		size, serr := ManifestSize(data)
		if _, err := ReadManifest(bytes.NewReader(data)); err == nil {
			if serr != nil || size != int64(len(data)) {
				t.Fatalf("a manifest that reads: ManifestSize = %d, %v; it has %d bytes", size, serr, len(data))
			}
		}
	})
}
