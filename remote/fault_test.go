package remote

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/vmasync/vmasync/remote/backend"
	"github.com/vmasync/vmasync/remote/pack"
)

// TestPushResumesAfterUploadFailure fails the upload of the third pack of
// day 1, then pushes again: the packs of the failed run are found, not
// uploaded again, and the backup ends complete.
func TestPushResumesAfterUploadFailure(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	dumps := t.TempDir()
	p1 := writeDump(t, dumps, vmSpec(11, 0), "200", "2026_11_20-02_00_00", true)
	before := snapshotDir(t, dumps)
	r, f, _ := localRepo(t, ctx, 1<<20) // many packs

	var mu sync.Mutex
	var first []string
	packs := 0
	setUploadHook(t, r, func(name string) error {
		mu.Lock()
		defer mu.Unlock()
		if strings.HasPrefix(name, PacksDir+"/") {
			packs++
			if packs == 3 {
				return errors.New("injected: connection reset")
			}
			first = append(first, name)
		}
		return nil
	})
	if _, err := r.LoadIndex(ctx, true); err != nil {
		t.Fatal(err)
	}
	_, err := r.Push(ctx, mustDump(t, p1), PushOptions{})
	if err == nil || !strings.Contains(err.Error(), "injected") {
		t.Fatalf("push with a failing upload: err = %v", err)
	}
	if backups, _ := r.Backups(ctx); len(backups) != 0 {
		t.Fatalf("a failed push left a visible backup: %+v", backups)
	}
	if len(first) < 2 {
		t.Fatalf("only %d packs uploaded before the failure", len(first))
	}

	// Second run, a new process as far as the repository is concerned.
	var second []string
	r2, err := Open(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	setUploadHook(t, r2, func(name string) error {
		if strings.HasPrefix(name, PacksDir+"/") {
			mu.Lock()
			second = append(second, name)
			mu.Unlock()
		}
		return nil
	})
	r2.Config.PackSize = 1 << 20
	st, err := r2.LoadIndex(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if st.Recovered < len(first) {
		t.Errorf("recovered %d packs of the failed run, want >= %d", st.Recovered, len(first))
	}
	res, err := r2.Push(ctx, mustDump(t, p1), PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.SharedBytes == 0 {
		t.Errorf("the second run found none of the first run's chunks")
	}
	// What the failed run uploaded is resumed, not saved (issue 16.4).
	if res.ResumedBytes == 0 || res.Saving() >= float64(res.SharedBytes)/float64(res.ArchiveBytes) {
		t.Errorf("resumed %d of %d shared bytes; saving %.3f", res.ResumedBytes, res.SharedBytes, res.Saving())
	}
	for _, a := range second {
		for _, b := range first {
			if a == b {
				t.Errorf("pack %s uploaded twice", a)
			}
		}
	}
	cr, err := r2.Check(ctx, CheckOptions{ReadData: true})
	if err != nil || len(cr.Problems) > 0 {
		t.Fatalf("check --read-data after the resumed push: %v %v", err, cr.Problems)
	}
	if got, want := pullBytes(t, ctx, r2, "200", "latest"), optimized(t, p1); string(got) != string(want) {
		t.Fatalf("pulled archive differs from optimize's output")
	}
	if after := snapshotDir(t, dumps); !mapsEqualExcept(before, after) {
		t.Errorf("the dump directory changed")
	}
}

// TestCheckFindsDamage corrupts one pack and deletes another on the remote:
// check names the affected backups and chunks.
func TestCheckFindsDamage(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	dumps := t.TempDir()
	writeDump(t, dumps, vmSpec(13, 0), "300", "2026_11_20-03_00_00", false)
	r, _, remoteDir := localRepo(t, ctx, 1<<20)
	pushAll(t, ctx, r, dumps)
	if cr, err := r.Check(ctx, CheckOptions{ReadData: true}); err != nil || len(cr.Problems) != 0 || cr.PacksRead < 3 {
		t.Fatalf("clean repository: %v %+v", err, cr)
	}
	var packFiles []string
	filepath.Walk(filepath.Join(remoteDir, PacksDir), func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			packFiles = append(packFiles, p)
		}
		return nil
	})
	// Flip one byte in the first blob of a pack.
	b, err := os.ReadFile(packFiles[0])
	if err != nil {
		t.Fatal(err)
	}
	b[10] ^= 0x55
	if err := os.WriteFile(packFiles[0], b, 0o644); err != nil {
		t.Fatal(err)
	}
	cr, err := r.Check(ctx, CheckOptions{})
	if err != nil || len(cr.Problems) != 0 {
		t.Fatalf("check without --read-data cannot see a flipped byte, yet: %v %v", err, cr.Problems)
	}
	cr, err = r.Check(ctx, CheckOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(cr.Problems) == 0 {
		t.Fatal("check --read-data missed a corrupted pack")
	}
	p := cr.Problems[0]
	if p.Backup != "vzdump-qemu-300-2026_11_20-03_00_00" || len(p.Pack) != 64 || !strings.Contains(p.Msg, "1 chunks damaged") {
		t.Errorf("problem does not name backup, pack and damaged chunks: %s", p)
	}
	t.Logf("corrupt pack: %s", p)

	// A flipped byte in another pack's header: the chunks still read, but
	// the pack is damaged (prune could not repack it) and check says so.
	if b, err = os.ReadFile(packFiles[2]); err != nil {
		t.Fatal(err)
	}
	b[len(b)-pack.TrailerLen-5] ^= 0x55 // in the last blob's SHA-256
	if err := os.WriteFile(packFiles[2], b, 0o644); err != nil {
		t.Fatal(err)
	}
	if cr, err = r.Check(ctx, CheckOptions{ReadData: true}); err != nil {
		t.Fatal(err)
	}
	damaged := strings.TrimSuffix(filepath.Base(packFiles[2]), packSuffix)
	found := false
	for _, p := range cr.Problems {
		if p.Pack == damaged && strings.Contains(p.Msg, "header") {
			found = true
			t.Logf("damaged header: %s", p)
		}
	}
	if !found {
		t.Fatalf("check --read-data missed the damaged header of pack %s: %v", damaged, cr.Problems)
	}

	// A missing pack: check (without reading data) says what is gone.
	if err := os.Remove(packFiles[1]); err != nil {
		t.Fatal(err)
	}
	cr, err = r.Check(ctx, CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(cr.Problems) == 0 || cr.Problems[0].Backup == "" || !strings.Contains(cr.Problems[0].String(), "data missing") {
		t.Fatalf("missing pack not reported: %v", cr.Problems)
	}
	t.Logf("missing pack: %s", cr.Problems[0])
}

// TestNewerFormatRefused: a repository written by a newer vmasync is
// refused with a clear error.
func TestNewerFormatRefused(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, ConfigName), []byte(`{"format":"vmasync-repository","version":99,"chunker":{"polynomial":"0x1"},"compression":"zstd","pack_size":1}`), 0o644)
	f, _ := NewFs(ctx, dir)
	_, err := Open(ctx, f)
	if !errors.Is(err, ErrNewerFormat) || !strings.Contains(err.Error(), "version 99") {
		t.Fatalf("err = %v", err)
	}
	if _, err := Open(ctx, mustFs(t, t.TempDir())); !errors.Is(err, ErrNotRepository) {
		t.Fatalf("empty dir: err = %v", err)
	}
}

func mustFs(t *testing.T, s string) (f backend.Backend) {
	f, err := NewFs(testCtx(t), s)
	if err != nil {
		t.Fatal(err)
	}
	return f
}
