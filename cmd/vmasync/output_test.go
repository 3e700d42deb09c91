package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPullOutput: pull writes through the output layer: an existing file
// (the archive or a file pushed with it) is kept without --force, a
// missing directory is named in one line, and --force replaces.
func TestPullOutput(t *testing.T) {
	dumps := t.TempDir()
	rem := filepath.Join(t.TempDir(), "remote")
	d := nightly(t, dumps, "105", 0, "2026_11_20-01_00_00", true)
	os.WriteFile(strings.TrimSuffix(d, ".vma.zst")+".notes", []byte("db server\n"), 0o644)
	if r := runCLI(t, nil, "push", dumps, rem); r.code != 0 {
		t.Fatalf("push: %v", r)
	}
	name := "vzdump-qemu-105-2026_11_20-01_00_00"

	nodir := filepath.Join(t.TempDir(), "nodir", "sub")
	r := runCLI(t, nil, "pull", rem, "105", filepath.Join(nodir, "x.vma"))
	wantOneErrorLine(t, r, "pull: "+filepath.Join(nodir, "x.vma")+": directory "+nodir+" does not exist")
	if r.code != 1 || strings.Contains(r.stderr, ".tmp") {
		t.Fatalf("missing directory: %v", r)
	}

	dest := t.TempDir()
	if r := runCLI(t, nil, "pull", rem, "105", dest); r.code != 0 {
		t.Fatalf("pull: %v", r)
	}
	vmaPath, notes := filepath.Join(dest, name+".vma"), filepath.Join(dest, name+".vma.notes")
	want, _ := os.ReadFile(vmaPath)
	// Again: the archive exists.
	r = runCLI(t, nil, "pull", rem, "105", dest)
	wantOneErrorLine(t, r, vmaPath, "already exists", "--force")
	// Only the notes exist: refused before anything is written.
	os.Remove(vmaPath)
	os.WriteFile(notes, []byte("mine\n"), 0o644)
	r = runCLI(t, nil, "pull", rem, "105", dest)
	wantOneErrorLine(t, r, notes, "already exists")
	if _, err := os.Stat(vmaPath); !os.IsNotExist(err) {
		t.Fatalf("archive written although a sidecar exists: %v", err)
	}
	if b, _ := os.ReadFile(notes); string(b) != "mine\n" {
		t.Fatalf("notes replaced: %q", b)
	}
	// A file destination that exists.
	file := filepath.Join(t.TempDir(), "x.vma")
	os.WriteFile(file, []byte("keep"), 0o644)
	r = runCLI(t, nil, "pull", rem, "105", file)
	wantOneErrorLine(t, r, file, "already exists")
	if b, _ := os.ReadFile(file); string(b) != "keep" {
		t.Fatal("existing file replaced without --force")
	}
	// --force replaces them all.
	for _, args := range [][]string{{"pull", "--force", rem, "105", dest}, {"pull", "-f", rem, "105", file}} {
		if r := runCLI(t, nil, args...); r.code != 0 {
			t.Fatalf("%v: %v", args, r)
		}
	}
	if b, _ := os.ReadFile(notes); string(b) != "db server\n" {
		t.Fatalf("notes not replaced: %q", b)
	}
	for _, p := range []string{vmaPath, file} {
		if got, _ := os.ReadFile(p); string(got) != string(want) {
			t.Fatalf("%s: not the pulled archive", p)
		}
	}
}

// TestOptimizeOutput: optimize and manifest keep an existing output file
// unless --force is given, and name a missing directory.
func TestOptimizeOutput(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	src := nightly(t, dir, "105", 0, "2026_11_20-01_00_00", true)
	out := filepath.Join(dir, "out.vma")
	os.WriteFile(out, []byte("keep"), 0o644)
	for _, args := range [][]string{{"optimize", src, out}, {"manifest", "-o", out, src}} {
		r := runCLI(t, nil, args...)
		wantOneErrorLine(t, r, out+": already exists (use --force to replace it)")
		if b, _ := os.ReadFile(out); string(b) != "keep" {
			t.Fatalf("%v replaced the file", args)
		}
		force := append([]string{args[0], "--force"}, args[1:]...)
		if r := runCLI(t, nil, force...); r.code != 0 {
			t.Fatalf("%v: %v", force, r)
		}
		os.WriteFile(out, []byte("keep"), 0o644)
	}
	missing := filepath.Join(dir, "nodir", "o.vma")
	r := runCLI(t, nil, "optimize", src, missing)
	wantOneErrorLine(t, r, missing+": directory "+filepath.Dir(missing)+" does not exist")
}
