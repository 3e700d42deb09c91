package vmalayout

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/vmasync/vmasync/internal/vmafile"
	"github.com/vmasync/vmasync/vma"
	"github.com/vmasync/vmasync/vma/vmatest"
)

// memArchive is an archive in memory that counts the reads.
type memArchive struct {
	b     []byte
	reads int64
}

func (m *memArchive) ReadAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	if off >= int64(len(m.b)) {
		return 0, io.EOF
	}
	n := copy(p, m.b[off:])
	m.reads += int64(n)
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func archive(t *testing.T, order vmatest.Order, optimize bool) []byte {
	t.Helper()
	s := vmatest.Spec{
		Disks: []vmatest.Disk{
			{Name: "drive-scsi0", Size: 12<<20 + 12345, Content: vmatest.Mixed},
			{Name: "drive-efidisk0", Size: 540672, Content: vmatest.Random},
			{Name: "drive-tpmstate0", Size: 4 << 20, Content: vmatest.Sparse},
		},
		Order: order, Seed: 7,
	}
	b, err := vmatest.Archive(s)
	if err != nil {
		t.Fatal(err)
	}
	if !optimize {
		return b
	}
	var out bytes.Buffer
	if _, err := vma.Optimize(context.Background(), &out, bytes.NewReader(b), vma.OptimizeOptions{}); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// TestReadDiskMatchesUnpack: every disk read through a Layout, whole and
// by random ranges, equals unpack's image, for optimized and unordered
// archives; WriteDisk writes the same bytes.
func TestReadDiskMatchesUnpack(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		order    vmatest.Order
		optimize bool
	}{{"optimized", vmatest.ProxmoxLike, true}, {"proxmox-order", vmatest.ProxmoxLike, false}} {
		t.Run(tc.name, func(t *testing.T) {
			b := archive(t, tc.order, tc.optimize)
			dir := filepath.Join(t.TempDir(), "x")
			if err := vmafile.Unpack(bytes.NewReader(b), dir, vmafile.UnpackOptions{}); err != nil {
				t.Fatal(err)
			}
			src := &memArchive{b: b}
			l, err := Open(ctx, src, int64(len(b)))
			if err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(1, 2))
			for _, d := range l.Header().Devices {
				want, err := os.ReadFile(filepath.Join(dir, vma.ImageName(d.Name)))
				if err != nil {
					t.Fatal(err)
				}
				for range 300 {
					off := rng.Int64N(int64(len(want)))
					n := rng.Int64N(300 << 10)
					got := make([]byte, n)
					k, err := l.ReadDisk(ctx, d.ID, got, off)
					wantN := min(n, int64(len(want))-off)
					if int64(k) != wantN || (err != nil && err != io.EOF) || (err == io.EOF) != (wantN < n) {
						t.Fatalf("%s: ReadDisk(%d, %d) = %d, %v", d.Name, n, off, k, err)
					}
					if !bytes.Equal(got[:k], want[off:off+wantN]) {
						t.Fatalf("%s: ReadDisk(%d, %d): wrong bytes", d.Name, n, off)
					}
				}
				var whole bytes.Buffer
				if err := l.WriteDisk(ctx, d.ID, &whole, nil, CopyOptions{Window: 1 << 20}); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(whole.Bytes(), want) {
					t.Fatalf("%s: WriteDisk differs from unpack", d.Name)
				}
				f, _ := os.Create(filepath.Join(t.TempDir(), "sparse"))
				if err := l.WriteDisk(ctx, d.ID, nil, f, CopyOptions{Window: 300 << 10}); err != nil {
					t.Fatal(err)
				}
				f.Truncate(int64(d.Size))
				f.Close()
				if got, _ := os.ReadFile(f.Name()); !bytes.Equal(got, want) {
					t.Fatalf("%s: sparse WriteDisk differs from unpack", d.Name)
				}
			}
			if tc.optimize {
				t.Logf("%d runs for %d bytes of archive", l.Runs(), len(b))
			}
		})
	}
}

