package vmafile

import (
	"bytes"
	"compress/gzip"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmasync/vmasync/vma"
)

// realSample is Proxmox's own test archive (see vma/testdata/real).
const realSample = "../../vma/testdata/real/dissect-test.vma.gz"

func TestUnpackRealSampleFailsCleanly(t *testing.T) {
	t.Parallel()
	open := func() *gzip.Reader {
		f, err := os.Open(realSample)
		if err != nil {
			t.Fatalf("real sample missing: %v", err)
		}
		t.Cleanup(func() { f.Close() })
		z, err := gzip.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		return z
	}
	dir := filepath.Join(t.TempDir(), "out")
	err := Unpack(open(), dir, UnpackOptions{})
	var fe *vma.FormatError
	if !errors.As(err, &fe) || fe.Cluster != 23 || fe.Device != "drive-scsi0" {
		t.Fatalf("want missing cluster 23 of drive-scsi0, got %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("unpack left %s behind (%v)", dir, err)
	}
	// An existing directory is kept, and left as it was.
	dir = t.TempDir()
	if err := Unpack(open(), dir, UnpackOptions{}); err == nil {
		t.Fatal("no error")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("files left behind: %v", ents)
	}
}

// writeImages makes a pack directory with awkward sizes.
func writeImages(t *testing.T, dir string, sizes map[string]int) map[string][]byte {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	imgs := map[string][]byte{}
	for name, size := range sizes {
		b := make([]byte, size)
		for i := 0; i < size; i += 8192 { // half random, half zero blocks
			end := min(i+4096, size)
			for j := i; j < end; j++ {
				b[j] = byte(rng.Uint32())
			}
		}
		imgs[name] = b
		if err := os.WriteFile(filepath.Join(dir, vma.ImageName(name)), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(dir, "qemu-server.conf"), []byte("memory: 2048\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "qemu-server.fw"), []byte("[OPTIONS]\n"), 0o600)
	return imgs
}

func TestPackUnpackRoundTrip(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	imgs := writeImages(t, src, map[string]int{
		"drive-scsi0":    3<<20 + 100, // not a multiple of 4 KiB
		"drive-efidisk0": 540672,      // not a multiple of 64 KiB
		"drive-sata1":    512,
	})
	var archive bytes.Buffer
	if err := Pack(src, &archive, PackOptions{CTime: 1700000000}); err != nil {
		t.Fatal(err)
	}
	info, err := vma.Scan(bytes.NewReader(archive.Bytes()), vma.ScanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !info.Complete || !info.InOrder || info.MaxClustersPerExtent != vma.ProxmoxClustersPerExtent || info.Header.Configs[0].Name != "qemu-server.conf" {
		t.Fatalf("info %+v", info)
	}
	out := filepath.Join(t.TempDir(), "x")
	if err := Unpack(bytes.NewReader(archive.Bytes()), out, UnpackOptions{}); err != nil {
		t.Fatal(err)
	}
	for name, want := range imgs {
		got, err := os.ReadFile(filepath.Join(out, vma.ImageName(name)))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s differs (%d vs %d bytes, %v)", name, len(got), len(want), err)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(out, "qemu-server.fw")); string(b) != "[OPTIONS]\n" {
		t.Fatalf("config %q", b)
	}
	// Unpacking again into the same directory must not overwrite.
	if err := Unpack(bytes.NewReader(archive.Bytes()), out, UnpackOptions{}); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second unpack: %v", err)
	}
	// --device picks one image.
	one := filepath.Join(t.TempDir(), "one")
	if err := Unpack(bytes.NewReader(archive.Bytes()), one, UnpackOptions{Devices: []string{"drive-sata1"}}); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(one)
	if len(ents) != 3 {
		t.Fatalf("want 2 configs + 1 image, got %v", ents)
	}
}
