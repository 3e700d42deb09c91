package vmafile

// Delete this file with vma/deprecated.go.

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/vmasync/vmasync/vma"
)

// TestDeprecatedPack: vma.Pack, kept for remote's tests, writes the same
// archive as Pack.
func TestDeprecatedPack(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	writeImages(t, src, map[string]int{"drive-scsi0": 1<<20 + 100, "drive-efidisk0": 540672})
	os.WriteFile(filepath.Join(src, "a-note"), []byte("x"), 0o600)
	u := vma.RandomUUID()
	var a, b bytes.Buffer
	if err := Pack(src, &a, PackOptions{UUID: u, CTime: 1700000000}); err != nil {
		t.Fatal(err)
	}
	if err := vma.Pack(src, &b, vma.PackOptions{UUID: u, CTime: 1700000000}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("vma.Pack and vmafile.Pack differ")
	}
}
