package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMigrateCommand: 'vmasync migrate' on a repository written before
// format 3 (remote/testdata/v2repo) says what it did, a second run says
// there is nothing to do, and the backups of format 2 still pull and
// check afterwards.
func TestMigrateCommand(t *testing.T) {
	rem := filepath.Join(t.TempDir(), "remote")
	if err := os.CopyFS(rem, os.DirFS("../../remote/testdata/v2repo")); err != nil {
		t.Fatal(err)
	}
	r := runCLI(t, nil, "migrate", rem)
	if r.code != 0 || !strings.Contains(r.stdout, "migrated from format 2 to format 3") {
		t.Fatalf("migrate: %v", r)
	}
	if r = runCLI(t, nil, "migrate", rem); r.code != 0 || !strings.Contains(r.stdout, "already format 3") {
		t.Fatalf("second migrate: %v", r)
	}
	if r = runCLI(t, nil, "check", "--read-data", rem); r.code != 0 {
		t.Fatalf("check after migrate: %v", r)
	}
	out := filepath.Join(t.TempDir(), "out.vma")
	if r = runCLI(t, nil, "pull", rem, "150", out); r.code != 0 {
		t.Fatalf("pull after migrate: %v", r)
	}
	if r = runCLI(t, nil, "migrate", filepath.Join(t.TempDir(), "none")); r.code == 0 {
		t.Fatalf("migrate of no repository: %v", r)
	}
}
