package tree

import (
	"errors"
	"math/rand/v2"
	"testing"
)

// descend finds the chunk at pos (an archive byte, or with byChunk an
// ordinal) from root as a reader without the whole list does: Parse,
// Check against the parent's claim, Locate, one node per level.
func descend(t *testing.T, s memStore, root Ref, pos uint64, byChunk bool) (chunk int, start uint64) {
	t.Helper()
	r := root
	var bytes, chunks uint64
	for {
		nd, err := Parse(s[r.ID], 1<<16)
		if err != nil {
			t.Fatal(err)
		}
		if err := nd.Check(r); err != nil {
			t.Fatal(err)
		}
		p := pos - bytes
		if byChunk {
			p = pos - chunks
		}
		i, b, c, ok := nd.Locate(p, byChunk)
		if !ok {
			t.Fatalf("Locate(%d, %v) beyond a node of level %d", p, byChunk, nd.Level)
		}
		bytes, chunks = bytes+b, chunks+c
		if nd.Level == 0 {
			return int(chunks), bytes
		}
		r = nd.Children[i]
	}
}

// TestLocate: descending a tree of several levels with Locate finds every
// chunk by ordinal and by any byte inside it, as its place in the list
// says; Sum and Check agree with what parents claim.
func TestLocate(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	s := memStore{}
	chunks := randomChunks(rng, 3000)
	root, _ := build(t, s, chunks)
	if root.Level < 2 {
		t.Fatalf("a tree of level %d, want at least 2", root.Level)
	}
	var start uint64
	for i, c := range chunks {
		if got, st := descend(t, s, root, uint64(i), true); got != i || st != start {
			t.Fatalf("chunk %d: found %d at %d, want at %d", i, got, st, start)
		}
		for _, off := range []uint64{start, start + uint64(rng.IntN(int(c.Length))), start + uint64(c.Length) - 1} {
			if got, st := descend(t, s, root, off, false); got != i || st != start {
				t.Fatalf("byte %d: chunk %d at %d, want %d at %d", off, got, st, i, start)
			}
		}
		start += uint64(c.Length)
	}
	nd, _ := Parse(s[root.ID], 1<<16)
	if _, _, _, ok := nd.Locate(root.Bytes, false); ok {
		t.Fatal("Locate found the byte after the end")
	}
	if _, _, _, ok := nd.Locate(root.Chunks, true); ok {
		t.Fatal("Locate found the chunk after the last")
	}
	if b, c := nd.Sum(); b != root.Bytes || c != root.Chunks {
		t.Fatalf("Sum %d, %d; the root says %d, %d", b, c, root.Bytes, root.Chunks)
	}
	bad := root
	bad.Bytes++
	if err := nd.Check(bad); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Check of a wrong claim: %v", err)
	}
	bad = root
	bad.Level++
	if err := nd.Check(bad); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Check of a wrong level: %v", err)
	}
}
