package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDamageCLI: a remote with a garbage index object, a deleted pack and
// a truncated manifest. snapshots, check and prune name what is wrong and
// are not blocked; repair sets damage aside and names the dumps that
// restore what was lost; the next push stores it again; check
// --read-data is then clean and pull gives back optimize's output.
func TestDamageCLI(t *testing.T) {
	dumps := t.TempDir()
	rem := filepath.Join(t.TempDir(), "remote")
	d1 := nightly(t, dumps, "105", 0, "2026_11_20-01_00_00", true)
	nightly(t, dumps, "105", 1, "2026_11_21-01_00_00", false)
	if r := runCLI(t, nil, "push", "--transfers", "1", dumps, rem); r.code != 0 {
		t.Fatalf("push: %v", r)
	}
	os.WriteFile(filepath.Join(rem, "index", strings.Repeat("ab", 32)+".index"), []byte("garbage"), 0o644)
	var packs []string
	filepath.Walk(filepath.Join(rem, "packs"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			packs = append(packs, p)
		}
		return nil
	})
	os.Remove(packs[0])
	man := filepath.Join(rem, "backups", "105", "vzdump-qemu-105-2026_11_20-01_00_00.manifest")
	b, _ := os.ReadFile(man)
	os.WriteFile(man, b[:len(b)/2], 0o644)

	r := runCLI(t, nil, "snapshots", rem)
	if r.code != 0 || !strings.Contains(r.stdout, "2026_11_21") || !strings.Contains(r.stdout, "DAMAGED") || !strings.Contains(r.stderr, "manifest") {
		t.Fatalf("snapshots with damage: %v", r)
	}
	r = runCLI(t, nil, "check", rem)
	if r.code != 1 || !strings.Contains(r.stdout+r.stderr, "ababab") || !strings.Contains(r.stdout+r.stderr, "vzdump-qemu-105-2026_11_20-01_00_00") {
		t.Fatalf("check with damage: %v", r)
	}
	if n := strings.Count(r.stdout+r.stderr, "\n"); n > 12 {
		t.Errorf("check printed %d lines for three damaged objects", n)
	}
	r = runCLI(t, nil, "prune", "--keep-last", "5", rem)
	if r.code != 1 || !strings.Contains(r.stderr, "garbage collection skipped") {
		t.Fatalf("prune with an unreadable manifest: %v", r)
	}
	r = runCLI(t, nil, "repair", "--dry-run", "--dump-dir", dumps, rem)
	if r.code != 0 || !strings.Contains(r.stdout, "would set aside") {
		t.Fatalf("repair --dry-run: %v", r)
	}
	r = runCLI(t, nil, "repair", "--read-data", "--dump-dir", dumps, rem)
	if r.code != 0 || !strings.Contains(r.stdout, "lost data") || !strings.Contains(r.stdout, filepath.Base(d1)) {
		t.Fatalf("repair: %v", r)
	}
	t.Logf("repair:\n%s%s", r.stdout, r.stderr)
	if _, err := os.Stat(filepath.Join(rem, "damaged", "backups", "105", "vzdump-qemu-105-2026_11_20-01_00_00.manifest")); err != nil {
		t.Fatalf("the damaged manifest was not set aside: %v", err)
	}
	r = runCLI(t, nil, "push", dumps, rem)
	if r.code != 0 {
		t.Fatalf("push after repair: %v", r)
	}
	if r = runCLI(t, nil, "check", "--read-data", rem); r.code != 0 {
		t.Fatalf("check after repair and push: %v", r)
	}
	if r = runCLI(t, nil, "prune", "--keep-last", "5", rem); r.code != 0 {
		t.Fatalf("prune after repair: %v", r)
	}
	for _, sel := range []string{"105@2026_11_20", "105@latest"} {
		got := runCLI(t, nil, "pull", rem, sel, "-")
		if got.code != 0 || len(got.stdout) == 0 {
			t.Fatalf("pull %s: %v", sel, got.stderr)
		}
	}
	if got, want := runCLI(t, nil, "pull", rem, "105@2026_11_20", "-").stdout, runCLI(t, nil, "optimize", "--force", d1, "-").stdout; got != want {
		t.Fatal("pulled day 1 differs from optimize's output")
	}
}
