package vma

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// shuffledArchive writes the disk-<name>.raw images of dir (devices by
// name) into an archive with clusters in a random order and a random uuid.
func shuffledArchive(t *testing.T, dir string, seed uint64) []byte {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "disk-*.raw"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no images in %s: %v", dir, err)
	}
	var names []string
	for _, p := range paths {
		names = append(names, strings.TrimSuffix(strings.TrimPrefix(filepath.Base(p), "disk-"), ".raw"))
	}
	slices.Sort(names)
	h := Header{UUID: RandomUUID(), CTime: 1700000000}
	imgs := map[int][]byte{}
	for i, name := range names {
		b, err := os.ReadFile(filepath.Join(dir, ImageName(name)))
		if err != nil {
			t.Fatal(err)
		}
		imgs[i+1] = b
		h.Devices = append(h.Devices, Device{ID: i + 1, Name: name, Size: uint64(len(b))})
	}
	h.Configs = []Config{{Name: "qemu-server.conf", Data: []byte("memory: 2048\n")}}
	type ref struct {
		id  int
		num uint32
	}
	var refs []ref
	for _, d := range h.Devices {
		for n := range d.Clusters() {
			refs = append(refs, ref{d.ID, uint32(n)})
		}
	}
	rng := rand.New(rand.NewPCG(seed, seed))
	rng.Shuffle(len(refs), func(i, j int) { refs[i], refs[j] = refs[j], refs[i] })
	var out bytes.Buffer
	w, err := NewWriter(&out, &h)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range refs {
		img := imgs[r.id]
		start := int(r.num) * ClusterSize
		if err := w.WriteCluster(r.id, r.num, img[start:min(start+ClusterSize, len(img))]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func TestOptimizeDeterministic(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	writeImages(t, src, map[string]int{"drive-scsi0": 5<<20 + 100, "drive-efidisk0": 540672, "drive-tpmstate0-backup": 4 << 20})
	var want []byte
	for seed := uint64(1); seed <= 3; seed++ {
		arch := shuffledArchive(t, src, seed)
		// Through a file: two-pass.
		p := filepath.Join(t.TempDir(), "a.vma")
		os.WriteFile(p, arch, 0o600)
		f, _ := os.Open(p)
		var viaFile bytes.Buffer
		res, err := Optimize(context.Background(), &viaFile, f, OptimizeOptions{})
		f.Close()
		if err != nil || !res.TwoPass || res.WasInOrder {
			t.Fatalf("file: %v %+v", err, res)
		}
		// Through a stream with a tiny window: spills.
		var viaStream bytes.Buffer
		res, err = Optimize(context.Background(), &viaStream, io.MultiReader(bytes.NewReader(arch)), OptimizeOptions{Window: 256 << 10, TempDir: t.TempDir()})
		if err != nil || res.TwoPass || res.SpilledBytes == 0 {
			t.Fatalf("stream: %v %+v", err, res)
		}
		if !bytes.Equal(viaFile.Bytes(), viaStream.Bytes()) {
			t.Fatal("file and stream outputs differ")
		}
		if want == nil {
			want = viaFile.Bytes()
		} else if !bytes.Equal(want, viaFile.Bytes()) {
			t.Fatalf("seed %d: output differs from seed 1", seed)
		}
	}
	info, err := Scan(bytes.NewReader(want), ScanOptions{})
	if err != nil || !info.Optimized || !info.Complete {
		t.Fatalf("scan of optimized output: %v %+v", err, info)
	}
}

// TestOptimizeInputTruncatedMidway: the input shrinks between the index
// pass and the copy: an error naming the byte offset, not a short or
// wrong output.
func TestOptimizeInputTruncatedMidway(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	writeImages(t, src, map[string]int{"drive-scsi0": 40 << 20})
	arch := shuffledArchive(t, src, 5)
	p := filepath.Join(t.TempDir(), "a.vma")
	os.WriteFile(p, arch, 0o600)
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	truncated := false
	_, err = Optimize(context.Background(), io.Discard, f, OptimizeOptions{Progress: func(int64) {
		if !truncated {
			truncated = true
			if err := os.Truncate(p, 20000); err != nil {
				t.Error(err)
			}
		}
	}})
	if !truncated {
		t.Fatal("progress never called")
	}
	if err == nil || !strings.Contains(err.Error(), "byte offset") {
		t.Fatalf("want an error with the byte offset, got %v", err)
	}
	t.Log(err)
}

// TestReadBlocksMatchesWriteBlocks: blocks read straight into the extent
// buffer give the same archive as WriteBlocks, also when stored blocks are
// zero (other writers store them) and the last block has bytes past the
// device end, and across extent flushes.
func TestReadBlocksMatchesWriteBlocks(t *testing.T) {
	size := uint64(130*ClusterSize + 5000)
	h := Header{UUID: OptimizedUUID, CTime: 1, Devices: []Device{{ID: 1, Name: "drive-scsi0", Size: size}}}
	rng := rand.New(rand.NewPCG(7, 7))
	clusters := make([][]byte, h.Devices[0].Clusters())
	for i := range clusters {
		c := make([]byte, ClusterSize)
		for j := range c {
			c[j] = byte(rng.Uint32())
		}
		for b := range BlocksPerCluster { // some stored blocks are zero
			if rng.IntN(4) == 0 {
				clear(c[b*BlockSize : (b+1)*BlockSize])
			}
		}
		clusters[i] = c // full 64 KiB even for the last one: garbage past the end
	}
	var a, b bytes.Buffer
	wa, _ := NewWriter(&a, &h)
	wb, _ := NewWriter(&b, &h)
	for i, c := range clusters {
		if err := wa.WriteBlocks(1, uint32(i), 0xffff, c); err != nil {
			t.Fatal(err)
		}
		if err := wb.ReadBlocks(1, uint32(i), 0xffff, func(dst []byte) error { copy(dst, c); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	if err := wa.Close(); err != nil {
		t.Fatal(err)
	}
	if err := wb.Close(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("ReadBlocks and WriteBlocks outputs differ")
	}
	if _, err := Scan(bytes.NewReader(b.Bytes()), ScanOptions{}); err != nil {
		t.Fatal(err)
	}
}
