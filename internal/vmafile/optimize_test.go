package vmafile

import (
	"bytes"
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/vmasync/vmasync/internal/input"
	"github.com/vmasync/vmasync/vma"
	"github.com/vmasync/vmasync/vma/vmatest"
)

// archive returns a generated archive in vzdump's interleaved order whose
// disks hold text (zstd compresses it several times).
func archive(t *testing.T, size uint64, seed uint64) []byte {
	t.Helper()
	b, err := vmatest.Archive(vmatest.Spec{
		Disks: []vmatest.Disk{{Name: "drive-scsi0", Size: size, Content: vmatest.Text}, {Name: "drive-efidisk0", Size: 540672, Content: vmatest.Mixed}},
		Order: vmatest.ProxmoxLike, PullForward: 0.02, Seed: seed,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func zstdBytes(b []byte) []byte {
	enc, _ := zstd.NewWriter(nil)
	return enc.EncodeAll(b, nil)
}

func optimize(t *testing.T, src, dst string, opt OptimizeOptions) (*OptimizeResult, error) {
	t.Helper()
	in, err := input.Open(context.Background(), src, input.Options{})
	if err != nil {
		return nil, err
	}
	defer in.Close()
	return Optimize(context.Background(), in, dst, opt)
}

// TestProgressOfCompressedInput is the regression test of the progress
// bug: optimize of a .vma.zst showed 100 % at 25-50 % of the work, its
// bar comparing the decompressed offset with the compressed size. The
// Progress it reports now says 100 % only at the end, and moves on the
// way there.
func TestProgressOfCompressedInput(t *testing.T) {
	t.Parallel()
	arch := archive(t, 24<<20, 1)
	z := zstdBytes(arch)
	if len(z) > len(arch)/2 {
		t.Fatalf("test data compresses too little: %d of %d bytes", len(z), len(arch))
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "vzdump-qemu-100-2026_11_22-01_00_00.vma.zst")
	os.WriteFile(p, z, 0o644)
	var seen []input.Progress
	res, err := optimize(t, p, filepath.Join(dir, "out.vma"), OptimizeOptions{
		TempDir:  dir,
		Progress: func(pr input.Progress) { seen = append(seen, pr) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) < 4 {
		t.Fatalf("only %d progress reports", len(seen))
	}
	moving, oldBug := 0, false
	for i, pr := range seen {
		// What the old bar compared: archive bytes against the file size.
		oldBug = oldBug || (pr.Read >= pr.Size && pr.Pos < pr.Size*3/4)
		if pr.Size != int64(len(z)) || pr.Pos > pr.Size {
			t.Fatalf("report %d: position %d of %d, want a position in the %d-byte file", i, pr.Pos, pr.Size, len(z))
		}
		// The decompressor reads ahead (256 KiB and a zstd block), so
		// the last reports may come at the end of the file; every earlier
		// one must be short of it.
		done := float64(pr.Read) / float64(res.InputBytes)
		if pr.Pos == pr.Size && done < 0.9 {
			t.Fatalf("report %d says 100%% with %.0f%% of the archive read", i, 100*done)
		}
		if pr.Pos > 0 && pr.Pos < pr.Size {
			moving++
		}
	}
	if !oldBug {
		t.Error("the archive bytes never passed the file size early: the test would not catch the old bug")
	}
	if moving < len(seen)/2 {
		t.Fatalf("the bar moved in only %d of %d reports", moving, len(seen))
	}
}

// TestProgressOfPlainFile: a plain file, read in two passes with
// positioned reads, is counted too.
func TestProgressOfPlainFile(t *testing.T) {
	t.Parallel()
	arch := archive(t, 8<<20, 2)
	dir := t.TempDir()
	p := filepath.Join(dir, "a.vma")
	os.WriteFile(p, arch, 0o644)
	in, err := input.Open(context.Background(), p, input.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	var last input.Progress
	res, err := Optimize(context.Background(), in, filepath.Join(dir, "out.vma"), OptimizeOptions{Progress: func(pr input.Progress) {
		if pr.Pos < last.Pos || pr.Pos > pr.Size || pr.Size != int64(len(arch)) {
			t.Errorf("position %d after %d, size %d", pr.Pos, last.Pos, pr.Size)
		}
		last = pr
	}})
	if err != nil || !res.TwoPass || last.Size == 0 {
		t.Fatalf("%v %+v", err, res)
	}
	// Headers read in the index pass, data blocks in the copy.
	if in.Pos() < in.Size()*9/10 {
		t.Fatalf("read %d of %d bytes", in.Pos(), in.Size())
	}
}

func TestOptimizeInPlace(t *testing.T) {
	t.Parallel()
	arch := archive(t, 2<<20+4096, 9)
	dir := t.TempDir()
	p := filepath.Join(dir, "vzdump-qemu-100-2026_11_22-01_00_00.vma")
	os.WriteFile(p, arch, 0o640)

	res, err := optimize(t, p, "", OptimizeOptions{})
	if err != nil || res.Skipped || !res.TwoPass {
		t.Fatalf("%v %+v", err, res)
	}
	opt1, _ := os.ReadFile(p)
	if bytes.Equal(opt1, arch) {
		t.Fatal("file not rewritten")
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o640 {
		t.Errorf("mode not kept: %v", st.Mode())
	}
	// Second run: recognised as optimized, left alone.
	if res, err = optimize(t, p, "", OptimizeOptions{}); err != nil || !res.Skipped {
		t.Fatalf("second run: %v %+v", err, res)
	}
	// Force rewrites it to the same bytes.
	if _, err = optimize(t, p, "", OptimizeOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(p); !bytes.Equal(again, opt1) {
		t.Fatal("forced rewrite of an optimized archive changed it")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("stray files: %v", ents)
	}

	// zstd input through a path and to stdout gives the same bytes.
	zp := filepath.Join(dir, "x.vma.zst")
	os.WriteFile(zp, zstdBytes(arch), 0o600)
	var stdout bytes.Buffer
	if _, err := optimize(t, zp, "-", OptimizeOptions{Stdout: &stdout}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(stdout.Bytes(), opt1) {
		t.Fatal("zstd stream optimize differs from file optimize")
	}
	// In place on a compressed file without Compress is refused, file kept.
	if _, err := optimize(t, zp, "", OptimizeOptions{}); err == nil || !strings.Contains(err.Error(), "compressed") {
		t.Fatalf("in-place on .zst: %v", err)
	}
	// Compress zstd output decompresses to the same optimized archive.
	zout := filepath.Join(dir, "o.vma.zst")
	if _, err := optimize(t, p, zout, OptimizeOptions{Compress: "zstd", Force: true}); err != nil {
		t.Fatal(err)
	}
	zr, _ := zstd.NewReader(nil)
	raw, _ := os.ReadFile(zout)
	if dec, err := zr.DecodeAll(raw, nil); err != nil || !bytes.Equal(dec, opt1) {
		t.Fatalf("compressed output: %v", err)
	}
	// An existing destination is replaced only with Force.
	if _, err := optimize(t, p, zout, OptimizeOptions{}); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("existing destination: %v", err)
	}
	// Standard input cannot be replaced.
	in, err := input.Open(context.Background(), "-", input.Options{Stdin: bytes.NewReader(arch)})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if _, err := Optimize(context.Background(), in, "", OptimizeOptions{}); err == nil {
		t.Fatal("in place on stdin accepted")
	}
}

func TestCorruptLeavesSourceAlone(t *testing.T) {
	t.Parallel()
	arch := archive(t, 1<<20, 3)
	hsize := int(uint32(arch[56])<<24 | uint32(arch[57])<<16 | uint32(arch[58])<<8 | uint32(arch[59]))
	cases := map[string][]byte{
		"truncated":    arch[:len(arch)-5000],
		"extent md5":   bytes.Clone(arch),
		"header magic": append([]byte("XMA\x00"), arch[4:]...),
	}
	cases["extent md5"][hsize+30] ^= 1
	for name, bad := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "a.vma")
			os.WriteFile(p, bad, 0o600)
			before := sha256.Sum256(bad)
			for _, dst := range []string{"", filepath.Join(dir, "out.vma")} {
				if _, err := optimize(t, p, dst, OptimizeOptions{}); err == nil {
					t.Fatal("no error")
				} else if !strings.Contains(err.Error(), "byte offset") {
					t.Errorf("error without offset: %v", err)
				}
				now, _ := os.ReadFile(p)
				if sha256.Sum256(now) != before {
					t.Fatal("source changed")
				}
				if ents, _ := os.ReadDir(dir); len(ents) != 1 {
					t.Fatalf("output left behind: %v", ents)
				}
			}
		})
	}
}

var _ = vma.OptimizedUUID
