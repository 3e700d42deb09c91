package index

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/vmasync/vmasync/remote/pack"
)

// testRepo is a set of index objects (by name) and pack sizes, built
// like a repository's: packs of consecutive chunks, some chunks stored
// twice (in another pack of another object), some packs missing or
// shorter than their entries.
type testRepo struct {
	objects map[string][]Entry
	sizes   map[ID]int64
	hashes  []ID
}

func newTestRepo(rng *rand.Rand, nobj, perObj int) *testRepo {
	t := &testRepo{objects: map[string][]Entry{}, sizes: map[ID]int64{}}
	for o := range nobj {
		var entries []Entry
		var p ID
		var off uint32
		for i := range perObj {
			if i%50 == 0 {
				if i > 0 {
					t.sizes[p] = int64(off) + 100 + int64(pack.TrailerLen)
				}
				p = randID(rng)
				off = 0
			}
			var h ID
			if len(t.hashes) > 0 && rng.IntN(20) == 0 {
				h = t.hashes[rng.IntN(len(t.hashes))] // stored again
			} else {
				h = randID(rng)
				if rng.IntN(50) == 0 {
					h[8] ^= 1
					copy(h[:8], t.hashes[len(t.hashes)-1][:8]) // same first 8 bytes as another
				}
				t.hashes = append(t.hashes, h)
			}
			st := uint32(100 + rng.IntN(4000))
			entries = append(entries, Entry{Hash: h, Location: Location{Pack: p, Offset: off, Stored: st, Raw: st * 2, Type: uint8(rng.IntN(2))}})
			off += st
		}
		t.sizes[p] = int64(off) + 100 + int64(pack.TrailerLen)
		t.objects[fmt.Sprintf("index/%03d-%s.index", o, randID(rng).Short())] = entries
	}
	// Damage: a few packs missing, a few too short for their last entry.
	n := 0
	for id, size := range t.sizes {
		switch n % 17 {
		case 3:
			delete(t.sizes, id)
		case 5:
			t.sizes[id] = size - 200
		}
		n++
	}
	return t
}

func randID(rng *rand.Rand) ID {
	var id ID
	for i := 0; i < 32; i += 8 {
		v := rng.Uint64()
		for j := range 8 {
			id[i+j] = byte(v >> (8 * j))
		}
	}
	return id
}

