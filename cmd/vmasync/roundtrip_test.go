package main

import (
	"bytes"
	"compress/gzip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/vmasync/vmasync/vma"
	"github.com/vmasync/vmasync/vma/vmatest"
)

// compressedForms returns the archive as plain, zstd, gzip and lzop bytes
// (lzop from Debian's binary, as vzdump makes it).
func compressedForms(t *testing.T, arch []byte) map[string][]byte {
	t.Helper()
	forms := map[string][]byte{"plain": arch, "zstd": zstdBytes(t, arch)}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(arch)
	zw.Close()
	forms["gzip"] = gz.Bytes()
	lzop, err := exec.LookPath("lzop")
	if err != nil {
		t.Fatal("lzop not found: apt-get install lzop")
	}
	cmd := exec.Command(lzop, "-c")
	cmd.Stdin = bytes.NewReader(arch)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("lzop: %v", err)
	}
	forms["lzop"] = out
	return forms
}

// TestUnpackPackUnpackRoundTrip: for every generated shape and stored
// order, in every compression, from a file and from stdin: unpack gives
// the generator's images and configs (the same files every time), pack of
// those files and unpack again gives the same files byte for byte.
func TestUnpackPackUnpackRoundTrip(t *testing.T) {
	t.Parallel()
	for _, ns := range vmatest.Shapes() {
		if len(ns.Spec.Disks) == 0 {
			continue // pack needs at least one image
		}
		for _, order := range vmatest.Orders {
			spec := ns.Spec
			spec.Order = order
			t.Run(ns.Name+"/"+order.String(), func(t *testing.T) {
				t.Parallel()
				arch, err := vmatest.Archive(spec)
				if err != nil {
					t.Fatal(err)
				}
				dir := t.TempDir()
				hdr := spec.Header()
				first := "" // the first unpacked directory
				for form, data := range compressedForms(t, arch) {
					src := filepath.Join(dir, "a.vma."+form)
					os.WriteFile(src, data, 0o600)
					for _, via := range []string{"file", "stdin"} {
						out := filepath.Join(dir, form+"-"+via+"-1")
						var r result
						if via == "file" {
							r = runCLI(t, nil, "unpack", src, out)
						} else {
							r = runCLI(t, bytes.NewReader(data), "unpack", "-", out)
						}
						if r.code != 0 {
							t.Fatalf("%s %s unpack: %s", form, via, r)
						}
						for i, d := range spec.Disks {
							name := vma.ImageName(d.Name)
							if d.Name == vma.VMStateName {
								name = "vmstate.bin"
							}
							var img bytes.Buffer
							spec.WriteImage(&img, i)
							if got, _ := os.ReadFile(filepath.Join(out, name)); !bytes.Equal(got, img.Bytes()) {
								t.Fatalf("%s %s: %s differs from the generated image", form, via, name)
							}
						}
						for _, c := range hdr.Configs {
							if got, _ := os.ReadFile(filepath.Join(out, c.Name)); !bytes.Equal(got, c.Data) {
								t.Fatalf("%s %s: config %s differs", form, via, c.Name)
							}
						}
						if first == "" {
							first = out
							continue
						}
						if a, b := dirNames(t, first), dirNames(t, out); !slices.Equal(a, b) {
							t.Fatalf("%s %s unpacked %v, another unpack %v", form, via, b, a)
						}
						sameFiles(t, first, out)
					}
				}
				// Every unpack gave the same files: one pack of them
				// stands for all.
				packed := filepath.Join(dir, "packed.vma")
				if r := runCLI(t, nil, "pack", first, packed); r.code != 0 {
					t.Fatalf("pack: %s", r)
				}
				second := filepath.Join(dir, "second")
				if r := runCLI(t, nil, "unpack", packed, second); r.code != 0 {
					t.Fatalf("second unpack: %s", r)
				}
				sameFiles(t, first, second)
			})
		}
	}
}
