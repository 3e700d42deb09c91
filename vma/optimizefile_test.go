package vma

import (
	"bytes"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

func TestOptimizeFileInPlace(t *testing.T) {
	src := t.TempDir()
	writeImages(t, src, map[string]int{"drive-scsi0": 2<<20 + 4096, "drive-efidisk0": 540672})
	arch := shuffledArchive(t, src, 9)
	dir := t.TempDir()
	p := filepath.Join(dir, "vzdump-qemu-100-2026_11_22-01_00_00.vma")
	os.WriteFile(p, arch, 0o640)

	res, err := OptimizeFile(p, "", OptimizeFileOptions{})
	if err != nil || res.Skipped {
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
	res, err = OptimizeFile(p, "", OptimizeFileOptions{})
	if err != nil || !res.Skipped {
		t.Fatalf("second run: %v %+v", err, res)
	}
	// --force rewrites it to the same bytes.
	if _, err = OptimizeFile(p, "", OptimizeFileOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(p); !bytes.Equal(again, opt1) {
		t.Fatal("forced rewrite of an optimized archive changed it")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("stray files: %v", ents)
	}

	// zstd input through a path and to stdout gives the same bytes.
	var zbuf bytes.Buffer
	zw, _ := zstd.NewWriter(&zbuf)
	zw.Write(arch)
	zw.Close()
	zp := filepath.Join(dir, "x.vma.zst")
	os.WriteFile(zp, zbuf.Bytes(), 0o600)
	var stdout bytes.Buffer
	if _, err := OptimizeFile(zp, "-", OptimizeFileOptions{Stdout: &stdout}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(stdout.Bytes(), opt1) {
		t.Fatal("zstd stream optimize differs from file optimize")
	}
	// In place on a compressed file without --compress is refused, file kept.
	if _, err := OptimizeFile(zp, "", OptimizeFileOptions{}); err == nil || !strings.Contains(err.Error(), "compressed") {
		t.Fatalf("in-place on .zst: %v", err)
	}
	// --compress zstd output decompresses to the same optimized archive.
	zout := filepath.Join(dir, "o.vma.zst")
	if _, err := OptimizeFile(p, zout, OptimizeFileOptions{Compress: "zstd", Force: true}); err != nil {
		t.Fatal(err)
	}
	zr, _ := zstd.NewReader(nil)
	raw, _ := os.ReadFile(zout)
	dec, err := zr.DecodeAll(raw, nil)
	if err != nil || !bytes.Equal(dec, opt1) {
		t.Fatalf("compressed output: %v", err)
	}
}

func TestOptimizeFileCorruptLeavesSourceAlone(t *testing.T) {
	src := t.TempDir()
	writeImages(t, src, map[string]int{"drive-scsi0": 1 << 20})
	arch := shuffledArchive(t, src, 3)
	cases := map[string][]byte{
		"truncated":    arch[:len(arch)-5000],
		"extent md5":   append(append([]byte{}, arch[:13000]...), arch[13000:]...),
		"header magic": append([]byte("XMA\x00"), arch[4:]...),
	}
	// Break the first extent's checksum.
	cases["extent md5"][int(binary32(arch[56:60]))+30] ^= 1
	for name, bad := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "a.vma")
			os.WriteFile(p, bad, 0o600)
			before := sha256.Sum256(bad)
			for _, dst := range []string{"", filepath.Join(dir, "out.vma")} {
				if _, err := OptimizeFile(p, dst, OptimizeFileOptions{}); err == nil {
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

func binary32(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}