// TestLazyWalk: in an optimized archive, reading the first device reads
// its extents only, not those of the devices stored after it.
func TestLazyWalk(t *testing.T) {
	ctx := context.Background()
	b := archive(t, vmatest.ProxmoxLike, true)
	src := &memArchive{b: b}
	l, err := Open(ctx, src, int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	first := l.Header().Devices[0]
	if err := l.WriteDisk(ctx, first.ID, io.Discard, nil, CopyOptions{}); err != nil {
		t.Fatal(err)
	}
	// The first device's data ends where the second's extents begin.
	vr, _ := vma.NewReader(bytes.NewReader(b))
	var end int64
	for {
		c, err := vr.Next()
		if err != nil {
			break
		}
		if c.DevID == first.ID {
			end = c.Offset + int64(len(c.Data))
		}
	}
	if src.reads > end {
		t.Fatalf("read %d bytes, the first device's extents end at %d of %d", src.reads, end, len(b))
	}
	// A read beyond a damaged extent header fails, never wrong bytes.
	ext := vr.Header().Size
	for ext < end {
		ext += vma.ExtentHeaderSize + int64(binary.BigEndian.Uint16(b[ext+6:]))*vma.BlockSize
	}
	bad := bytes.Clone(b)
	bad[ext+30] ^= 1 // the checksum of the first extent after the first device's
	l2, _ := Open(ctx, &memArchive{b: bad}, int64(len(bad)))
	second := l2.Header().Devices[2] // stored last, beyond that extent
	if _, err := l2.ReadDisk(ctx, second.ID, make([]byte, 10), int64(second.Size)-10); err == nil {
		t.Fatal("no error for a damaged extent header")
	}
	if _, err := l2.ReadDisk(ctx, first.ID, make([]byte, 10), 0); err != nil {
		t.Fatalf("the first device fails too: %v", err)
	}
}

// prefetching is a memArchive that records what the walk fetches ahead.
type prefetching struct {
	memArchive
	mu   sync.Mutex
	pred []int64
}

func (p *prefetching) Prefetch(ctx context.Context, off, n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pred = append(p.pred, off)
}

// TestSpeculate: over a full disk, the walk fetches ahead the extent
// headers that follow, and guesses right.
func TestSpeculate(t *testing.T) {
	ctx := context.Background()
	s := vmatest.Spec{Disks: []vmatest.Disk{{Name: "drive-scsi0", Size: 64 << 20, Content: vmatest.Random}}, Order: vmatest.ProxmoxLike, Seed: 3}
	b, err := vmatest.Archive(s)
	if err != nil {
		t.Fatal(err)
	}
	out := bytes.NewBuffer(make([]byte, 0, len(b))) // optimized is no larger
	if _, err := vma.Optimize(ctx, out, bytes.NewReader(b), vma.OptimizeOptions{}); err != nil {
		t.Fatal(err)
	}
	b = out.Bytes()
	src := &prefetching{memArchive: memArchive{b: b}}
	l, err := Open(ctx, src, int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	l.Speculate = 4
	if _, err := l.ReadDisk(ctx, 1, make([]byte, 1), 64<<20-1); err != nil {
		t.Fatal(err)
	}
	// The speculative fetches go on in the background: wait for them
	// (a fixed 10 ms sleep failed on a loaded machine).
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		src.mu.Lock()
		n := len(src.pred)
		src.mu.Unlock()
		if n >= 10 || time.Now().After(deadline) {
			break
		}
	}
	time.Sleep(10 * time.Millisecond) // and for what is still in flight
	src.mu.Lock()
	defer src.mu.Unlock()
	hits := 0
	for _, off := range src.pred {
		if string(b[off:off+4]) == "VMAE" {
			hits++
		}
	}
	if len(src.pred) < 10 || hits < len(src.pred)-1 {
		t.Fatalf("%d headers fetched ahead, %d of them right", len(src.pred), hits)
	}
}
