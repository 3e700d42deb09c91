package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/vmasync/vmasync/vma"
	"github.com/vmasync/vmasync/vma/vmatest"
)

func zstdBytes(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := zstd.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

// TestOptimizeDeterministic: for every generated shape, the three stored
// orders, through a file and as zstd on stdin, give the same bytes; the
// result verifies, is optimized, and unpacks to the generator's images.
func TestOptimizeDeterministic(t *testing.T) {
	t.Parallel()
	for _, ns := range vmatest.Shapes() {
		t.Run(ns.Name, func(t *testing.T) {
			dir := t.TempDir()
			var want []byte
			for _, order := range vmatest.Orders {
				spec := ns.Spec
				spec.Order = order
				arch, err := vmatest.Archive(spec)
				if err != nil {
					t.Fatal(err)
				}
				src := filepath.Join(dir, "in-"+order.String()+".vma")
				os.WriteFile(src, arch, 0o600)
				outs := map[string][]byte{}

				dst := filepath.Join(dir, "out-"+order.String()+".vma")
				if r := runCLI(t, nil, "optimize", src, dst); r.code != 0 {
					t.Fatalf("file: %s", r)
				}
				outs["file"], _ = os.ReadFile(dst)
				r := runCLI(t, bytes.NewReader(zstdBytes(t, arch)), "optimize", "--window", "65536", "-", "-")
				if r.code != 0 {
					t.Fatalf("zstd stdin: %s", r)
				}
				outs["zstd stdin"] = []byte(r.stdout)
				if before, _ := os.ReadFile(src); !bytes.Equal(before, arch) {
					t.Fatal("source changed")
				}
				for how, got := range outs {
					if want == nil {
						want = got
					} else if !bytes.Equal(got, want) {
						t.Fatalf("%s, %s: output differs from the first (%d vs %d bytes)", order, how, len(got), len(want))
					}
				}
			}
			final := filepath.Join(dir, "final.vma")
			os.WriteFile(final, want, 0o600)
			if r := runCLI(t, nil, "verify", final); r.code != 0 {
				t.Fatalf("verify: %s", r)
			}
			info, err := vma.Scan(bytes.NewReader(want), vma.ScanOptions{})
			if err != nil || !info.Optimized || info.Header.UUID != vma.OptimizedUUID {
				t.Fatalf("not optimized: %v %+v", err, info)
			}
			if info.Header.CTime != ns.Spec.CTime() {
				t.Errorf("ctime %d, want %d", info.Header.CTime, ns.Spec.CTime())
			}
			out := filepath.Join(dir, "unpacked")
			if r := runCLI(t, nil, "unpack", final, out); r.code != 0 {
				t.Fatalf("unpack: %s", r)
			}
			for i, d := range ns.Spec.Disks {
				name := vma.ImageName(d.Name)
				if d.Name == vma.VMStateName {
					name = "vmstate.bin"
				}
				got, err := os.ReadFile(filepath.Join(out, name))
				if err != nil {
					t.Fatal(err)
				}
				var img bytes.Buffer
				ns.Spec.WriteImage(&img, i)
				if !bytes.Equal(got, img.Bytes()) {
					t.Fatalf("%s differs from the generated image", d.Name)
				}
			}
		})
	}
}

func TestOptimizeInPlaceAndSkip(t *testing.T) {
	t.Parallel()
	spec := vmatest.Shapes()[1].Spec
	arch, _ := vmatest.Archive(spec)
	dir := t.TempDir()
	p := filepath.Join(dir, "vzdump-qemu-100-2026_11_22-01_00_00.vma")
	os.WriteFile(p, arch, 0o600)
	if r := runCLI(t, nil, "optimize", "-v", p); r.code != 0 || !strings.Contains(r.stderr, "two-pass") {
		t.Fatalf("%s", r)
	}
	r := runCLI(t, nil, "optimize", p)
	if r.code != 0 || !strings.Contains(r.stderr, "already optimized") {
		t.Fatalf("%s", r)
	}
	r = runCLI(t, nil, "info", p)
	if !strings.Contains(r.stdout, "optimized") {
		t.Fatalf("info does not say optimized: %s", r)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("stray files %v", ents)
	}
	// Usage errors.
	for _, args := range [][]string{{"optimize"}, {"optimize", "-"}, {"optimize", "--compress", "xz", p, p + ".o"}, {"optimize", "a", "b", "c"}} {
		if r := runCLI(t, nil, args...); r.code != 2 {
			t.Errorf("%v: %s", args, r)
		}
	}
}

// TestOptimizeCorruptLeavesNothing: each corruption fails with one line,
// exit 1, the source unchanged and no output file.
func TestOptimizeCorruptLeavesNothing(t *testing.T) {
	t.Parallel()
	arch, err := vmatest.Archive(vmatest.CorruptionSpec())
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range vmatest.Corruptions() {
		d, err := vmatest.Corrupt(arch, k)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(k.String(), func(t *testing.T) {
			dir := t.TempDir()
			src := filepath.Join(dir, "a.vma")
			os.WriteFile(src, d.Data, 0o600)
			for _, args := range [][]string{{"optimize", src}, {"optimize", src, filepath.Join(dir, "o.vma")}} {
				r := runCLI(t, nil, args...)
				if r.code != 1 {
					t.Fatalf("%v: %s", args, r)
				}
				wantOneErrorLine(t, r, "byte offset")
				if now, _ := os.ReadFile(src); !bytes.Equal(now, d.Data) {
					t.Fatal("source changed")
				}
				if ents, _ := os.ReadDir(dir); len(ents) != 1 {
					t.Fatalf("left behind: %v", ents)
				}
			}
			r := runCLI(t, bytes.NewReader(d.Data), "optimize", "-", "-")
			if r.code != 1 {
				t.Fatalf("stdin: %s", r)
			}
		})
	}
}
