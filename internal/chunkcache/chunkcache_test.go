package chunkcache

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/vmasync/vmasync/chunkplan"
	"github.com/vmasync/vmasync/internal/vmafile"
	"github.com/vmasync/vmasync/internal/vmalayout"
	"github.com/vmasync/vmasync/internal/vzdump"
	"github.com/vmasync/vmasync/remote"
	"github.com/vmasync/vmasync/remote/backend"
	"github.com/vmasync/vmasync/vma"
	"github.com/vmasync/vmasync/vma/vmatest"
)

// pushed returns an in-memory repository holding one backup of a 3-disk
// VM, the backup's manifest and its optimized archive.
func pushed(t *testing.T) (*backend.Mem, *remote.Repository, *chunkplan.Manifest, []byte) {
	t.Helper()
	ctx := context.Background()
	s := vmatest.Spec{
		Disks: []vmatest.Disk{
			{Name: "drive-scsi0", Size: 12 << 20, Content: vmatest.Mixed},
			{Name: "drive-scsi1", Size: 3<<20 + 4096*3, Content: vmatest.Random},
			{Name: "drive-tpmstate0", Size: 4 << 20, Content: vmatest.Sparse},
		},
		Order: vmatest.ProxmoxLike, Seed: 5,
	}
	b, err := vmatest.Archive(s)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "vzdump-qemu-105-2026_11_20-01_00_00.vma")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	mem := backend.NewMem()
	r, _, err := remote.OpenOrInit(ctx, mem, chunkplan.DefaultParams())
	if err != nil {
		t.Fatal(err)
	}
	r.Warn = func(string) {}
	if _, err := r.LoadIndex(ctx, true); err != nil {
		t.Fatal(err)
	}
	d, _ := vzdump.ParseName(filepath.Base(p))
	d.Path = p
	if _, err := r.Push(ctx, d, remote.PushOptions{}); err != nil {
		t.Fatal(err)
	}
	r, err = remote.Open(ctx, mem)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.LoadIndex(ctx, false); err != nil {
		t.Fatal(err)
	}
	backups, _ := r.Backups(ctx)
	m, err := r.Manifest(ctx, backups[0])
	if err != nil {
		t.Fatal(err)
	}
	var arch bytes.Buffer
	if err := r.Restore(ctx, m, &arch, nil); err != nil {
		t.Fatal(err)
	}
	return mem, r, m, arch.Bytes()
}

// TestPullDiskFetchesOnlyItsChunks: writing one disk of a 3-disk backup
// reads from the remote exactly the chunks that hold the header, the
// extent headers up to that disk's last cluster and that disk's stored
// blocks, each once; the image equals unpack's.
func TestPullDiskFetchesOnlyItsChunks(t *testing.T) {
	ctx := context.Background()
	mem, r, m, arch := pushed(t)
	images := filepath.Join(t.TempDir(), "x")
	if err := vmafile.Unpack(bytes.NewReader(arch), images, vmafile.UnpackOptions{}); err != nil {
		t.Fatal(err)
	}
	// What the disk needs, from the archive itself.
	ends := make([]int64, len(m.Chunks))
	var off int64
	for i, c := range m.Chunks {
		off += int64(c.Length)
		ends[i] = off
	}
	need := map[[32]byte]bool{}
	cover := func(a, n int64) {
		for i, e := range ends {
			start := e - int64(m.Chunks[i].Length)
			if start < a+n && e > a {
				need[m.Chunks[i].Hash] = true
			}
		}
	}
	vr, err := vma.NewReader(bytes.NewReader(arch))
	if err != nil {
		t.Fatal(err)
	}
	dev := vr.Header().Devices[1] // the middle one
	cover(0, vr.Header().Size)
	var last int64
	for {
		c, err := vr.Next()
		if err != nil {
			break
		}
		if c.DevID == dev.ID {
			cover(c.Offset, int64(len(c.Data)))
			last = c.Offset
		}
	}
	for ext := vr.Header().Size; ext < last; ext += vma.ExtentHeaderSize + int64(binary.BigEndian.Uint16(arch[ext+6:]))*vma.BlockSize {
		cover(ext, vma.ExtentHeaderSize)
	}
	var want, total int64
	seen := map[[32]byte]bool{}
	for _, c := range m.Chunks {
		loc, _ := r.Lookup(remote.ID(c.Hash))
		if !seen[c.Hash] {
			total += int64(loc.Stored)
			if need[c.Hash] {
				want += int64(loc.Stored)
			}
		}
		seen[c.Hash] = true
	}

	before := mem.BytesRead()
	cache := New(64 << 20)
	x, err := cache.Open(r, m, "test")
	if err != nil {
		t.Fatal(err)
	}
	l, err := vmalayout.Open(ctx, x, x.Size())
	if err != nil {
		t.Fatal(err)
	}
	out, _ := os.Create(filepath.Join(t.TempDir(), "disk.raw"))
	if err := l.WriteDisk(ctx, dev.ID, nil, out, vmalayout.CopyOptions{Window: 256 << 10, Prefetch: x.Prefetch}); err != nil {
		t.Fatal(err)
	}
	out.Truncate(int64(dev.Size))
	out.Close()
	got := mem.BytesRead() - before
	wantImg, _ := os.ReadFile(filepath.Join(images, vma.ImageName(dev.Name)))
	if gotImg, _ := os.ReadFile(out.Name()); !bytes.Equal(gotImg, wantImg) {
		t.Fatal("the disk differs from unpack's image")
	}
	if got != want || cache.Fetched() != want {
		t.Fatalf("read %d bytes from the remote (cache says %d), the disk's chunks are %d", got, cache.Fetched(), want)
	}
	if got*2 > total {
		t.Fatalf("read %d of %d stored bytes for one small disk", got, total)
	}
	t.Logf("%s: read %d of %d stored bytes", dev.Name, got, total)
}

