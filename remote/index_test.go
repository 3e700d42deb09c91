package remote

import (
	"encoding/binary"
	"runtime"
	"testing"
)

// TestChunkIndexMemory measures the in-memory index's cost per chunk
// (docs/repository.md quotes it): 1 M chunks in 2000 packs.
func TestChunkIndexMemory(t *testing.T) {
	const n = 1 << 20
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	x := newChunkIndex()
	for i := 0; i < n; i++ {
		var h, p ID
		binary.BigEndian.PutUint64(h[:], uint64(i)*0x9e3779b97f4a7c15)
		binary.BigEndian.PutUint32(p[:], uint32(i/512))
		x.load(h, Location{Pack: p, Offset: uint32(i), Stored: 1, Raw: 2, Type: blobZstd})
	}
	x.freeze()
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := float64(after.HeapAlloc-before.HeapAlloc) / n
	t.Logf("index: %.1f bytes per chunk (%d chunks, %d packs)", per, x.len(), len(x.packs))
	if x.len() != n {
		t.Fatalf("%d entries", x.len())
	}
	var h ID
	k := uint64(777)
	binary.BigEndian.PutUint64(h[:], k*0x9e3779b97f4a7c15)
	if l, ok := x.get(h); !ok || l.Offset != 777 || binary.BigEndian.Uint32(l.Pack[:]) != 1 {
		t.Fatalf("get: %+v %v", l, ok)
	}
	var h2 ID
	h2[0] = 0xff
	x.add(h2, Location{Pack: ID{9}, Offset: 5})
	if l, ok := x.get(h2); !ok || l.Offset != 5 || l.Pack != (ID{9}) || x.len() != n+1 {
		t.Fatalf("added entry: %+v %v", l, ok)
	}
	x.add(h, Location{Pack: ID{9}, Offset: 6}) // already there: kept
	if l, _ := x.get(h); l.Offset != 777 {
		t.Fatalf("add replaced an entry")
	}
	if per > 64 {
		t.Errorf("the index takes %.0f bytes per chunk", per)
	}
	runtime.KeepAlive(x)
}