func (t *testRepo) names(filter func(string) bool) []string {
	var out []string
	for n := range t.objects {
		if filter == nil || filter(n) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// memIndex loads the named objects as LoadIndex does.
func (t *testRepo) memIndex(names []string) (*Index, PackCheck) {
	x := New()
	res := PackCheck{Covered: map[ID]bool{}}
	short := map[ID]bool{}
	for _, n := range names {
		for _, e := range t.objects[n] {
			size, ok := t.sizes[e.Pack]
			if !ok {
				res.Dropped++
				continue
			}
			if int64(e.Offset)+int64(e.Stored) > size-int64(pack.TrailerLen) {
				res.Dropped++
				short[e.Pack] = true
				continue
			}
			res.Covered[e.Pack] = true
			x.Load(e.Hash, e.Location)
		}
	}
	for id := range short {
		res.Short = append(res.Short, id)
	}
	x.Freeze()
	return x, res
}

// usable lists every location of h that LoadIndex would keep.
func (t *testRepo) usable(names []string, h ID) []Location {
	var out []Location
	for _, n := range names {
		for _, e := range t.objects[n] {
			if e.Hash != h {
				continue
			}
			if size, ok := t.sizes[e.Pack]; ok && int64(e.Offset)+int64(e.Stored) <= size-int64(pack.TrailerLen) {
				out = append(out, e.Location)
			}
		}
	}
	return out
}

type openCount struct{ reads int }

func (t *testRepo) open(tb testing.TB, dir string, names []string, o DiskOptions, c *openCount) (*DiskIndex, DiskStats) {
	tb.Helper()
	o.Dir, o.RepoID, o.Sources = dir, "repo1", names
	o.Read = func(name string) ([]Entry, error) {
		if c != nil {
			c.reads++
		}
		e, ok := t.objects[name]
		if !ok {
			return nil, fmt.Errorf("no object %s", name)
		}
		return slices.Clone(e), nil
	}
	x, st, err := OpenDisk(o)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { x.Close() })
	return x, st
}

// compare checks x against the in-memory index of the same objects:
// every known hash and some unknown ones. With exact set, the location
// must be Index's; otherwise one of the usable ones.
func compare(t *testing.T, x *DiskIndex, tr *testRepo, names []string, exact bool, rng *rand.Rand) {
	t.Helper()
	mem, want := tr.memIndex(names)
	got, err := x.SetPacks(tr.sizes, pack.TrailerLen)
	if err != nil {
		t.Fatal(err)
	}
	if got.Dropped != want.Dropped || len(got.Covered) != len(want.Covered) || len(got.Short) != len(want.Short) {
		t.Fatalf("SetPacks: dropped %d covered %d short %d, want %d %d %d", got.Dropped, len(got.Covered), len(got.Short), want.Dropped, len(want.Covered), len(want.Short))
	}
	for id := range want.Covered {
		if !got.Covered[id] {
			t.Fatalf("pack %s not covered", id.Short())
		}
	}
	if x.Len() != mem.Len() {
		t.Fatalf("Len %d, want %d", x.Len(), mem.Len())
	}
	probe := slices.Clone(tr.hashes)
	for range 200 {
		probe = append(probe, randID(rng))
	}
	for _, h := range probe {
		wl, wok := mem.Get(h)
		gl, gok := x.Get(h)
		if wok != gok || x.Has(h) != wok {
			t.Fatalf("%s: found %v, want %v", h.Short(), gok, wok)
		}
		if !wok {
			continue
		}
		if exact && gl != wl {
			t.Fatalf("%s: %+v, want %+v", h.Short(), gl, wl)
		}
		if !exact && !slices.Contains(tr.usable(names, h), gl) {
			t.Fatalf("%s: %+v is not a usable location", h.Short(), gl)
		}
	}
	// Each: every chunk once, as Get returns it, in hash order.
	n := 0
	var last *ID
	if err := x.Each(func(h ID, l Location) {
		n++
		if last != nil && compareID(last, &h) >= 0 {
			t.Fatalf("Each out of order at %s", h.Short())
		}
		last = &h
		if gl, ok := x.Get(h); !ok || gl != l {
			t.Fatalf("Each %s: %+v, Get %+v", h.Short(), l, gl)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if n != mem.Len() {
		t.Fatalf("Each: %d chunks, want %d", n, mem.Len())
	}
	// Positions: EachPos, Pos and At agree, and mark sets work.
	marks := NewMarks(x.Positions())
	if err := x.EachPos(func(pos int, h ID, l Location) {
		if p, ok := x.Pos(h); !ok || p != pos {
			t.Fatalf("Pos(%s) = %d %v, EachPos %d", h.Short(), p, ok, pos)
		}
		ah, al, err := x.At(pos)
		if err != nil || ah != h || al != l {
			t.Fatalf("At(%d) = %s %+v %v, want %s %+v", pos, ah.Short(), al, err, h.Short(), l)
		}
		if marks.Has(pos) {
			t.Fatalf("position %d twice", pos)
		}
		marks.Set(pos)
	}); err != nil {
		t.Fatal(err)
	}
	if err := x.Err(); err != nil {
		t.Fatal(err)
	}
}

func TestDiskIndexMatchesIndex(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	tr := newTestRepo(rng, 40, 500)
	names := tr.names(nil)
	for _, sortRecs := range []int{1 << 20, 700, 50} { // in memory; spills; over 64 spills (two merge passes)
		t.Run(fmt.Sprint(sortRecs), func(t *testing.T) {
			var c openCount
			x, st := tr.open(t, t.TempDir(), names, DiskOptions{SortRecords: sortRecs}, &c)
			if st.Built != 1 || st.Read != len(names) || c.reads != len(names) || x.Runs() != 1 {
				t.Fatalf("stats %+v, %d reads, %d runs", st, c.reads, x.Runs())
			}
			compare(t, x, tr, names, true, rng)
		})
	}
}

func TestDiskIndexReopenAndGrow(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	tr := newTestRepo(rng, 30, 300)
	all := tr.names(nil)
	dir := t.TempDir()
	first := all[:10]
	x, _ := tr.open(t, dir, first, DiskOptions{}, nil)
	compare(t, x, tr, first, true, rng)
	x.Close()

	// Reopened with the same objects: nothing read, same answers.
	var c openCount
	x, st := tr.open(t, dir, first, DiskOptions{}, &c)
	if c.reads != 0 || st.Reused != 1 || st.Built != 0 {
		t.Fatalf("reopen: %d reads, %+v", c.reads, st)
	}
	compare(t, x, tr, first, true, rng)
	x.Close()

	// New objects (pushes): only those are read, into a second run, then
	// a third; with MaxRuns 2 the two smallest are merged.
	c = openCount{}
	x, st = tr.open(t, dir, all[:20], DiskOptions{MaxRuns: 3}, &c)
	if c.reads != 10 || st.Reused != 1 || st.Built != 1 || x.Runs() != 2 {
		t.Fatalf("grow: %d reads, %+v, %d runs", c.reads, st, x.Runs())
	}
	compare(t, x, tr, all[:20], false, rng)
	x.Close()
	c = openCount{}
	x, st = tr.open(t, dir, all, DiskOptions{MaxRuns: 2}, &c)
	if c.reads != 10 || st.Reused != 2 || st.Built != 1 || st.Merged != 2 || x.Runs() != 2 {
		t.Fatalf("grow and merge: %d reads, %+v, %d runs", c.reads, st, x.Runs())
	}
	compare(t, x, tr, all, false, rng)
	x.Close()

	// A prune replaced objects: runs naming a gone object are deleted and
	// the rest read again.
	c = openCount{}
	kept := all[5:]
	x, st = tr.open(t, dir, kept, DiskOptions{MaxRuns: 2}, &c)
	if st.Stale == 0 || c.reads == 0 {
		t.Fatalf("after prune: %d reads, %+v", c.reads, st)
	}
	compare(t, x, tr, kept, false, rng)
	x.Close()
	files, _ := filepath.Glob(filepath.Join(dir, "repo1", "*"))
	if len(files) > 2 {
		t.Fatalf("left in the cache: %v", files)
	}
}

func TestDiskIndexAdd(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(5, 6))
	tr := newTestRepo(rng, 8, 400)
	names := tr.names(nil)
	dir := t.TempDir()
	x, _ := tr.open(t, dir, names, DiskOptions{FlushAt: 100}, nil)
	mem, _ := tr.memIndex(names)
	if _, err := x.SetPacks(tr.sizes, pack.TrailerLen); err != nil {
		t.Fatal(err)
	}
	// A push adds chunks, some already indexed, some in missing packs'
	// place (the push uploads them again).
	newPack := randID(rng)
	var added []ID
	for i := range 1000 {
		var h ID
		switch i % 4 {
		case 0:
			h = tr.hashes[rng.IntN(len(tr.hashes))]
		default:
			h = randID(rng)
			added = append(added, h)
		}
		l := Location{Pack: newPack, Offset: uint32(i * 10), Stored: 10, Raw: 20, Type: 1}
		if i%100 == 0 {
			newPack = randID(rng)
		}
		x.Add(h, l)
		mem.Add(h, l)
		if i%3 == 0 {
			x.Add(h, Location{Pack: newPack, Offset: 1}) // a second add is ignored
			mem.Add(h, Location{Pack: newPack, Offset: 1})
		}
	}
	if len(x.temps) == 0 {
		t.Fatal("no temporary run written")
	}
	if x.Len() != mem.Len() {
		t.Fatalf("Len %d, want %d", x.Len(), mem.Len())
	}
	for _, h := range append(slices.Clone(tr.hashes), added...) {
		wl, wok := mem.Get(h)
		gl, gok := x.Get(h)
		if wok != gok || wl != gl {
			t.Fatalf("%s: %+v %v, want %+v %v", h.Short(), gl, gok, wl, wok)
		}
	}
	n := 0
	if err := x.Each(func(h ID, l Location) {
		n++
		if wl, _ := mem.Get(h); wl != l {
			t.Fatalf("Each %s: %+v, want %+v", h.Short(), l, wl)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if n != mem.Len() {
		t.Fatalf("Each: %d, want %d", n, mem.Len())
	}
	if _, ok := x.Pos(added[0]); ok {
		t.Fatal("an added chunk has a position")
	}
	temps := []string{}
	for _, r := range x.temps {
		temps = append(temps, r.path)
	}
	x.Close()
	for _, p := range temps {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("temporary run %s left: %v", p, err)
		}
	}
}

func runFiles(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "repo1", "run-*.run"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no run files: %v", err)
	}
	return files
}

func flip(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if off < 0 {
		st, _ := f.Stat()
		off += st.Size()
	}
	b := []byte{0}
	f.ReadAt(b, off)
	b[0] ^= 0x40
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func TestDiskIndexDamage(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(7, 8))
	tr := newTestRepo(rng, 6, 400)
	names := tr.names(nil)
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, path string)
		lazy   bool // found only when the block is read
	}{
		{"fence", func(t *testing.T, p string) { flip(t, p, -int64(footerLen)-5) }, false},
		{"footer count", func(t *testing.T, p string) { flip(t, p, -int64(footerLen)+3) }, false},
		{"footer sum", func(t *testing.T, p string) { flip(t, p, -30) }, false},
		{"magic", func(t *testing.T, p string) { flip(t, p, 2) }, false},
		{"pack table", func(t *testing.T, p string) {
			fi, _ := os.Stat(p)
			r, err := openRun(p)
			if err != nil {
				t.Fatal(err)
			}
			r.close()
			flip(t, p, int64(len(runMagic))+r.n*EntrySize+3)
			_ = fi
		}, false},
		{"truncated", func(t *testing.T, p string) {
			fi, _ := os.Stat(p)
			os.Truncate(p, fi.Size()-7)
		}, false},
		{"empty", func(t *testing.T, p string) { os.Truncate(p, 0) }, false},
		{"record", func(t *testing.T, p string) { flip(t, p, int64(len(runMagic))+EntrySize*70+5) }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			x, _ := tr.open(t, dir, names, DiskOptions{}, nil)
			x.Close()
			files := runFiles(t, dir)
			tc.damage(t, files[0])
			var c openCount
			x, st := tr.open(t, dir, names, DiskOptions{}, &c)
			if !tc.lazy {
				if st.Damaged != 1 || st.Built != 1 || c.reads != len(names) {
					t.Fatalf("not rebuilt: %+v, %d reads", st, c.reads)
				}
				compare(t, x, tr, names, true, rng)
				return
			}
			if st.Damaged != 0 {
				t.Fatalf("%+v", st)
			}
			// Read by a lookup: reported, never used, the run deleted.
			x.Each(func(ID, Location) {})
			if err := x.Err(); err == nil || !strings.Contains(err.Error(), "checksum") {
				t.Fatalf("Err() = %v", err)
			}
			x.Close()
			if _, err := os.Stat(files[0]); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("damaged run kept: %v", err)
			}
			x, st = tr.open(t, dir, names, DiskOptions{}, nil)
			if st.Built != 1 {
				t.Fatalf("%+v", st)
			}
			compare(t, x, tr, names, true, rng)
			x.Close()
			// With Verify, the same damage is found when opening.
			files = runFiles(t, dir)
			flip(t, files[0], int64(len(runMagic))+EntrySize*70+5)
			x, st = tr.open(t, dir, names, DiskOptions{Verify: true}, nil)
			if st.Damaged != 1 || st.Built != 1 {
				t.Fatalf("verify: %+v", st)
			}
			compare(t, x, tr, names, true, rng)
		})
	}
}

