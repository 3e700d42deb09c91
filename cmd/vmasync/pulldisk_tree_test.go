package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmasync/vmasync/remote"
)

// TestPullDiskMissingTree (issue 15): pull --disk of a format 3 backup
// whose chunk tree's packs are gone fails in one line naming the backup
// and the tree node it could not read, and writes nothing.
func TestPullDiskMissingTree(t *testing.T) {
	ctx := context.Background()
	dumps := t.TempDir()
	rem := filepath.Join(t.TempDir(), "remote")
	nightly(t, dumps, "105", 0, "2026_11_20-01_00_00", false)
	if r := runCLI(t, nil, "push", "-q", dumps, rem); r.code != 0 {
		t.Fatalf("push: %v", r)
	}
	// The packs that hold none of the archive's chunks hold its tree.
	r := openLocalRepo(t, rem)
	backups, _ := r.Backups(ctx)
	m, err := r.Manifest(ctx, backups[0])
	if err != nil {
		t.Fatal(err)
	}
	chunkPacks := map[string]bool{}
	for _, c := range m.Chunks {
		loc, _ := r.Lookup(remote.ID(c.Hash))
		chunkPacks[loc.Pack.String()] = true
	}
	removed := 0
	filepath.WalkDir(filepath.Join(rem, remote.PacksDir), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !chunkPacks[strings.TrimSuffix(d.Name(), ".pack")] {
			removed++
			return os.Remove(p)
		}
		return err
	})
	if removed == 0 {
		t.Fatal("no pack of tree nodes")
	}
	out := filepath.Join(t.TempDir(), "scsi0.raw")
	res := runCLI(t, nil, "pull", "--disk", "drive-scsi0", rem, "105", out)
	if res.code == 0 {
		t.Fatalf("pull --disk without the chunk tree: %v", res)
	}
	wantOneErrorLine(t, res, backups[0].Name, "tree node", "corrupt")
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatalf("%s written: %v", out, err)
	}
}
