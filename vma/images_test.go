package vma

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

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
		if err := os.WriteFile(filepath.Join(dir, ImageName(name)), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(dir, "qemu-server.conf"), []byte("memory: 2048\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "qemu-server.fw"), []byte("[OPTIONS]\n"), 0o600)
	return imgs
}

// TestWriterBlobEdge: a first blob whose len+2 is a multiple of 512 makes
// Proxmox's writer overflow its blob table by one byte; ours must still
// write a readable archive.
func TestWriterBlobEdge(t *testing.T) {
	for _, name := range []string{strings.Repeat("d", 509), strings.Repeat("d", 1021)} {
		var b bytes.Buffer
		w, err := NewWriter(&b, &Header{Devices: []Device{{Name: name, Size: 4096}}})
		if err != nil {
			t.Fatal(err)
		}
		w.WriteCluster(1, 0, []byte("x"))
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		info, err := Scan(bytes.NewReader(b.Bytes()), ScanOptions{})
		if err != nil || info.Devices[0].Name != name {
			t.Fatalf("name of %d bytes: %v", len(name), err)
		}
	}
}
