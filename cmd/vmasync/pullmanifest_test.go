package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmasync/vmasync/vma/vmatest"
)

// TestPullManifest: 'pull --manifest' of a pushed backup, built from the
// chunk tree the repository stores, is byte for byte the manifest
// 'vmasync manifest' writes from the dump itself, and 'report' reads it.
func TestPullManifest(t *testing.T) {
	dir := t.TempDir()
	dumps := filepath.Join(dir, "dumps")
	os.Mkdir(dumps, 0o755)
	arch, err := vmatest.Archive(vmatest.Spec{Seed: 3, Order: vmatest.ProxmoxLike,
		Disks: []vmatest.Disk{{Name: "drive-scsi0", Size: 8 << 20, Content: vmatest.Mixed}}})
	if err != nil {
		t.Fatal(err)
	}
	dump := filepath.Join(dumps, "vzdump-qemu-140-2026_11_20-01_00_00.vma")
	os.WriteFile(dump, arch, 0o644)
	rem := filepath.Join(dir, "remote")
	if r := runCLI(t, nil, "push", "-q", dumps, rem); r.code != 0 {
		t.Fatalf("push: %v", r)
	}
	fromDump := filepath.Join(dir, "from-dump.manifest")
	if r := runCLI(t, nil, "manifest", "-o", fromDump, dump); r.code != 0 {
		t.Fatalf("manifest: %v", r)
	}
	out := filepath.Join(dir, "out")
	os.Mkdir(out, 0o755)
	r := runCLI(t, nil, "pull", "--manifest", rem, "140", out)
	pulled := filepath.Join(out, "vzdump-qemu-140-2026_11_20-01_00_00.manifest")
	if r.code != 0 || !strings.Contains(r.stderr, "the manifest:") {
		t.Fatalf("pull --manifest: %v", r)
	}
	a, _ := os.ReadFile(fromDump)
	b, err := os.ReadFile(pulled)
	if err != nil || len(a) == 0 || !bytes.Equal(a, b) {
		t.Fatalf("pulled manifest (%d bytes, %v) differs from 'vmasync manifest' of the dump (%d bytes)", len(b), err, len(a))
	}
	if r := runCLI(t, nil, "report", pulled, dump); r.code != 0 {
		t.Fatalf("report of the pulled manifest: %v", r)
	}
	if r := runCLI(t, nil, "pull", "--manifest", "--compress", "zstd", rem, "140", out); r.code != 2 {
		t.Fatalf("--manifest with --compress: %v", r)
	}
}