func TestDiskIndexSkip(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(9, 10))
	tr := newTestRepo(rng, 5, 100)
	names := tr.names(nil)
	dir := t.TempDir()
	skip := names[2]
	reads := 0
	o := DiskOptions{Dir: dir, RepoID: "repo1", Sources: names, Read: func(n string) ([]Entry, error) {
		reads++
		if n == skip {
			return nil, fmt.Errorf("damaged: %w", ErrSkip)
		}
		return tr.objects[n], nil
	}}
	for round := range 2 {
		reads = 0
		x, st, err := OpenDisk(o)
		if err != nil {
			t.Fatal(err)
		}
		// The skipped object is read again at every open (LoadIndex
		// reports it each time), the others only once.
		want := 1
		if round == 0 {
			want = len(names)
		}
		if reads != want || st.Skipped != 1 {
			t.Fatalf("round %d: %d reads, %+v", round, reads, st)
		}
		if x.Has(tr.objects[skip][0].Hash) && !slices.ContainsFunc(names, func(n string) bool {
			return n != skip && slices.ContainsFunc(tr.objects[n], func(e Entry) bool { return e.Hash == tr.objects[skip][0].Hash })
		}) {
			t.Fatal("skipped object's chunk indexed")
		}
		x.Close()
	}
	// A failing read fails the open.
	o.Read = func(string) ([]Entry, error) { return nil, errors.New("network") }
	o.Sources = append(names, "index/new.index")
	if _, _, err := OpenDisk(o); err == nil {
		t.Fatal("read error ignored")
	}
	if _, _, err := OpenDisk(DiskOptions{Dir: dir, RepoID: "../x"}); err == nil {
		t.Fatal("bad repository id accepted")
	}
	if _, _, err := OpenDisk(DiskOptions{RepoID: "x"}); err == nil {
		t.Fatal("no directory accepted")
	}
}

