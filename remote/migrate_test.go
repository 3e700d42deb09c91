package remote

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	"github.com/vmasync/vmasync/remote/backend"
	"github.com/vmasync/vmasync/vma/vmatest"
)

// v2Fixture is the spec of the dumps in testdata/v2repo (README there):
// vmagen -disks drive-scsi0:1M:mixed,drive-efidisk0:131072 -order proxmox
// -seed 7 -gen N.
func v2Fixture(gen uint64) vmatest.Spec {
	return vmatest.Spec{Seed: 7, Generation: gen, PullForward: 0.02, Order: vmatest.ProxmoxLike,
		Disks: []vmatest.Disk{{Name: "drive-scsi0", Size: 1 << 20, Content: vmatest.Mixed}, {Name: "drive-efidisk0", Size: 131072}}}
}

// The SHA-256 of 'vmasync optimize' of the fixture's two dumps, by the
// code that made the fixture (commit 5e3c28d).
var v2Optimized = map[string]string{
	"2026_11_20-01_00_00": "0da8ba6fe69981e7340ef303880bdf29f2c06ae42260be33334d0500cd2b7ab1",
	"2026_11_21-01_00_00": "18ec161dd06d52ec1eca337b5b265651edccffbb6eeb6c51fa1934774223a6b6",
}

// TestFormat2Repository (issue 15.5): a repository written by vmasync
// before format 3 (testdata/v2repo) still pulls and checks byte-exactly;
// a push into it stays format 2 (manifests, no trees) and dedups against
// it; Migrate makes it format 3; pushes then store trees, and pull, check
// --read-data and prune work across both kinds of backups.
func TestFormat2Repository(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	dir, f := copyV2Repo(t, ctx)
	r, err := Open(ctx, f)
	if err != nil || r.Config.Version != 2 {
		t.Fatalf("open: %v (version %v)", err, r)
	}
	pullsExactly := func(r *Repository, want map[string]string) {
		t.Helper()
		for stamp, sum := range want {
			got := sha256.Sum256(pullBytes(t, ctx, r, "150", stamp))
			if hex.EncodeToString(got[:]) != sum {
				t.Fatalf("pull of %s: SHA-256 %x, want %s", stamp, got, sum)
			}
		}
	}
	checkClean := func(r *Repository) {
		t.Helper()
		if cr, err := r.Check(ctx, CheckOptions{ReadData: true}); err != nil || len(cr.Problems) > 0 {
			t.Fatalf("check --read-data: %v %v", err, cr)
		}
	}
	if _, err := r.LoadIndex(ctx, false); err != nil {
		t.Fatal(err)
	}
	pullsExactly(r, v2Optimized)
	checkClean(r)
	if notes, err := r.Object(ctx, "backups/150/vzdump-qemu-150-2026_11_21-01_00_00.notes"); err != nil || string(notes) != "notes of day 2\n" {
		t.Fatalf("notes: %q %v", notes, err)
	}

	manifestForm := func(stamp string) byte {
		b, err := os.ReadFile(filepath.Join(dir, "backups/150/vzdump-qemu-150-"+stamp+ManifestExt))
		if err != nil {
			t.Fatal(err)
		}
		return b[0]
	}
	want := map[string]string{}
	for k, v := range v2Optimized {
		want[k] = v
	}
	night := func(gen uint64, stamp string) *PushResult {
		t.Helper()
		dumps := t.TempDir()
		p := writeDump(t, dumps, v2Fixture(gen), "150", stamp, true)
		sum := sha256.Sum256(optimized(t, p))
		want[stamp] = hex.EncodeToString(sum[:])
		res := pushAll(t, ctx, r, dumps)[0]
		if res.Skipped || res.NewBytes > res.ArchiveBytes/4 {
			t.Fatalf("push of night %d: %+v (want most of it shared with the fixture)", gen, res)
		}
		return res
	}
	night(2, "2026_11_22-01_00_00")
	if c := manifestForm("2026_11_22-01_00_00"); c == '{' {
		t.Fatal("a push into a format 2 repository wrote a format 3 manifest")
	}

	if from, err := r.Migrate(ctx); err != nil || from != 2 || r.Config.Version != 3 {
		t.Fatalf("migrate: from %d, %v, now %d", from, err, r.Config.Version)
	}
	if r2, err := Open(ctx, f); err != nil || r2.Config.Version != 3 {
		t.Fatalf("reopen after migrate: %v", err)
	}
	if from, err := r.Migrate(ctx); err != nil || from != 3 {
		t.Fatalf("second migrate: from %d, %v", from, err)
	}
	res := night(3, "2026_11_23-01_00_00")
	if c := manifestForm("2026_11_23-01_00_00"); c != '{' || res.TreeNodes == 0 {
		t.Fatalf("a push after migrate wrote manifest %q, %d tree nodes", c, res.TreeNodes)
	}
	pullsExactly(r, want)
	checkClean(r)

	// Keep the last two: one format 2 manifest, one tree.
	backups, err := r.Backups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Forget(ctx, backups[:2]); err != nil {
		t.Fatal(err)
	}
	if _, err := r.GC(ctx, GCOptions{RepackThreshold: 0.05}); err != nil {
		t.Fatal(err)
	}
	delete(want, "2026_11_20-01_00_00")
	delete(want, "2026_11_21-01_00_00")
	r, err = Open(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.LoadIndex(ctx, false); err != nil {
		t.Fatal(err)
	}
	pullsExactly(r, want)
	checkClean(r)
	if !bytes.Contains(mustRead(t, filepath.Join(dir, ConfigName)), []byte(`"version": 3`)) {
		t.Fatal("config is not version 3")
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// copyV2Repo copies the format 2 fixture (testdata/v2repo) into a new
// directory and returns it and a backend on it.
func copyV2Repo(t *testing.T, ctx context.Context) (string, backend.Backend) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "remote")
	if err := os.CopyFS(dir, os.DirFS("testdata/v2repo")); err != nil {
		t.Fatal(err)
	}
	f, err := NewFs(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	return dir, f
}
