package vzdump

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFindDumps(t *testing.T) {
	dir := t.TempDir()
	other := t.TempDir()
	for _, n := range []string{
		"vzdump-qemu-105-2026_11_21-01_00_00.vma.zst", "vzdump-qemu-105-2026_11_20-01_00_00.vma",
		"vzdump-qemu-99-2026_11_22-01_00_00.vma.lzo", "vzdump-qemu-105-2026_11_22-01_00_00.vma.dat",
		"vzdump-qemu-105-2026_11_22-01_00_00.tmp", "vzdump-qemu-105-2026_11_20-01_00_00.log",
		"vzdump-lxc-110-2026_11_20-01_00_00.tar.zst", "vzdump-qemu-105-2026_11_23-01_00_00.vma.bz2",
	} {
		os.WriteFile(filepath.Join(dir, n), nil, 0o644)
	}
	os.WriteFile(filepath.Join(other, "x"), nil, 0o644)
	os.Symlink(filepath.Join(other, "x"), filepath.Join(dir, "vzdump-qemu-105-2026_11_19-01_00_00.vma.gz"))
	os.Mkdir(filepath.Join(dir, "vzdump-qemu-105-2026_11_18-01_00_00.vma"), 0o755)
	dumps, skipped, err := Find(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range dumps {
		got = append(got, filepath.Base(d.Path))
	}
	want := []string{"vzdump-qemu-99-2026_11_22-01_00_00.vma.lzo", "vzdump-qemu-105-2026_11_19-01_00_00.vma.gz",
		"vzdump-qemu-105-2026_11_20-01_00_00.vma", "vzdump-qemu-105-2026_11_21-01_00_00.vma.zst"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("dumps:\n got %v\nwant %v", got, want)
	}
	if len(skipped) != 1 || !strings.Contains(skipped[0], "vzdump-lxc-110") {
		t.Errorf("skipped: %v", skipped)
	}
	if d := dumps[1]; d.VMID != "105" || d.Stem != "vzdump-qemu-105-2026_11_19-01_00_00" || d.Time.Day() != 19 {
		t.Errorf("parsed: %+v", d)
	}
}

// TestSidecarPaths: Proxmox VE's names (pve-storage archive_info and
// protection_file_path): the log after the stem, notes and protection
// after the archive, and the stem form read too.
func TestSidecarPaths(t *testing.T) {
	p := "/d/vzdump-qemu-105-2026_11_21-01_00_00.vma.zst"
	if got := strings.Join(SidecarPaths(p, ".notes"), " "); got != p+".notes /d/vzdump-qemu-105-2026_11_21-01_00_00.notes" {
		t.Errorf("notes: %s", got)
	}
	if got := strings.Join(SidecarPaths(p, ".log"), " "); got != "/d/vzdump-qemu-105-2026_11_21-01_00_00.log" {
		t.Errorf("log: %s", got)
	}
	if got := SidecarPath(p, ".protected"); got != p+".protected" {
		t.Errorf("protected: %s", got)
	}
}
