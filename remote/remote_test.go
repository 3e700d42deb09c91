package remote

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"hash/maphash"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/vmasync/vmasync/internal/input"
	"github.com/vmasync/vmasync/internal/vmafile"
	"github.com/vmasync/vmasync/internal/vzdump"
	"github.com/vmasync/vmasync/remote/backend"
	"github.com/vmasync/vmasync/remote/pack"

	"github.com/vmasync/vmasync/chunkplan"
	"github.com/vmasync/vmasync/vma"
	"github.com/vmasync/vmasync/vma/vmatest"
)

// rcloneCtx is the rclone setup every test of the package shares.
var rcloneCtx struct {
	once sync.Once
	ctx  context.Context
	err  error
}

// testCtx sets rclone up once for the package's tests. Setup writes
// rclone's global state (config path, options, accounting); done once,
// with the one set of settings every test uses, the tests that talk to
// rclone can run in parallel.
func testCtx(t testing.TB) context.Context {
	t.Helper()
	rcloneCtx.once.Do(func() {
		rcloneCtx.ctx, rcloneCtx.err = Setup(context.Background(), Settings{ConfigPath: os.DevNull, LowLevelRetries: 2})
	})
	if rcloneCtx.err != nil {
		t.Fatal(rcloneCtx.err)
	}
	return rcloneCtx.ctx
}

// vmSpec is a Proxmox-like VM with three disks (one not a multiple of
// 64 KiB, a small one after a large one) on generation gen.
func vmSpec(seed, gen uint64) vmatest.Spec {
	return vmatest.Spec{
		Disks: []vmatest.Disk{
			{Name: "drive-scsi0", Size: 24 << 20, Content: vmatest.Mixed},
			{Name: "drive-efidisk0", Size: 540672, Content: vmatest.Random},
			{Name: "drive-scsi1", Size: 6<<20 + 12345, Content: vmatest.ZeroRuns},
		},
		Order: vmatest.ProxmoxLike, PullForward: 0.02, Seed: seed, Generation: gen,
		ChangeFraction: 0.01,
	}
}

