package remote

import (
	"bytes"
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/vmasync/vmasync/chunkplan"
	"github.com/vmasync/vmasync/remote/backend"
	"github.com/vmasync/vmasync/remote/tree"
	"github.com/vmasync/vmasync/vma/vmatest"
)

// treeBackup pushes one VM of about 13 MiB (some 1,500 chunks, a chunk
// tree of 3 levels or more) into an in-memory repository, and returns
// the backend, a repository on it with its index loaded, the backup, its
// whole manifest and its optimized archive.
func treeBackup(t *testing.T) (*backend.Mem, *Repository, Backup, *chunkplan.Manifest, []byte) {
	t.Helper()
	ctx := context.Background()
	mem := backend.NewMem()
	r := openMem(t, mem)
	if _, err := r.LoadIndex(ctx, true); err != nil {
		t.Fatal(err)
	}
	s := vmatest.Spec{Disks: []vmatest.Disk{
		{Name: "drive-scsi0", Size: 8 << 20, Content: vmatest.Random},
		{Name: "drive-scsi1", Size: 5<<20 + 4096*3, Content: vmatest.Mixed},
	}, Order: vmatest.ProxmoxLike, Seed: 11}
	p := writeDump(t, t.TempDir(), s, "107", "2026_11_20-01_00_00", false)
	if _, err := r.Push(ctx, mustDump(t, p), PushOptions{}); err != nil {
		t.Fatal(err)
	}
	r = openMem(t, mem)
	if _, err := r.LoadIndex(ctx, false); err != nil {
		t.Fatal(err)
	}
	backups, _ := r.Backups(ctx)
	m, err := r.Manifest(ctx, backups[0])
	if err != nil {
		t.Fatal(err)
	}
	return mem, r, backups[0], m, optimized(t, p)
}

// treeRoot returns the root of backup b's chunk tree.
func treeRoot(t *testing.T, r *Repository, b Backup) tree.Ref {
	t.Helper()
	s, err := r.readManifest(context.Background(), b)
	if err != nil || s.tree == nil {
		t.Fatalf("not a backup with a tree: %v", err)
	}
	return *s.tree
}

