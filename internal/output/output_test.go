package output

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

func write(t *testing.T, path string, opt Options, data string) error {
	t.Helper()
	o, err := Create(context.Background(), path, opt)
	if err != nil {
		return err
	}
	defer o.Abort()
	if _, err := io.WriteString(o, data); err != nil {
		return err
	}
	return o.Commit()
}

func TestOverwriteRefusedWithoutForce(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "x.vma")
	os.WriteFile(p, []byte("old"), 0o644)
	err := write(t, p, Options{}, "new")
	if !errors.Is(err, fs.ErrExist) || !strings.Contains(err.Error(), "already exists") || !strings.HasPrefix(err.Error(), p+": ") {
		t.Fatalf("got %v", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "old" {
		t.Fatalf("file changed: %q", b)
	}
	if err := write(t, p, Options{Force: true}, "new"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "new" {
		t.Fatalf("not replaced: %q", b)
	}
	if ents, _ := os.ReadDir(filepath.Dir(p)); len(ents) != 1 {
		t.Fatalf("stray files: %v", ents)
	}
}

// TestAppearedMeanwhile: a file created at the final name while the
// output was written is not replaced without Force.
func TestAppearedMeanwhile(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "x.vma")
	o, err := Create(context.Background(), p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(o, "new")
	os.WriteFile(p, []byte("other"), 0o644)
	if err := o.Commit(); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("got %v", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "other" {
		t.Fatalf("replaced: %q", b)
	}
	if ents, _ := os.ReadDir(filepath.Dir(p)); len(ents) != 1 {
		t.Fatalf("stray files: %v", ents)
	}
}

func TestMissingDirectory(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "nodir", "sub")
	p := filepath.Join(dir, "x.vma")
	err := write(t, p, Options{}, "x")
	want := p + ": directory " + dir + " does not exist"
	if err == nil || err.Error() != want {
		t.Fatalf("got %v, want %q", err, want)
	}
	if err := Check(p, Options{}); err == nil || err.Error() != want {
		t.Fatalf("Check: %v", err)
	}
	// A file where the directory should be.
	f := filepath.Join(t.TempDir(), "file")
	os.WriteFile(f, nil, 0o644)
	if err := Check(filepath.Join(f, "x"), Options{}); err == nil || !strings.Contains(err.Error(), "is not a directory") {
		t.Fatalf("got %v", err)
	}
	if err := Check(t.TempDir(), Options{Force: true}); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Fatalf("got %v", err)
	}
}

// TestNoPartialOutput: an error before Commit (the producer's or a
// cancelled context) leaves nothing at the path, and a Force output keeps
// the old file.
func TestNoPartialOutput(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := filepath.Join(dir, "x.vma")
	for _, force := range []bool{false, true} {
		o, err := Create(context.Background(), p, Options{Force: force, Compress: "zstd", Buffered: true})
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(o, strings.Repeat("data", 100000))
		o.Abort()
		if force {
			if b, _ := os.ReadFile(p); string(b) != "old" {
				t.Fatalf("old file changed: %q", b)
			}
		} else if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("output left: %v", err)
		}
		os.WriteFile(p, []byte("old"), 0o644)
	}
	os.Remove(p)
	ctx, cancel := context.WithCancelCause(context.Background())
	o, err := Create(ctx, p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("interrupted")
	cancel(boom)
	if _, err := io.WriteString(o, "x"); !errors.Is(err, boom) {
		t.Fatalf("write after cancel: %v", err)
	}
	o.Abort()
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("files left: %v", ents)
	}
}

func TestStdoutAndZstd(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	data := strings.Repeat("archive ", 50000)
	if err := write(t, "-", Options{Stdout: &out, Compress: "zstd", Buffered: true}, data); err != nil {
		t.Fatal(err)
	}
	zr, _ := zstd.NewReader(nil)
	dec, err := zr.DecodeAll(out.Bytes(), nil)
	if err != nil || string(dec) != data {
		t.Fatalf("decoded %d bytes, %v", len(dec), err)
	}
	out.Reset()
	o, err := Create(context.Background(), "-", Options{Stdout: &out})
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(o, "plain")
	if err := o.Commit(); err != nil || out.String() != "plain" || o.Written() != 5 {
		t.Fatalf("%v %q %d", err, out.String(), o.Written())
	}
	if _, err := Create(context.Background(), "-", Options{Compress: "xz"}); err == nil {
		t.Fatal("unknown compression accepted")
	}
}

// TestDevice: an existing device is written in place, without Force.
func TestDevice(t *testing.T) {
	t.Parallel()
	if err := write(t, os.DevNull, Options{}, "x"); err != nil {
		t.Fatal(err)
	}
}

// TestAbortedStdoutIsNotWhole: a zstd stream on standard output that is
// aborted does not end like a whole one.
func TestAbortedStdoutIsNotWhole(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	o, err := Create(context.Background(), "-", Options{Stdout: &out, Compress: "zstd", Buffered: true})
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(o, strings.Repeat("archive ", 300000))
	o.Abort()
	zr, _ := zstd.NewReader(bytes.NewReader(out.Bytes()))
	if _, err := io.ReadAll(zr); err == nil {
		t.Fatal("an aborted stream decodes as whole")
	}
}