func TestDiskIndexEmpty(t *testing.T) {
	t.Parallel()
	x, st, err := OpenDisk(DiskOptions{Dir: t.TempDir(), RepoID: "r"})
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	if x.Len() != 0 || x.Positions() != 0 || x.Has(ID{1}) || st.Built != 0 {
		t.Fatalf("empty: %d %d %+v", x.Len(), x.Positions(), st)
	}
	x.Add(ID{1}, Location{Pack: ID{2}})
	if l, ok := x.Get(ID{1}); !ok || l.Pack != (ID{2}) || x.Len() != 1 {
		t.Fatal("add to empty")
	}
}

// TestDiskIndexLoadExtra: entries in no index object (packs read back
// from their headers) get positions after the cached ones, as Index.Load
// gives them before Freeze, and are gone at Close.
func TestDiskIndexLoadExtra(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(11, 12))
	tr := newTestRepo(rng, 8, 300)
	names := tr.names(nil)
	x, _ := tr.open(t, t.TempDir(), names[:6], DiskOptions{}, nil)
	var extra []Entry
	for _, n := range names[6:] {
		extra = append(extra, tr.objects[n]...)
	}
	before := x.Positions()
	if err := x.LoadExtra(extra); err != nil {
		t.Fatal(err)
	}
	if x.Positions() != before+len(extra) {
		t.Fatalf("%d positions, want %d", x.Positions(), before+len(extra))
	}
	compare(t, x, tr, names, true, rng)
	path := x.runs[len(x.runs)-1].path
	x.Close()
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("extra run left: %v", err)
	}
}

