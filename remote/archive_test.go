package remote

import (
	"bytes"
	"context"
	"math/rand/v2"
	"testing"
)

// TestArchiveReader: random ranges of a backup read through
// OpenArchive equal the same ranges of the optimized dump; a damaged
// chunk fails the read instead of returning wrong bytes.
func TestArchiveReader(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	mem, nights := damageRepo(t)
	r := openMem(t, mem)
	if _, err := r.LoadIndex(ctx, false); err != nil {
		t.Fatal(err)
	}
	p := nights[1][0]
	want := optimized(t, p)
	d := mustDump(t, p)
	backups, _ := r.Backups(ctx)
	b, err := Select(backups, d.VMID, d.Stamp)
	if err != nil {
		t.Fatal(err)
	}
	m, err := r.Manifest(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	a, err := r.OpenArchive(m)
	if err != nil {
		t.Fatal(err)
	}
	if a.Size() != int64(len(want)) {
		t.Fatalf("size %d, want %d", a.Size(), len(want))
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 300 {
		off := rng.Int64N(a.Size())
		n := min(rng.Int64N(200<<10), a.Size()-off)
		got := make([]byte, n)
		if k, err := a.ReadAt(got, off); err != nil || int64(k) != n {
			t.Fatalf("ReadAt(%d, %d): %d, %v", n, off, k, err)
		}
		if !bytes.Equal(got, want[off:off+n]) {
			t.Fatalf("ReadAt(%d, %d): wrong bytes", n, off)
		}
	}
	// Damage every pack: a read of an uncached chunk fails.
	for _, name := range mem.Names() {
		if len(name) > 6 && name[:6] == PacksDir+"/" {
			data, _ := mem.Get(name)
			for i := range data {
				data[i] ^= 0x5a
			}
			mem.Put(name, data)
		}
	}
	fresh, _ := r.OpenArchive(m)
	if _, err := fresh.ReadAt(make([]byte, 10), a.Size()/2); err == nil {
		t.Fatal("a damaged chunk was read without an error")
	}
}
