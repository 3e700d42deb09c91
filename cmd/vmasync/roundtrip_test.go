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

// compressed returns the archive in form "plain", "zstd", "gzip" or
// "lzop" (lzop from Debian's binary, as vzdump makes it).
func compressed(t *testing.T, arch []byte, form string) []byte {
	t.Helper()
	switch form {
	case "plain":
		return arch
	case "zstd":
		return zstdBytes(t, arch)
	case "gzip":
		var gz bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&gz, gzip.BestSpeed) // the reader is the same for every level
		zw.Write(arch)
		zw.Close()
		return gz.Bytes()
	}
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
	return out
}

// TestUnpackPackUnpackRoundTrip: for every generated shape and stored
// order, unpack gives the generator's images and configs and nothing
// else, from a plain file and in one more way; pack of those files and
// unpack again gives the same files byte for byte. The other ways (zstd,
// gzip, lzop, plain; from a file and from stdin) take turns over the
// shapes and orders, each several times: decompression does not depend on
// what the archive holds (internal/input tests every form on its own), so
// the whole cross product (8 unpacks of each of 27 archives, a quarter of
// this package's CPU) repeated the same check.
func TestUnpackPackUnpackRoundTrip(t *testing.T) {
	t.Parallel()
	type way struct{ form, via string }
	var turns []way
	for _, form := range []string{"zstd", "gzip", "lzop", "plain"} {
		for _, via := range []string{"file", "stdin"} {
			if form != "plain" || via != "file" {
				turns = append(turns, way{form, via})
			}
		}
	}
	n := 0
	for _, ns := range vmatest.Shapes() {
		if len(ns.Spec.Disks) == 0 {
			continue // pack needs at least one image
		}
		for _, order := range vmatest.Orders {
			spec := ns.Spec
			spec.Order = order
			ways := []way{{"plain", "file"}, turns[n%len(turns)]}
			n++
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
				for _, w := range ways {
					data := compressed(t, arch, w.form)
					src := filepath.Join(dir, "a.vma."+w.form)
					os.WriteFile(src, data, 0o600)
					out := filepath.Join(dir, w.form+"-"+w.via+"-1")
					var r result
					if w.via == "file" {
						r = runCLI(t, nil, "unpack", src, out)
					} else {
						r = runCLI(t, bytes.NewReader(data), "unpack", "-", out)
					}
					if r.code != 0 {
						t.Fatalf("%s %s unpack: %s", w.form, w.via, r)
					}
					sameAs(t, w.form+" "+w.via, out, want)
					if first == "" {
						first = out
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