// TestDiskIndexLenAcrossRuns: with every pack usable, Len counts a hash
// stored in two runs once without reading the big run through.
func TestDiskIndexLenAcrossRuns(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(13, 14))
	tr := newTestRepo(rng, 200, 400)
	for _, entries := range tr.objects {
		for _, e := range entries {
			tr.sizes[e.Pack] = 1 << 40 // no damage
		}
	}
	names := tr.names(nil)
	dir := t.TempDir()
	for _, upto := range []int{196, 198, 200} { // a big run, then two small ones
		x, _ := tr.open(t, dir, names[:upto], DiskOptions{}, nil)
		if _, err := x.SetPacks(tr.sizes, pack.TrailerLen); err != nil {
			t.Fatal(err)
		}
		x.mu.Lock()
		fast := x.countFast()
		x.mu.Unlock()
		if fast < 0 {
			t.Fatalf("%d runs: not counted from the small runs", x.Runs())
		}
		mem, _ := tr.memIndex(names[:upto])
		if int(fast) != mem.Len() || x.Len() != mem.Len() {
			t.Fatalf("%d runs: Len %d (fast %d), want %d", x.Runs(), x.Len(), fast, mem.Len())
		}
		x.Close()
	}
}

// TestIndexEachPos: Index.EachPos walks what At returns, in order.
func TestIndexEachPos(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(15, 16))
	tr := newTestRepo(rng, 3, 200)
	x, _ := tr.memIndex(tr.names(nil))
	n := 0
	x.EachPos(func(pos int, h ID, l Location) {
		ah, al := x.At(pos)
		if pos != n || ah != h || al != l {
			t.Fatalf("position %d: %s %+v, At %s %+v", pos, h.Short(), l, ah.Short(), al)
		}
		n++
	})
	if n != x.Positions() {
		t.Fatalf("%d of %d positions", n, x.Positions())
	}
}

