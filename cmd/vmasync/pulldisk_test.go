package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestPullDiskCLI: pull --disk writes one disk (to a file, to stdout) or
// several (into a directory) with the bytes unpack writes, sparse, and
// refuses to replace a file without --force.
func TestPullDiskCLI(t *testing.T) {
	dumps := t.TempDir()
	rem := filepath.Join(t.TempDir(), "remote")
	dump := nightly(t, dumps, "105", 0, "2026_11_20-01_00_00", false)
	if r := runCLI(t, nil, "push", "-q", dumps, rem); r.code != 0 {
		t.Fatalf("push: %v", r)
	}
	images := filepath.Join(t.TempDir(), "u")
	if r := runCLI(t, nil, "unpack", dump, images); r.code != 0 {
		t.Fatalf("unpack: %v", r)
	}
	img := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(images, "disk-"+name+".raw"))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	out := filepath.Join(t.TempDir(), "scsi0.raw")
	r := runCLI(t, nil, "pull", "--disk", "drive-scsi0", rem, "105@2026_11_20", out)
	if r.code != 0 || !strings.Contains(r.stderr, "drive-scsi0: "+out) || !strings.Contains(r.stderr, "fetched") {
		t.Fatalf("pull --disk: %v", r)
	}
	got, _ := os.ReadFile(out)
	if !bytes.Equal(got, img("drive-scsi0")) {
		t.Fatal("pull --disk drive-scsi0 differs from unpack's image")
	}
	var st syscall.Stat_t
	syscall.Stat(out, &st)
	if st.Blocks*512 >= int64(len(got)) {
		t.Errorf("not sparse: %d bytes allocated for %d", st.Blocks*512, len(got))
	}
	r = runCLI(t, nil, "pull", "--disk", "drive-scsi0", rem, "105", out)
	if r.code != 1 || !strings.Contains(r.stderr, "already exists") {
		t.Fatalf("overwrite without --force: %v", r)
	}
	if r = runCLI(t, nil, "pull", "--disk", "drive-scsi0", "--force", rem, "105", out); r.code != 0 {
		t.Fatalf("--force: %v", r)
	}

	dir := t.TempDir()
	if r = runCLI(t, nil, "pull", "--disk", "drive-efidisk0", "--disk", "drive-tpmstate0", rem, "105", dir); r.code != 0 {
		t.Fatalf("pull two disks: %v", r)
	}
	if names := dirNames(t, dir); strings.Join(names, " ") != "disk-drive-efidisk0.raw disk-drive-tpmstate0.raw" {
		t.Fatalf("directory: %v", names)
	}
	for _, n := range []string{"drive-efidisk0", "drive-tpmstate0"} {
		if got, _ := os.ReadFile(filepath.Join(dir, "disk-"+n+".raw")); !bytes.Equal(got, img(n)) {
			t.Fatalf("%s differs from unpack's image", n)
		}
	}

	r = runCLI(t, nil, "pull", "--disk", "drive-efidisk0", rem, "105", "-")
	if r.code != 0 || r.stdout != string(img("drive-efidisk0")) {
		t.Fatalf("pull --disk to stdout: exit %d, %d bytes", r.code, len(r.stdout))
	}

	r = runCLI(t, nil, "pull", "--disk", "drive-sata9", rem, "105", t.TempDir())
	wantOneErrorLine(t, r, "no disk \"drive-sata9\"", "drive-scsi0")
	r = runCLI(t, nil, "pull", "--disk", "drive-scsi0", "--disk", "drive-efidisk0", rem, "105", filepath.Join(t.TempDir(), "x.raw"))
	if r.code != 2 {
		t.Fatalf("two disks into a file: %v", r)
	}
}
