package main

import (
	"bytes"
	"compress/gzip"
	"maps"
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
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestSpeed) // the reader is the same for every level
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
// the generator's images and configs and nothing else; pack of those
// files and unpack again gives the same files byte for byte.
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
				// What unpack must write: the generator's images and
				// configs, and nothing else.
				want := map[string][]byte{}
				for i, d := range spec.Disks {
					name := vma.ImageName(d.Name)
					if d.Name == vma.VMStateName {
						name = "vmstate.bin"
					}
					var img bytes.Buffer
					spec.WriteImage(&img, i)
					want[name] = img.Bytes()
				}
				for _, c := range spec.Header().Configs {
					want[c.Name] = c.Data
				}
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
						sameAs(t, form+" "+via, out, want)
						if first == "" {
							first = out
						}
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
				sameAs(t, "pack, unpack", second, want)
			})
		}
	}
}

// sameAs checks that dir holds exactly the files of want, byte for byte.
func sameAs(t *testing.T, what, dir string, want map[string][]byte) {
	t.Helper()
	names := slices.Sorted(maps.Keys(want))
	if got := dirNames(t, dir); !slices.Equal(got, names) {
		t.Fatalf("%s: wrote %v, want %v", what, got, names)
	}
	for _, name := range names {
		if got, _ := os.ReadFile(filepath.Join(dir, name)); !bytes.Equal(got, want[name]) {
			t.Fatalf("%s: %s differs from the generated one", what, name)
		}
	}
}