// writeDump writes a generated dump into dir under a vzdump name,
// compressed with zstd when zst is set; it returns the path.
func writeDump(t testing.TB, dir string, s vmatest.Spec, vmid, stamp string, zst bool) string {
	t.Helper()
	name := filepath.Join(dir, "vzdump-qemu-"+vmid+"-"+stamp+".vma")
	if zst {
		name += ".zst"
	}
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Generated straight into the file (through zstd), not into memory
	// first.
	bw := bufio.NewWriterSize(f, 1<<20)
	var w io.Writer = bw
	var enc *zstd.Encoder
	if zst {
		// A 2 MiB window, as the zstd CLI writes at its default level
		// (vzdump's): readers allocate what the frame's window says.
		enc, _ = zstd.NewWriter(bw, zstd.WithWindowSize(2<<20))
		w = enc
	}
	if err := vmatest.Write(w, s); err != nil {
		t.Fatal(err)
	}
	if enc != nil {
		if err := enc.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return name
}

// optimized returns vmasync optimize's output for the dump at path.
func optimized(t testing.TB, path string) []byte {
	t.Helper()
	var out bytes.Buffer
	if st, err := os.Stat(path); err == nil {
		out.Grow(int(st.Size())) // about the size of the output
	}
	in, err := input.Open(context.Background(), path, input.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if _, err := vma.Optimize(context.Background(), &out, in.Source(), vma.OptimizeOptions{}); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// optimizedSum is a 64-bit hash (maphash, under this process's seed) of
// optimized's output, computed as it streams (for dumps too large to
// hold): to compare with pullSum, at a sixth of SHA-256's CPU.
func optimizedSum(t testing.TB, path string) uint64 {
	t.Helper()
	in, err := input.Open(context.Background(), path, input.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	h := newSum()
	if _, err := vma.Optimize(context.Background(), h, in.Source(), vma.OptimizeOptions{}); err != nil {
		t.Fatal(err)
	}
	return h.Sum64()
}

// sumSeed seeds the hashes of optimizedSum and pullSum.
var sumSeed = maphash.MakeSeed()

func newSum() *maphash.Hash {
	h := new(maphash.Hash)
	h.SetSeed(sumSeed)
	return h
}

func mustDump(t testing.TB, path string) Dump {
	d, ok := vzdump.ParseName(filepath.Base(path))
	if !ok {
		t.Fatalf("%s: not a dump name", path)
	}
	d.Path = path
	return d
}

// pushAll pushes every dump of dir and fails the test on errors.
func pushAll(t testing.TB, ctx context.Context, r *Repository, dir string) []*PushResult {
	t.Helper()
	if _, err := r.LoadIndex(ctx, true); err != nil {
		t.Fatal(err)
	}
	dumps, _, err := vzdump.Find(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []*PushResult
	for _, d := range dumps {
		res, err := r.Push(ctx, d, PushOptions{})
		if err != nil {
			t.Fatalf("push %s: %v", d.Stem, err)
		}
		out = append(out, res)
	}
	return out
}

// localRepo creates a repository in a new local directory, with packs of
// packSize bytes (0: the default); it returns the repository, the
// directory as an rclone Fs, and its path.
func localRepo(t *testing.T, ctx context.Context, packSize int) (*Repository, backend.Backend, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "remote")
	f, err := NewFs(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Init(ctx, f, chunkplan.DefaultParams())
	if err != nil {
		t.Fatal(err)
	}
	r.CacheDir = t.TempDir() // the on-disk index, as the command line uses it
	if packSize > 0 {
		r.Config.PackSize = packSize
	}
	return r, f, dir
}

// pullBytes restores a backup into memory with RestoreBackup, and
// compares Restore of its whole manifest (as mount and pull --disk read
// format 1 and 2 backups) with it.
func pullBytes(t testing.TB, ctx context.Context, r *Repository, vmid, sel string) []byte {
	t.Helper()
	b := selectBackup(t, ctx, r, vmid, sel)
	m, err := r.Manifest(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	out.Grow(int(m.ArchiveSize))
	if err := r.RestoreBackup(ctx, b, &out, nil); err != nil {
		t.Fatal(err)
	}
	whole := vmatest.NewComparer(out.Bytes())
	if err := r.Restore(ctx, m, whole, nil); err != nil {
		t.Fatalf("%s: Restore of its Manifest against RestoreBackup's output: %v", b.Name, err)
	}
	if !whole.Complete() {
		t.Fatalf("%s: Restore of its Manifest gives %d bytes, RestoreBackup %d", b.Name, whole.Written(), out.Len())
	}
	return out.Bytes()
}

// pullSum is for backups too large to hold: the hash (optimizedSum's) of
// the archive RestoreBackup writes. (pullBytes, which every smaller pull
// goes through, also compares Restore of the whole manifest with it.)
func pullSum(t testing.TB, ctx context.Context, r *Repository, vmid, sel string) uint64 {
	t.Helper()
	b := selectBackup(t, ctx, r, vmid, sel)
	h := newSum()
	if err := r.RestoreBackup(ctx, b, h, nil); err != nil {
		t.Fatal(err)
	}
	return h.Sum64()
}

// selectBackup loads the index and selects a backup as pull does.
func selectBackup(t testing.TB, ctx context.Context, r *Repository, vmid, sel string) Backup {
	t.Helper()
	if _, err := r.LoadIndex(ctx, false); err != nil {
		t.Fatal(err)
	}
	backups, err := r.Backups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Select(backups, vmid, sel)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// exercise runs day 1 → day 2 → pull on the remote string rs.
func exercise(t *testing.T, rs string) {
	ctx := testCtx(t)
	dumps := t.TempDir()
	p1 := writeDump(t, dumps, vmSpec(7, 0), "105", "2026_11_20-01_00_00", true)
	os.WriteFile(strings.TrimSuffix(p1, ".vma.zst")+".notes", []byte("web server\n"), 0o644)
	os.WriteFile(strings.TrimSuffix(p1, ".vma.zst")+".log", []byte("INFO: starting new backup job\n"), 0o644)
	before := snapshotDir(t, dumps)

	f, err := NewFs(ctx, rs)
	if err != nil {
		t.Fatal(err)
	}
	r, created, err := OpenOrInit(ctx, f, chunkplan.DefaultParams())
	if err != nil || !created {
		t.Fatalf("init: created=%v err=%v", created, err)
	}
	res1 := pushAll(t, ctx, r, dumps)
	if len(res1) != 1 || res1[0].Skipped || res1[0].NewBytes != res1[0].ArchiveBytes {
		t.Fatalf("day 1: %+v", res1[0])
	}

	p2 := writeDump(t, dumps, vmSpec(7, 1), "105", "2026_11_21-01_00_00", false)
	res2 := pushAll(t, ctx, r, dumps)
	if len(res2) != 2 || !res2[0].Skipped {
		t.Fatalf("day 2: want day 1 skipped, got %+v", res2)
	}
	d2 := res2[1]
	t.Logf("day 2: archive %d, new %d (%.1f%%), uploaded %d, packs %d", d2.ArchiveBytes, d2.NewBytes, 100*float64(d2.NewBytes)/float64(d2.ArchiveBytes), d2.Uploaded, d2.Packs)
	if d2.VsPrevious == nil || d2.Previous != "vzdump-qemu-105-2026_11_20-01_00_00" {
		t.Errorf("day 2 not compared with day 1: %q", d2.Previous)
	}
	if d2.NewBytes > d2.ArchiveBytes/4 {
		t.Errorf("day 2 stored %d new bytes of %d: dedup does not work", d2.NewBytes, d2.ArchiveBytes)
	}

	for _, c := range []struct{ sel, path string }{{"2026_11_20-01_00_00", p1}, {"latest", p2}} {
		got := pullBytes(t, ctx, r, "105", c.sel)
		want := optimized(t, c.path)
		if !bytes.Equal(got, want) {
			t.Errorf("pull %s: %d bytes, not identical to optimize's %d", c.sel, len(got), len(want))
		}
		if _, err := vma.Scan(bytes.NewReader(got), vma.ScanOptions{}); err != nil {
			t.Errorf("pull %s does not verify: %v", c.sel, err)
		}
	}
	cr, err := r.Check(ctx, CheckOptions{ReadData: true})
	if err != nil || len(cr.Problems) > 0 {
		t.Fatalf("check --read-data: %v %v", err, cr.Problems)
	}
	backups, _ := r.Backups(ctx)
	if len(backups) != 2 || backups[0].Sidecars[".notes"] == "" || backups[0].Sidecars[".log"] == "" {
		t.Errorf("backups/sidecars: %+v", backups)
	}
	if after := snapshotDir(t, dumps); !mapsEqualExcept(before, after) {
		t.Errorf("the dump directory changed")
	}
}

// snapshotDir maps file names to content hashes.
func snapshotDir(t testing.TB, dir string) map[string][32]byte {
	m := map[string][32]byte{}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		m[e.Name()] = sha256.Sum256(b)
	}
	return m
}

// mapsEqualExcept reports whether every file of a is unchanged in b.
func mapsEqualExcept(a, b map[string][32]byte) bool {
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestPushPullLocal(t *testing.T) {
	t.Parallel()
	exercise(t, filepath.Join(t.TempDir(), "remote"))
}

var _ = errors.New
var _ atomic.Int64

// BenchmarkPush pushes a generated 128 MiB dump (day 1, then day 2) to a
// local remote: MB/s of VMA data.
func BenchmarkPush(b *testing.B) {
	ctx := testCtx(b)
	dumps := b.TempDir()
	s := vmatest.Spec{Disks: []vmatest.Disk{{Name: "drive-scsi0", Size: 128 << 20, Content: vmatest.Mixed}}, Order: vmatest.ProxmoxLike, Seed: 3}
	p1 := writeDump(b, dumps, s, "100", "2026_11_20-01_00_00", true)
	s.Generation = 1
	p2 := writeDump(b, dumps, s, "100", "2026_11_21-01_00_00", true)
	for _, day := range []struct {
		name string
		path string
	}{{"day1", p1}, {"day2", p2}} {
		b.Run(day.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				dir := filepath.Join(b.TempDir(), "r")
				f, _ := NewFs(ctx, dir)
				r, err := Init(ctx, f, chunkplan.DefaultParams())
				if err != nil {
					b.Fatal(err)
				}
				r.LoadIndex(ctx, true)
				if day.name == "day2" {
					if _, err := r.Push(ctx, mustDump(b, p1), PushOptions{}); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
				res, err := r.Push(ctx, mustDump(b, day.path), PushOptions{})
				if err != nil {
					b.Fatal(err)
				}
				b.SetBytes(res.ArchiveBytes)
			}
		})
	}
}

// TestCompressionLevels pushes one dump at each level into its own
// repository: each pulls back byte-exactly and checks clean, the levels
// store different bytes (the option takes effect), and a backup pushed at
// another level into the same repository shares every chunk.
func TestCompressionLevels(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	dumps := t.TempDir()
	p := writeDump(t, dumps, vmSpec(11, 0), "106", "2026_11_20-01_00_00", true)
	want := optimized(t, p)
	stored := map[CompressionLevel]int64{}
	for _, level := range []CompressionLevel{CompressFastest, CompressDefault, CompressBetter} {
		f, err := NewFs(ctx, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		r, err := Init(ctx, f, chunkplan.DefaultParams())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.LoadIndex(ctx, true); err != nil {
			t.Fatal(err)
		}
		res, err := r.Push(ctx, mustDump(t, p), PushOptions{Compression: level})
		if err != nil {
			t.Fatalf("%s: %v", level, err)
		}
		stored[level] = res.StoredBytes
		if got := pullBytes(t, ctx, r, "106", "latest"); !bytes.Equal(got, want) {
			t.Errorf("%s: pulled archive differs from optimize's", level)
		}
		if cr, err := r.Check(ctx, CheckOptions{ReadData: true}); err != nil || len(cr.Problems) > 0 {
			t.Errorf("%s: check --read-data: %v %v", level, err, cr.Problems)
		}
		if level == CompressBetter {
			// The same archive under a later name, at another level.
			q := filepath.Join(dumps, "vzdump-qemu-106-2026_11_21-01_00_00.vma")
			if err := os.WriteFile(q, want, 0o644); err != nil {
				t.Fatal(err)
			}
			res, err := r.Push(ctx, mustDump(t, q), PushOptions{Compression: CompressFastest})
			if err != nil {
				t.Fatal(err)
			}
			if res.NewBytes != 0 || res.SharedBytes != res.ArchiveBytes {
				t.Errorf("a push at another level shares %d of %d bytes, new %d", res.SharedBytes, res.ArchiveBytes, res.NewBytes)
			}
		}
	}
	t.Logf("stored bytes per level: %v", stored)
	if !(stored[CompressBetter] < stored[CompressDefault] && stored[CompressDefault] < stored[CompressFastest]) {
		t.Errorf("stored bytes do not fall with the level: %v", stored)
	}
	if _, err := ParseCompressionLevel("max"); err == nil {
		t.Error("ParseCompressionLevel accepted an unknown level")
	}
}

// TestPushProgress checks what push reports as it goes: the decompressed
// bytes and the position in the dump file, both growing, the position
// within the file's size; for a compressed dump the position is in
// compressed bytes (behind the decompressed count), for a plain one the
// two are close (the file position is what the reader has read, the count
// what the optimizer has reported).
func TestPushProgress(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	for _, zst := range []bool{true, false} {
		dumps := t.TempDir()
		p := writeDump(t, dumps, vmSpec(11, 0), "105", "2026_11_20-01_00_00", zst)
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		f, _ := NewFs(ctx, filepath.Join(t.TempDir(), "r"))
		r, err := Init(ctx, f, chunkplan.DefaultParams())
		if err != nil {
			t.Fatal(err)
		}
		r.LoadIndex(ctx, true)
		var calls int
		var lastRead, lastFile int64
		_, err = r.Push(ctx, mustDump(t, p), PushOptions{Progress: func(read, fileRead int64) {
			if read < lastRead || fileRead < lastFile || fileRead > st.Size() || fileRead <= 0 {
				t.Errorf("zst %v: progress went from (%d, %d) to (%d, %d), file of %d bytes", zst, lastRead, lastFile, read, fileRead, st.Size())
			}
			if d := fileRead - read; !zst && (d > 1<<20 || d < -1<<20) {
				t.Errorf("plain dump: file position %d, read %d", fileRead, read)
			}
			calls++
			lastRead, lastFile = read, fileRead
		}})
		if err != nil {
			t.Fatal(err)
		}
		if calls < 2 {
			t.Errorf("zst %v: %d progress calls", zst, calls)
		}
		if zst && lastFile >= lastRead {
			t.Errorf("compressed dump: file position %d not behind the %d bytes decompressed", lastFile, lastRead)
		}
	}
}

// TestBlobFrames: push's blobs are zstd frames that declare the chunk's
// length and carry no checksum (the chunk's SHA-256 is checked instead);
// frames with a checksum, as earlier versions wrote, still read.
func TestBlobFrames(t *testing.T) {
	t.Parallel()
	s := vmatest.Spec{Seed: 5, Disks: []vmatest.Disk{{Name: "d", Size: 1 << 20, Content: vmatest.Text}}}
	chunk := s.ClusterData(0, 3, nil)[:8000]
	h := ID(sha256.Sum256(chunk))
	var b blobBatch
	b.add(h, chunk)
	b.compress(blobEncoder(""))
	if b.chunks[0].typ != pack.BlobZstd {
		t.Fatalf("text chunk stored as type %d", b.chunks[0].typ)
	}
	var hdr zstd.Header
	if err := hdr.Decode(b.out); err != nil || !hdr.HasFCS || hdr.FrameContentSize != uint64(len(chunk)) || hdr.HasCheckSum {
		t.Errorf("blob frame header %+v, %v", hdr, err)
	}
	withCRC, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest))
	for name, stored := range map[string][]byte{"without": b.out, "with": withCRC.EncodeAll(chunk, nil)} {
		loc := Location{Stored: uint32(len(stored)), Raw: uint32(len(chunk)), Type: pack.BlobZstd}
		got, err := pack.DecodeBlob(stored, loc, h, nil)
		if err != nil || !bytes.Equal(got, chunk) {
			t.Errorf("frame %s checksum: %v", name, err)
		}
	}
}

// TestPushWritesIndexInParts: a push that adds more than indexEvery
// chunks writes its index in several objects as it goes, and trims its
// set of pending chunks to the unindexed ones (so that neither piles up
// in memory); every distinct chunk is still stored once, the next push
// and a pull read all the parts, and the bytes a push reports as
// uploaded are the bytes written.
func TestPushWritesIndexInParts(t *testing.T) {
	// Not parallel: it changes package variables every push reads.
	oldEvery, oldTrim := indexEvery, pendingTrim
	indexEvery, pendingTrim = 100, 16
	t.Cleanup(func() { indexEvery, pendingTrim = oldEvery, oldTrim })
	ctx := testCtx(t)
	dumps := t.TempDir()
	p1 := writeDump(t, dumps, vmSpec(21, 0), "110", "2026_11_20-01_00_00", false)
	r, f, remoteDir := localRepo(t, ctx, 1<<18)
	res1 := pushAll(t, ctx, r, dumps)[0]
	objects := func() (index, all int64) {
		filepath.Walk(remoteDir, func(p string, fi os.FileInfo, err error) error {
			if err != nil || !fi.Mode().IsRegular() {
				return err
			}
			if rel, _ := filepath.Rel(remoteDir, p); rel != ConfigName && !strings.HasPrefix(rel, LocksDir) {
				all += fi.Size()
			}
			if strings.HasSuffix(p, indexSuffix) {
				index++
			}
			return nil
		})
		return index, all
	}
	n, written := objects()
	t.Logf("day 1: %d new chunks in %d packs, %d index objects", res1.NewChunks, res1.Packs, n)
	// An object is written once 100 entries wait: each holds 100 plus
	// at most one pack's entries.
	if want := int64(max(res1.NewChunks/200, 3)); n < want {
		t.Fatalf("%d index objects for %d new chunks, want at least %d", n, res1.NewChunks, want)
	}
	if res1.Uploaded != written {
		t.Errorf("push reports %d bytes uploaded, the remote holds %d", res1.Uploaded, written)
	}

	// A dump whose two disks hold the same data: its chunks repeat
	// within the dump, and each must still be stored once.
	img := t.TempDir()
	data := make([]byte, 6<<20)
	rand.NewChaCha8([32]byte{3}).Read(data)
	for _, f := range []string{"disk-scsi0.raw", "disk-scsi1.raw"} {
		os.WriteFile(filepath.Join(img, f), data, 0o644)
	}
	os.WriteFile(filepath.Join(img, "qemu-server.conf"), []byte("scsi0: local:111/vm-111-disk-0.raw\n"), 0o644)
	twice := t.TempDir()
	out, _ := os.Create(filepath.Join(twice, "vzdump-qemu-111-2026_11_20-01_00_00.vma"))
	if err := vmafile.Pack(img, out, vmafile.PackOptions{}); err != nil {
		t.Fatal(err)
	}
	out.Close()
	r3, _, _ := localRepo(t, ctx, 0)
	res3 := pushAll(t, ctx, r3, twice)[0]
	backups, _ := r3.Backups(ctx)
	m, err := r3.Manifest(ctx, backups[0])
	if err != nil {
		t.Fatal(err)
	}
	distinct := map[[32]byte]bool{}
	for _, c := range m.Chunks {
		distinct[c.Hash] = true
	}
	t.Logf("disks twice: %d chunks, %d distinct, %d stored", len(m.Chunks), len(distinct), res3.NewChunks)
	if res3.NewChunks != len(distinct) || len(distinct) > len(m.Chunks)*3/5 {
		t.Errorf("stored %d new chunks; the archive has %d chunks, %d distinct (want repeats, each stored once)", res3.NewChunks, len(m.Chunks), len(distinct))
	}
	if cr, err := r3.Check(ctx, CheckOptions{ReadData: true}); err != nil || len(cr.Problems) > 0 || cr.Chunks != len(distinct)+res3.TreeNodes {
		t.Fatalf("check --read-data: %v %+v", err, cr)
	}

	p2 := writeDump(t, dumps, vmSpec(21, 1), "110", "2026_11_21-01_00_00", false)
	r, _ = Open(ctx, f)
	res2 := pushAll(t, ctx, r, dumps)[1]
	if res2.NewBytes > res2.ArchiveBytes/4 {
		t.Errorf("day 2 stored %d new bytes of %d: the index in parts was not read", res2.NewBytes, res2.ArchiveBytes)
	}
	for sel, path := range map[string]string{"2026_11_20-01_00_00": p1, "latest": p2} {
		if !bytes.Equal(pullBytes(t, ctx, r, "110", sel), optimized(t, path)) {
			t.Errorf("pull %s differs from optimize", sel)
		}
	}
	if cr, err := r.Check(ctx, CheckOptions{ReadData: true}); err != nil || len(cr.Problems) > 0 {
		t.Fatalf("check --read-data: %v %v", err, cr.Problems)
	}
}
