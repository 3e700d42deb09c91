package tree

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/vmasync/vmasync/chunkplan"
)

// memStore is a node store in a map.
type memStore map[ID][]byte

func (m memStore) store(level int, id ID, node []byte) error {
	if sha256.Sum256(node) != id {
		return fmt.Errorf("store: id is not the node's hash")
	}
	m[id] = append([]byte(nil), node...)
	return nil
}

func (m memStore) load(_ context.Context, ids []ID) ([][]byte, []error) {
	data, errs := make([][]byte, len(ids)), make([]error, len(ids))
	for i, id := range ids {
		if b, ok := m[id]; ok {
			data[i] = b
		} else {
			errs[i] = errors.New("not stored")
		}
	}
	return data, errs
}

func randomChunks(rng *rand.Rand, n int) []chunkplan.ChunkRef {
	out := make([]chunkplan.ChunkRef, n)
	for i := range out {
		for j := range out[i].Hash {
			out[i].Hash[j] = byte(rng.Uint32())
		}
		out[i].Length = 4096 + uint32(rng.IntN(60000))
	}
	return out
}

func build(t testing.TB, s memStore, chunks []chunkplan.ChunkRef) (Ref, int64) {
	t.Helper()
	var added int64
	w := NewWriter(func(level int, id ID, node []byte) error {
		if _, ok := s[id]; !ok {
			added += int64(len(node))
		}
		return s.store(level, id, node)
	})
	for _, c := range chunks {
		if err := w.Add(c); err != nil {
			t.Fatal(err)
		}
	}
	r, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	return r, added
}

func walkAll(t testing.TB, s memStore, r Ref) []chunkplan.ChunkRef {
	t.Helper()
	var got []chunkplan.ChunkRef
	err := Walk(context.Background(), r, 1<<16, s.load, Visitor{Chunk: func(c chunkplan.ChunkRef) error {
		got = append(got, c)
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{1, 2, 31, 32, 33, 1000, 70000} {
		chunks := randomChunks(rng, n)
		s := memStore{}
		r, _ := build(t, s, chunks)
		var bytes uint64
		for _, c := range chunks {
			bytes += uint64(c.Length)
		}
		if r.Chunks != uint64(n) || r.Bytes != bytes {
			t.Fatalf("%d chunks: root says %d chunks, %d bytes; want %d", n, r.Chunks, r.Bytes, bytes)
		}
		got := walkAll(t, s, r)
		if len(got) != n {
			t.Fatalf("%d chunks: walked %d", n, len(got))
		}
		for i := range got {
			if got[i] != chunks[i] {
				t.Fatalf("%d chunks: chunk %d differs", n, i)
			}
		}
		r2, added := build(t, s, chunks)
		if r2 != r || added != 0 {
			t.Fatalf("%d chunks: second build: root %v vs %v, %d new bytes", n, r2, r, added)
		}
	}
}

// TestRepeatedChunk: a long run of one chunk (zeros) is cut at
// MaxEntries and its nodes repeat.
func TestRepeatedChunk(t *testing.T) {
	t.Parallel()
	c := chunkplan.ChunkRef{Hash: sha256.Sum256([]byte("x")), Length: 65536}
	for cut(&c.Hash) {
		c.Hash[0]++
	}
	chunks := make([]chunkplan.ChunkRef, 100000)
	for i := range chunks {
		chunks[i] = c
	}
	s := memStore{}
	r, added := build(t, s, chunks)
	if got := walkAll(t, s, r); len(got) != len(chunks) {
		t.Fatalf("walked %d chunks, want %d", len(got), len(chunks))
	}
	if added > int64(20*MaxNode) {
		t.Fatalf("100,000 equal chunks stored %d bytes of nodes", added)
	}
}

// TestChangeIsLocal: changing a few chunks of a long list stores only
// the nodes on their paths.
func TestChangeIsLocal(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	chunks := randomChunks(rng, 200000)
	s := memStore{}
	_, full := build(t, s, chunks)
	changed := append([]chunkplan.ChunkRef(nil), chunks...)
	for range 20 {
		i := rng.IntN(len(changed))
		changed[i] = randomChunks(rng, 1)[0]
	}
	// an insertion and a deletion too
	changed = append(changed[:1000], append(randomChunks(rng, 3), changed[1000:]...)...)
	changed = append(changed[:150000], changed[150002:]...)
	r, added := build(t, s, changed)
	got := walkAll(t, s, r)
	if len(got) != len(changed) {
		t.Fatalf("walked %d chunks, want %d", len(got), len(changed))
	}
	perChange := added / 22
	t.Logf("first tree %d bytes; 22 changes stored %d bytes (%d per change)", full, added, perChange)
	if perChange > 5000 {
		t.Fatalf("a change stored %d bytes of nodes", perChange)
	}
}

func TestWalkDetectsDamage(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(5, 6))
	chunks := randomChunks(rng, 5000)
	s := memStore{}
	r, _ := build(t, s, chunks)
	// A node that lies about its size, stored under its own hash.
	for id, b := range s {
		if b[len(Magic)+1] != 0 {
			continue
		}
		bad := append([]byte(nil), b...)
		bad[HeaderSize+35]++ // first chunk one byte longer
		delete(s, id)
		nid := sha256.Sum256(bad)
		s[nid] = bad
		// The parent still names the old id: the walk reports it missing.
		err := Walk(context.Background(), r, 1<<16, s.load, Visitor{})
		if err == nil {
			t.Fatal("walk of a tree with a missing node succeeded")
		}
		s[id] = bad // the right name, wrong content (a loader that does not check)
		err = Walk(context.Background(), r, 1<<16, s.load, Visitor{})
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("walk of a node that does not add up: %v", err)
		}
		return
	}
	t.Fatal("no leaf")
}

func TestWalkSkips(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(7, 8))
	s := memStore{}
	r, _ := build(t, s, randomChunks(rng, 20000))
	seen := map[ID]bool{}
	nodes := 0
	v := Visitor{Node: func(r Ref) bool {
		if seen[r.ID] {
			return false
		}
		seen[r.ID] = true
		nodes++
		return true
	}}
	if err := Walk(context.Background(), r, 1<<16, s.load, v); err != nil {
		t.Fatal(err)
	}
	if nodes != len(s) {
		t.Fatalf("visited %d nodes, %d stored", nodes, len(s))
	}
	if err := Walk(context.Background(), r, 1<<16, s.load, v); err != nil || nodes != len(s) {
		t.Fatalf("second walk: %v, %d nodes", err, nodes)
	}
}