// TestArchiveReaderTree (issue 15): a format 3 backup opened with
// OpenBackup is read by descending its chunk tree: random ranges equal
// the optimized dump's, every chunk is found by ordinal and by offset as
// the whole manifest places it, concurrent readers through a node cache
// far smaller than the tree get the right bytes, and the reader holds
// no chunk list.
func TestArchiveReaderTree(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, r, b, m, want := treeBackup(t)
	root := treeRoot(t, r, b)
	if root.Level < 2 {
		t.Fatalf("the tree has %d levels, want 3 or more", root.Level+1)
	}
	t.Logf("%d chunks, %d bytes, a tree of %d levels", root.Chunks, root.Bytes, root.Level+1)
	a, err := r.OpenBackup(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := a.list.(*treeList); !ok {
		t.Fatalf("a format 3 backup is read through %T, not its tree", a.list)
	}
	if a.Size() != int64(len(want)) || a.Chunks() != int64(len(m.Chunks)) {
		t.Fatalf("size %d, %d chunks; want %d, %d", a.Size(), a.Chunks(), len(want), len(m.Chunks))
	}
	var start int64
	for i, c := range m.Chunks {
		got, err := a.Ref(ctx, i)
		if err != nil || got.ChunkRef != c || got.Index != i || got.Start != start {
			t.Fatalf("Ref(%d) = %+v, %v; want %x at %d", i, got, err, c.Hash[:4], start)
		}
		if j, s, err := a.ChunkAt(ctx, start+int64(c.Length)-1); err != nil || j != i || s != start {
			t.Fatalf("ChunkAt(last byte of chunk %d) = %d, %d, %v", i, j, s, err)
		}
		start += int64(c.Length)
	}
	if _, err := a.Ref(ctx, len(m.Chunks)); err == nil {
		t.Fatal("Ref after the last chunk")
	}
	if _, _, err := a.ChunkAt(ctx, a.Size()); err == nil {
		t.Fatal("ChunkAt the archive's end")
	}
	data, err := a.Chunk(ctx, len(m.Chunks)/2)
	if h := sha256.Sum256(data); err != nil || h != m.Chunks[len(m.Chunks)/2].Hash {
		t.Fatalf("Chunk: %v", err)
	}

	// Concurrent readers, with a node cache of a few nodes: lookups
	// evict and load nodes all the time.
	r.nodes = &nodeCache{max: 4 << 10, lru: list.New(), entries: map[nodeKey]*list.Element{}}
	if a, err = r.OpenBackup(ctx, b); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for g := range 6 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 15))
			for range 60 {
				off := rng.Int64N(a.Size())
				n := min(rng.Int64N(200<<10), a.Size()-off)
				if g == 0 { // reads across the end
					n = rng.Int64N(300 << 10)
				}
				got := make([]byte, n)
				k, err := a.ReadAtContext(ctx, got, off)
				wantN := min(n, a.Size()-off)
				if int64(k) != wantN || (err != nil && !(err == io.EOF && wantN < n)) {
					errs <- fmt.Errorf("ReadAt(%d, %d): %d, %v", n, off, k, err)
					return
				}
				if !bytes.Equal(got[:k], want[off:off+wantN]) {
					errs <- fmt.Errorf("ReadAt(%d, %d): wrong bytes", n, off)
					return
				}
				cs, err := a.Span(ctx, off, n)
				if err != nil || len(cs) == 0 || cs[0].Start > off || cs[len(cs)-1].End() < off+wantN {
					errs <- fmt.Errorf("Span(%d, %d): %d chunks, %v", off, n, len(cs), err)
					return
				}
				for k := 1; k < len(cs); k++ {
					if cs[k].Index != cs[k-1].Index+1 || cs[k].Start != cs[k-1].End() {
						errs <- fmt.Errorf("Span(%d, %d): chunk %d does not follow %d", off, n, cs[k].Index, cs[k-1].Index)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if held := r.nodes.held; held > 4<<10+8<<10 {
		t.Fatalf("the node cache holds %d bytes, bound 4 KiB", held)
	}
}

// TestArchiveReaderTreeDamage (issue 15): a damaged or missing tree node
// fails the reads below it with an error naming the backup and the node
// (ErrCorruptObject), never a panic or wrong bytes; reads elsewhere go on.
// A root node that is missing, or that does not hold what the root object
// says, fails OpenBackup.
func TestArchiveReaderTreeDamage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	mem, r, b, m, want := treeBackup(t)
	root := treeRoot(t, r, b)
	// A leaf in the middle of the archive, and where it starts.
	var leaf tree.Ref
	var leafStart, leafFirst, off, ord uint64
	err := r.walkTree(ctx, m, root, tree.Visitor{Node: func(n tree.Ref) bool {
		if n.Level == 0 {
			if leaf.Bytes == 0 && off >= root.Bytes/2 {
				leaf, leafStart, leafFirst = n, off, ord
			}
			off += n.Bytes
			ord += n.Chunks
			return false
		}
		return true
	}})
	if err != nil || leaf.Bytes == 0 {
		t.Fatalf("no leaf found: %v", err)
	}
	damage := func(id tree.ID) {
		loc, ok := r.Lookup(ID(id))
		if !ok {
			t.Fatal("node not indexed")
		}
		data, _ := mem.Get(packName(loc.Pack))
		data = bytes.Clone(data)
		data[loc.Offset+loc.Stored/2] ^= 0xff
		mem.Put(packName(loc.Pack), data)
	}
	name := fmt.Sprintf("tree node %x (level 0)", leaf.ID[:4])

	damage(leaf.ID)
	a, err := r.OpenBackup(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 1000)
	if n, err := a.ReadAtContext(ctx, p, int64(leafStart)+10); err == nil || !errors.Is(err, ErrCorruptObject) ||
		!strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), b.Name) || n != 0 {
		t.Fatalf("read below a damaged leaf: %d, %v (want an error naming %s)", n, err, name)
	}
	if _, err := a.Chunk(ctx, int(leafFirst+leaf.Chunks-1)); !errors.Is(err, ErrCorruptObject) || !strings.Contains(err.Error(), name) {
		t.Fatalf("Chunk of the damaged leaf's last chunk: %v", err)
	}
	if _, err := a.ReadAtContext(ctx, p, 0); err != nil || !bytes.Equal(p, want[:len(p)]) {
		t.Fatalf("a read away from the damaged leaf: %v", err)
	}
	end := int64(len(want)) - int64(len(p))
	if _, err := a.ReadAtContext(ctx, p, end); err != nil || !bytes.Equal(p, want[end:]) {
		t.Fatalf("a read after the damaged leaf: %v", err)
	}

	// The root node's pack gone and the index loaded again: the node
	// is not indexed.
	loc, _ := r.Lookup(ID(root.ID))
	if err := mem.Remove(ctx, packName(loc.Pack)); err != nil {
		t.Fatal(err)
	}
	r2 := openMem(t, mem)
	r2.Warn = func(string) {}
	if _, err := r2.LoadIndex(ctx, false); err != nil {
		t.Fatal(err)
	}
	rootName := fmt.Sprintf("tree node %x (level %d)", root.ID[:4], root.Level)
	if _, err := r2.OpenBackup(ctx, b); !errors.Is(err, ErrCorruptObject) || !strings.Contains(err.Error(), rootName) {
		t.Fatalf("open without the root node: %v (want an error naming %s)", err, rootName)
	}
	// The same with the index loaded before: the pack is not found.
	r.nodes = nil
	if _, err := r.OpenBackup(ctx, b); !errors.Is(err, ErrCorruptObject) || !strings.Contains(err.Error(), rootName) {
		t.Fatalf("open without the root node's pack: %v", err)
	}
}