// TestDiskIndexConcurrentOpens: processes opening one cache at once (two
// pushes, a push and a check) each get a correct index, whichever runs
// the others wrote, merged or deleted meanwhile.
func TestDiskIndexConcurrentOpens(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(17, 18))
	tr := newTestRepo(rng, 24, 200)
	all := tr.names(nil)
	dir := t.TempDir()
	sets := [][]string{all[:8], all[:16], all, all[:16], all, all[4:]}
	type result struct {
		x   *DiskIndex
		err error
	}
	res := make([]result, len(sets))
	done := make(chan int)
	for i, names := range sets {
		go func() {
			x, _, err := OpenDisk(DiskOptions{Dir: dir, RepoID: "repo1", Sources: names, MaxRuns: 2, Read: func(n string) ([]Entry, error) {
				return slices.Clone(tr.objects[n]), nil
			}})
			res[i] = result{x, err}
			done <- i
		}()
	}
	for range sets {
		<-done
	}
	for i, r := range res {
		if r.err != nil {
			t.Fatalf("open %d: %v", i, r.err)
		}
		compare(t, r.x, tr, sets[i], false, rng)
		r.x.Close()
	}
}

// TestBloomOfAddedRuns: the runs a push's added entries are flushed to
// carry a Bloom filter that never hides a hash they hold and turns away
// most others (so that a lookup does not read every such run).
func TestBloomOfAddedRuns(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(5, 5))
	var in, out []ID
	for range 20000 {
		var h ID
		for i := range h {
			h[i] = byte(rng.Uint32())
		}
		in = append(in, h)
	}
	for range 20000 {
		var h ID
		for i := range h {
			h[i] = byte(rng.Uint32())
		}
		out = append(out, h)
	}
	b := newBloom(len(in))
	for i := range in {
		b.add(&in[i])
	}
	for i := range in {
		if !b.mayHave(&in[i]) {
			t.Fatal("the filter hides a hash it holds")
		}
	}
	fp := 0
	for i := range out {
		if b.mayHave(&out[i]) {
			fp++
		}
	}
	if fp > len(out)/40 {
		t.Fatalf("%d false positives of %d (want about 1 %%)", fp, len(out))
	}
	t.Logf("%d false positives of %d", fp, len(out))
}

// TestDiskIndexOpenWhileOthersDelete: other processes delete the runs of
// a cache directory they share with this one (a run naming index objects
// they do not know yet is stale to them; one overlapping their own build
// is dropped), also a run this process has just built or merged and not
// yet read. Every open still succeeds with the whole index: a run is
// read through the descriptor it was written with.
func TestDiskIndexOpenWhileOthersDelete(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(23, 24))
	tr := newTestRepo(rng, 12, 50)
	all := tr.names(nil)
	dir := t.TempDir()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		repo := filepath.Join(dir, "repo1")
		for {
			select {
			case <-stop:
				return
			default:
			}
			ents, _ := os.ReadDir(repo)
			for _, e := range ents {
				if strings.HasPrefix(e.Name(), "run-") {
					os.Remove(filepath.Join(repo, e.Name()))
				}
			}
		}
	})
	defer wg.Wait()
	defer close(stop)
	for i := range 40 {
		names := all[:4+i%9]
		x, _, err := OpenDisk(DiskOptions{Dir: dir, RepoID: "repo1", Sources: names, MaxRuns: 1, Read: func(n string) ([]Entry, error) {
			return slices.Clone(tr.objects[n]), nil
		}})
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		compare(t, x, tr, names, false, rng)
		x.Close()
	}
}