func TestParseRejects(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(9, 10))
	s := memStore{}
	build(t, s, randomChunks(rng, 100))
	for _, b := range s {
		for _, n := range []int{0, HeaderSize - 1, HeaderSize, len(b) - 1} {
			if _, err := Parse(b[:n], 1<<16); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Parse of %d of %d bytes: %v", n, len(b), err)
			}
		}
		if _, err := Parse(b, 100); !errors.Is(err, ErrCorrupt) && b[len(Magic)+1] == 0 {
			t.Fatalf("Parse with chunks beyond the maximum: %v", err)
		}
	}
}

// TestDiff: the chunks Diff reports for two trees are exactly those of
// the leaves that differ, a superset of the chunks each lacks, and an
// identical pair reports nothing and loads only inner nodes.
func TestDiff(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(11, 12))
	chunks := randomChunks(rng, 50000)
	s := memStore{}
	ra, _ := build(t, s, chunks)
	changed := append([]chunkplan.ChunkRef(nil), chunks...)
	for range 10 {
		changed[rng.IntN(len(changed))] = randomChunks(rng, 1)[0]
	}
	rb, _ := build(t, s, changed)
	var onlyA, onlyB []chunkplan.ChunkRef
	loads := 0
	load := func(ctx context.Context, ids []ID) ([][]byte, []error) {
		loads += len(ids)
		return s.load(ctx, ids)
	}
	err := Diff(context.Background(), ra, rb, 1<<16, load,
		func(c chunkplan.ChunkRef) error { onlyA = append(onlyA, c); return nil },
		func(c chunkplan.ChunkRef) error { onlyB = append(onlyB, c); return nil })
	if err != nil {
		t.Fatal(err)
	}
	inA := map[ID]bool{}
	for _, c := range chunks {
		inA[c.Hash] = true
	}
	inOnlyB := map[ID]bool{}
	for _, c := range onlyB {
		inOnlyB[c.Hash] = true
	}
	for _, c := range changed {
		if !inA[c.Hash] && !inOnlyB[c.Hash] {
			t.Fatal("a chunk of b that a lacks was not reported")
		}
	}
	if len(onlyB) == 0 || len(onlyB) > 10*2*MaxEntries || len(onlyA) > 10*2*MaxEntries || loads > len(s)/3 {
		t.Fatalf("10 changes reported %d and %d chunks", len(onlyA), len(onlyB))
	}
	t.Logf("10 changed chunks of 50,000: %d and %d chunks reported, %d node loads (%d nodes in all)", len(onlyA), len(onlyB), loads, len(s))
	loads = 0
	onlyA, onlyB = nil, nil
	if err := Diff(context.Background(), rb, rb, 1<<16, load,
		func(c chunkplan.ChunkRef) error { onlyA = append(onlyA, c); return nil },
		func(c chunkplan.ChunkRef) error { onlyB = append(onlyB, c); return nil }); err != nil || len(onlyA)+len(onlyB) > 0 {
		t.Fatalf("a tree against itself: %v, %d+%d chunks", err, len(onlyA), len(onlyB))
	}
	if loads != 0 {
		t.Fatalf("a tree against itself loaded %d nodes", loads)
	}
}

// TestWalkSkippedInOrder: nodes skipped anywhere in the tree are handed
// to Skipped at their place in the stream: counting their bytes, every
// chunk visited is found at its offset in the whole list.
func TestWalkSkippedInOrder(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(13, 14))
	chunks := randomChunks(rng, 30000)
	s := memStore{}
	r, _ := build(t, s, chunks)
	at := map[uint64]chunkplan.ChunkRef{}
	var off uint64
	for _, c := range chunks {
		at[off] = c
		off += uint64(c.Length)
	}
	off = 0
	skipped, visited := 0, 0
	err := Walk(context.Background(), r, 1<<16, s.load, Visitor{
		Node: func(n Ref) bool { return n == r || n.ID[0] >= 40 },
		Skipped: func(n Ref) error {
			skipped++
			off += n.Bytes
			return nil
		},
		Chunk: func(c chunkplan.ChunkRef) error {
			if at[off] != c {
				t.Fatalf("chunk at offset %d is not the list's", off)
			}
			visited++
			off += uint64(c.Length)
			return nil
		},
	})
	if err != nil || off != r.Bytes || skipped == 0 || visited == 0 {
		t.Fatalf("walk: %v; %d of %d bytes, %d skipped, %d chunks", err, off, r.Bytes, skipped, visited)
	}
}