// TestArchiveReaderTreeSizes: a root object whose archive size and tree
// bytes agree with each other but not with the tree fails OpenBackup
// (the sizes do not add up), as OpenArchive fails a manifest whose
// chunks do not.
func TestArchiveReaderTreeSizes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	mem, r, b, m, _ := treeBackup(t)
	obj, _ := mem.Get(b.Object)
	size := fmt.Sprint(m.ArchiveSize)
	bad := bytes.ReplaceAll(obj, []byte(size), []byte(fmt.Sprint(m.ArchiveSize+1)))
	if bytes.Equal(bad, obj) || bytes.Count(obj, []byte(size)) != 2 {
		t.Fatalf("the root object does not hold the size twice:\n%s", obj)
	}
	mem.Put(b.Object, bad)
	if _, err := r.OpenBackup(ctx, b); !errors.Is(err, ErrCorruptObject) || !strings.Contains(err.Error(), "its parent says") {
		t.Fatalf("open of a root object claiming one byte more: %v", err)
	}
}

// TestArchiveReaderFormat2: the backups of a format 2 repository
// (testdata/v2repo, whole manifests and no trees) open with OpenBackup
// and read byte-exactly.
func TestArchiveReaderFormat2(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	_, f := copyV2Repo(t, ctx)
	r, err := Open(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.LoadIndex(ctx, false); err != nil {
		t.Fatal(err)
	}
	backups, err := r.Backups(ctx)
	if err != nil || len(backups) != len(v2Optimized) {
		t.Fatalf("%d backups, %v", len(backups), err)
	}
	for _, b := range backups {
		a, err := r.OpenBackup(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := a.list.(*manifestList); !ok {
			t.Fatalf("a format 2 backup read through %T", a.list)
		}
		got := make([]byte, a.Size())
		// In pieces that do not fall on chunk boundaries.
		for off := int64(0); off < a.Size(); off += 77777 {
			n := min(77777, a.Size()-off)
			if k, err := a.ReadAtContext(ctx, got[off:off+n], off); err != nil || int64(k) != n {
				t.Fatalf("%s: ReadAt(%d, %d): %d, %v", b.Name, n, off, k, err)
			}
		}
		sum := sha256.Sum256(got)
		if hex.EncodeToString(sum[:]) != v2Optimized[b.Stamp] {
			t.Fatalf("%s: not the optimized dump", b.Name)
		}
	}
}
