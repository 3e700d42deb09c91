package index

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"testing"
	"testing/iotest"

	"github.com/vmasync/vmasync/remote/pack"
)

// TestChunkIndexMemory measures the in-memory index's cost per chunk
// (docs/repository.md quotes it): 1 M chunks in 2000 packs.
func TestChunkIndexMemory(t *testing.T) {
	const n = 1 << 20
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	x := New()
	for i := 0; i < n; i++ {
		var h, p ID
		binary.BigEndian.PutUint64(h[:], uint64(i)*0x9e3779b97f4a7c15)
		binary.BigEndian.PutUint32(p[:], uint32(i/512))
		x.Load(h, Location{Pack: p, Offset: uint32(i), Stored: 1, Raw: 2, Type: pack.BlobZstd})
	}
	x.Freeze()
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := float64(after.HeapAlloc-before.HeapAlloc) / n
	t.Logf("index: %.1f bytes per chunk (%d chunks, %d packs)", per, x.Len(), len(x.packs))
	if x.Len() != n {
		t.Fatalf("%d entries", x.Len())
	}
	var h ID
	k := uint64(777)
	binary.BigEndian.PutUint64(h[:], k*0x9e3779b97f4a7c15)
	if l, ok := x.Get(h); !ok || l.Offset != 777 || binary.BigEndian.Uint32(l.Pack[:]) != 1 {
		t.Fatalf("get: %+v %v", l, ok)
	}
	var h2 ID
	h2[0] = 0xff
	x.Add(h2, Location{Pack: ID{9}, Offset: 5})
	if l, ok := x.Get(h2); !ok || l.Offset != 5 || l.Pack != (ID{9}) || x.Len() != n+1 {
		t.Fatalf("added entry: %+v %v", l, ok)
	}
	x.Add(h, Location{Pack: ID{9}, Offset: 6}) // already there: kept
	if l, _ := x.Get(h); l.Offset != 777 {
		t.Fatalf("add replaced an entry")
	}
	if per > 64 {
		t.Errorf("the index takes %.0f bytes per chunk", per)
	}
	runtime.KeepAlive(x)
}

// TestChunkIndexLookup checks the bucketed search against a map: every
// loaded hash is found with its location (also hashes sharing their
// first bytes, and at the ends of the hash space), absent ones are not,
// and of a hash loaded twice the entry of the pack loaded first wins.
func TestChunkIndexLookup(t *testing.T) {
	x := New()
	want := map[ID]uint32{}
	add := func(h ID, pack byte, off uint32) {
		x.Load(h, Location{Pack: ID{pack}, Offset: off})
		if _, ok := want[h]; !ok {
			want[h] = off
		}
	}
	var lo, hi ID
	for i := range hi {
		hi[i] = 0xff
	}
	add(lo, 1, 1)
	add(hi, 1, 2)
	for i := range 50000 {
		var h ID
		binary.BigEndian.PutUint64(h[:], uint64(i)*0x9e3779b97f4a7c15)
		h[31] = byte(i)
		add(h, byte(2+i%3), uint32(10+i))
		if i%100 == 0 { // same first 8 bytes, differing later
			h[20] ^= 0x55
			add(h, 5, uint32(1e6+i))
		}
	}
	var dup ID
	dup[0], dup[1], dup[2] = 0x80, 0x01, 0x02
	add(dup, 7, 70) // pack 7 is loaded before pack 8
	add(dup, 8, 7)  // a lower offset in a later pack: not chosen
	x.Freeze()
	if x.Len() != len(want) {
		t.Fatalf("%d entries, want %d", x.Len(), len(want))
	}
	for h, off := range want {
		if l, ok := x.Get(h); !ok || l.Offset != off {
			t.Fatalf("get %x: %+v %v, want offset %d", h[:4], l, ok, off)
		}
	}
	if l, _ := x.Get(dup); l.Pack != (ID{7}) {
		t.Errorf("repeated hash: pack %x won, want the first loaded", l.Pack[:1])
	}
	for i := range 10000 {
		var h ID
		binary.BigEndian.PutUint64(h[:], uint64(i)*0x9e3779b97f4a7c15+1)
		if _, ok := want[h]; ok {
			continue
		}
		if _, ok := x.Get(h); ok {
			t.Fatalf("absent hash %x found", h[:8])
		}
	}
}

// TestPosAndMarks: every loaded chunk has a position that At gives back;
// absent chunks have none; marks hold what was set.
func TestPosAndMarks(t *testing.T) {
	x := New()
	var hs []ID
	for i := range 5000 {
		var h ID
		binary.BigEndian.PutUint64(h[:], uint64(i)*0x9e3779b97f4a7c15)
		hs = append(hs, h)
		x.Load(h, Location{Offset: uint32(i)})
	}
	x.Freeze()
	m := NewMarks(x.Positions())
	for i, h := range hs {
		p, ok := x.Pos(h)
		if !ok {
			t.Fatalf("chunk %d has no position", i)
		}
		if g, l := x.At(p); g != h || l.Offset != uint32(i) {
			t.Fatalf("At(Pos(%d)) = %v %d", i, g, l.Offset)
		}
		if i%3 == 0 {
			m.Set(p)
		}
	}
	for i, h := range hs {
		p, _ := x.Pos(h)
		if m.Has(p) != (i%3 == 0) {
			t.Fatalf("mark of chunk %d", i)
		}
	}
	if _, ok := x.Pos(ID{0xff, 0xff, 1}); ok {
		t.Fatal("an absent chunk has a position")
	}
}

// TestReadBounded: readBounded returns what r holds, up to limit+1 bytes
// (so that more than limit shows), allocating once when the size is
// declared and by doubling otherwise.
func TestReadBounded(t *testing.T) {
	// Not parallel: AllocsPerRun.
	data := bytes.Repeat([]byte("0123456789abcdef"), 50000) // 800,000 bytes
	for _, c := range []struct {
		name        string
		hint, limit int
		want        int
		maxCap      int
	}{
		{"declared size", len(data), 1 << 20, len(data), len(data) + 1},
		{"no size", 0, 1 << 20, len(data), 1<<20 + 1},
		{"more than the limit", 0, 100000, 100001, 100001},
		{"declared size, more than the limit", len(data), 100000, 100001, 100001},
		{"declared size too small", 1000, 1 << 20, len(data), 1<<20 + 1},
	} {
		b, err := readBounded(struct{ io.Reader }{bytes.NewReader(data)}, c.hint, c.limit)
		if err != nil || len(b) != c.want || !bytes.Equal(b, data[:len(b)]) || cap(b) > c.maxCap {
			t.Errorf("%s: %d bytes (cap %d), %v; want %d bytes, cap at most %d", c.name, len(b), cap(b), err, c.want, c.maxCap)
		}
	}
	boom := errors.New("boom")
	if _, err := readBounded(io.MultiReader(bytes.NewReader(data[:10]), iotest.ErrReader(boom)), 0, 1<<20); !errors.Is(err, boom) {
		t.Errorf("read error: %v", err)
	}
	n := testing.AllocsPerRun(5, func() { readBounded(bytes.NewReader(data), len(data), 1<<20) })
	if n > 2 {
		t.Errorf("%v allocations with the size declared", n)
	}
}
