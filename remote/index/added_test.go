package index

import (
	"math/rand/v2"
	"testing"
)

// TestAddedSet: the push's set of added entries answers like a map,
// also for hashes that share their first 8 bytes (the table's key), and
// is empty again after take.
func TestAddedSet(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 9))
	a := newAdded(3000) // grows from addedStart records, through a rehash, to 3000
	want := map[ID]rec{}
	var hs []ID
	for round := range 2 {
		for i := range 2900 {
			var h ID
			for j := range h {
				h[j] = byte(rng.Uint32())
			}
			if i%7 == 0 && len(hs) > 0 {
				copy(h[:8], hs[rng.IntN(len(hs))][:8]) // same slot, different hash
			}
			hs = append(hs, h)
			r := rec{h: h, pack: uint32(i), offset: uint32(round), stored: 3, raw: 4, typ: 1}
			a.put(r)
			want[h] = r
		}
		if a.len() != len(want) {
			t.Fatalf("round %d: %d records, want %d", round, a.len(), len(want))
		}
		for h, r := range want {
			p, ok := a.get(&h)
			if !ok || p.pack != r.pack || p.offset != r.offset || p.stored != 3 || p.raw != 4 || p.typ != 1 {
				t.Fatalf("round %d: get %x = %+v %v, want %+v", round, h[:4], p, ok, r)
			}
		}
		var absent ID
		absent[0] = 0xff
		if _, ok := a.get(&absent); ok {
			t.Fatal("an absent hash was found")
		}
		if got := a.take(); len(got) != len(want) {
			t.Fatalf("take returned %d records, want %d", len(got), len(want))
		}
		for h := range want {
			if _, ok := a.get(&h); ok {
				t.Fatal("a record survived take")
			}
		}
		want = map[ID]rec{}
	}
}