// TestDamagedChunk: a chunk whose pack was damaged fails the reads that
// need it, is logged by name, and leaves the other reads alone.
func TestDamagedChunk(t *testing.T) {
	ctx := context.Background()
	mem, r, m, arch := pushed(t)
	var logged []string
	cache := New(0)
	cache.Log = func(s string) { logged = append(logged, s) }
	x, _ := cache.Open(r, m, "b")
	// Damage the pack holding the chunk in the middle of the archive.
	mid := len(m.Chunks) / 2
	loc, _ := r.Lookup(remote.ID(m.Chunks[mid].Hash))
	var packObj string
	for _, n := range mem.Names() {
		if filepath.Base(filepath.Dir(n)) != "" && bytes.Contains([]byte(n), []byte(loc.Pack.String())) {
			packObj = n
		}
	}
	data, _ := mem.Get(packObj)
	data[loc.Offset+loc.Stored/2] ^= 0xff
	mem.Put(packObj, data)
	var start int64
	for _, c := range m.Chunks[:mid] {
		start += int64(c.Length)
	}
	if _, err := x.ReadAtContext(ctx, make([]byte, 10), start); err == nil {
		t.Fatal("damaged chunk read without error")
	}
	if len(logged) != 1 || !bytes.Contains([]byte(logged[0]), []byte(remote.ID(m.Chunks[mid].Hash).Short())) {
		t.Fatalf("log: %q", logged)
	}
	p := make([]byte, 100)
	if _, err := x.ReadAtContext(ctx, p, 0); err != nil || !bytes.Equal(p, arch[:100]) {
		t.Fatalf("undamaged read: %v", err)
	}
}

// TestConcurrentReads: many readers of random disk ranges at once through
// a small cache (as FUSE reads and read-ahead run) get the right bytes.
func TestConcurrentReads(t *testing.T) {
	ctx := context.Background()
	_, r, m, arch := pushed(t)
	images := filepath.Join(t.TempDir(), "x")
	if err := vmafile.Unpack(bytes.NewReader(arch), images, vmafile.UnpackOptions{}); err != nil {
		t.Fatal(err)
	}
	cache := New(256 << 10)
	x, _ := cache.Open(r, m, "b")
	l, err := vmalayout.Open(ctx, x, x.Size())
	if err != nil {
		t.Fatal(err)
	}
	l.Speculate = 4
	readConcurrently(t, ctx, l, x, images, 8, 60, 9)
}

// readAt reads len(p) bytes of file name at off.
func readAt(name string, p []byte, off int64) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.ReadAt(p, off)
	return err
}

// readConcurrently runs goroutines readers of rounds random ranges of
// random disks of l (read-ahead on x now and then) and fails t on the
// first range that differs from unpack's image in images.
func readConcurrently(t *testing.T, ctx context.Context, l *vmalayout.Layout, x *Archive, images string, goroutines, rounds int, seed uint64) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), seed))
			got, want := make([]byte, 512<<10), make([]byte, 512<<10)
			for range rounds {
				d := l.Header().Devices[rng.IntN(len(l.Header().Devices))]
				off := rng.Int64N(int64(d.Size))
				n := min(1+rng.Int64N(512<<10), int64(d.Size)-off)
				got, want := got[:n], want[:n]
				if err := readAt(filepath.Join(images, vma.ImageName(d.Name)), want, off); err != nil {
					errs <- err
					return
				}
				if rng.IntN(4) == 0 {
					go x.Prefetch(ctx, rng.Int64N(x.Size()), 1<<20)
				}
				if _, err := l.ReadDisk(ctx, d.ID, got, off); err != nil && err != io.EOF {
					errs <- err
					return
				}
				if !bytes.Equal(got, want) {
					errs <- fmt.Errorf("%s: %d bytes at %d: wrong", d.Name, n, off)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
