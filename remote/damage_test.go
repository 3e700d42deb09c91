package remote

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/vmasync/vmasync/chunkplan"
	"github.com/vmasync/vmasync/remote/backend"
	"github.com/vmasync/vmasync/remote/index"
)

// damageRepo pushes two nights of two small VMs into an in-memory
// repository and returns it with the dump directories of each night.
func damageRepo(t *testing.T) (*backend.Mem, [][]string) {
	t.Helper()
	ctx := context.Background()
	mem := backend.NewMem()
	var nights [][]string
	for night := range 2 {
		dir := t.TempDir()
		var paths []string
		for vm := range 2 {
			paths = append(paths, writeDump(t, dir, crashVM(uint64(60+vm), uint64(night)), []string{"501", "502"}[vm], []string{"2026_11_20-01_00_00", "2026_11_21-01_00_00"}[night], false))
		}
		nights = append(nights, paths)
		r := openMem(t, mem)
		if _, err := r.LoadIndex(ctx, true); err != nil {
			t.Fatal(err)
		}
		for _, p := range paths {
			if _, err := r.Push(ctx, mustDump(t, p), PushOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	return mem, nights
}

func openMem(t *testing.T, mem backend.Backend) *Repository {
	t.Helper()
	r, _, err := OpenOrInit(context.Background(), mem, chunkplan.DefaultParams())
	if err != nil {
		t.Fatal(err)
	}
	r.Config.PackSize = 64 << 10
	var warnings []string
	r.Warn = func(s string) { warnings = append(warnings, s) }
	return r
}

func objectsUnder(mem *backend.Mem, prefix string) []string {
	var out []string
	for _, n := range mem.Names() {
		if strings.HasPrefix(n, prefix) {
			out = append(out, n)
		}
	}
	return out
}

// mustPullAll pulls every backup and compares it with the optimized dump.
func mustPullAll(t *testing.T, mem backend.Backend, nights [][]string) {
	t.Helper()
	ctx := context.Background()
	r := openMem(t, mem)
	for _, paths := range nights {
		for _, p := range paths {
			d := mustDump(t, p)
			if got, want := pullBytes(t, ctx, r, d.VMID, d.Stamp), optimized(t, p); !bytes.Equal(got, want) {
				t.Fatalf("pull %s: not the optimized dump", d.Stem)
			}
		}
	}
}

// TestDamagedIndexDoesNotBlock (issue 13.3): a truncated and a garbage
// index object are set aside with a warning naming them; every command
// works and the packs they described are indexed again from their
// headers.
func TestDamagedIndexDoesNotBlock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	mem, nights := damageRepo(t)
	idx := objectsUnder(mem, IndexDir+"/")
	b, _ := mem.Get(idx[0])
	mem.Put(idx[0], b[:len(b)/2])
	garbage := []byte("not an index at all")
	mem.Put(indexName(ID(sha256.Sum256(garbage))), garbage)

	r := openMem(t, mem)
	var warned []string
	r.Warn = func(s string) { warned = append(warned, s) }
	st, err := r.LoadIndex(ctx, false)
	if err != nil {
		t.Fatalf("load index: %v", err)
	}
	if len(st.Damaged) != 2 || st.Recovered == 0 || len(warned) < 2 || !strings.Contains(strings.Join(warned, "\n"), idx[0]) {
		t.Fatalf("damaged %v recovered %d warnings %q", st.Damaged, st.Recovered, warned)
	}
	if _, err := r.Snapshots(ctx, nil); err != nil {
		t.Fatal(err)
	}
	mustPullAll(t, mem, nights)
	cr, err := r.Check(ctx, CheckOptions{ReadData: true})
	if err != nil || len(cr.Problems) != 2 {
		t.Fatalf("check: %v %v", err, cr.Problems)
	}
	// prune's GC rebuilds the index and removes the damaged objects.
	if _, err := r.GC(ctx, GCOptions{}); err != nil {
		t.Fatal(err)
	}
	if cr, err = r.Check(ctx, CheckOptions{ReadData: true}); err != nil || len(cr.Problems) != 0 {
		t.Fatalf("check after GC: %v %v", err, cr.Problems)
	}
	mustPullAll(t, mem, nights)
}

// TestHostileIndexBounded (issue 13.6): an index object that decodes to
// far more than an index may hold is set aside without decoding it all.
func TestHostileIndexBounded(t *testing.T) {
	// Not parallel: it measures the allocations of the whole process.
	ctx := context.Background()
	mem, _ := damageRepo(t)
	// A frame that declares more than an index may hold: refused from its
	// header.
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest))
	declared := enc.EncodeAll(make([]byte, index.MaxObject+1), nil)
	mem.Put(indexName(ID(sha256.Sum256(declared))), declared)
	// A stream without a declared size that inflates beyond the bound.
	var stream bytes.Buffer
	w, _ := zstd.NewWriter(&stream, zstd.WithEncoderLevel(zstd.SpeedFastest))
	zeros := make([]byte, 1<<20)
	for range index.MaxObject>>20 + 64 {
		w.Write(zeros)
	}
	w.Close()
	mem.Put(indexName(ID(sha256.Sum256(stream.Bytes()))), stream.Bytes())
	t.Logf("hostile index objects: %d and %d bytes", len(declared), stream.Len())

	r := openMem(t, mem)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	st, err := r.LoadIndex(ctx, false)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Damaged) != 2 {
		t.Fatalf("damaged: %v", st.Damaged)
	}
	grew := after.TotalAlloc - before.TotalAlloc
	t.Logf("loading the index allocated %d MiB", grew>>20)
	if grew > 3*index.MaxObject { // was 2.5 GB before the bound
		t.Fatalf("loading the index allocated %d MiB", grew>>20)
	}
	for _, d := range st.Damaged {
		t.Logf("%s", d)
	}
}

// TestPushHeals (issue 13.4, 13.5): a deleted pack and a truncated
// manifest are reported by check, and the next push of the same dumps
// stores what is missing again instead of saying "already on the remote".
func TestPushHeals(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	mem, nights := damageRepo(t)
	packs := objectsUnder(mem, PacksDir+"/")
	mem.Remove(ctx, packs[len(packs)/2])
	man := objectsUnder(mem, BackupsDir+"/501/")[0]
	b, _ := mem.Get(man)
	mem.Put(man, b[:len(b)-40])

	r := openMem(t, mem)
	// Listing and pruning are not blocked by the damaged manifest.
	snaps, err := r.Snapshots(ctx, nil)
	if err != nil || len(snaps) != 4 {
		t.Fatalf("snapshots: %v %v", err, snaps)
	}
	if gc, err := r.GC(ctx, GCOptions{}); err != nil || gc.Skipped == "" || gc.Deleted+gc.Repacked != 0 {
		t.Fatalf("GC with an unreadable manifest must delete nothing: %v %+v", err, gc)
	}
	cr, err := r.Check(ctx, CheckOptions{})
	if err != nil || len(cr.Problems) == 0 {
		t.Fatalf("check: %v %v", err, cr.Problems)
	}
	for _, p := range cr.Problems {
		t.Logf("check: %s", p)
	}
	healed := 0
	if _, err := r.LoadIndex(ctx, true); err != nil {
		t.Fatal(err)
	}
	for _, paths := range nights {
		for _, p := range paths {
			res, err := r.Push(ctx, mustDump(t, p), PushOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if res.Healed != "" {
				healed++
				t.Logf("healed %s: %s", res.Dump.Stem, res.Healed)
			}
		}
	}
	if healed < 1 {
		t.Fatalf("healed %d backups, want at least the truncated one (the re-push of a dump also restores the lost chunks other backups share)", healed)
	}
	r = openMem(t, mem)
	if cr, err = r.Check(ctx, CheckOptions{ReadData: true}); err != nil || len(cr.Problems) != 0 {
		t.Fatalf("check after healing: %v %v", err, cr.Problems)
	}
	mustPullAll(t, mem, nights)
}

// TestRepair: a pack with a damaged blob, a garbage index object and a
// truncated manifest; repair --read-data sets them aside, rebuilds the
// index, names the backups that lost data and the dumps that restore
// them; a push of those dumps makes the repository whole.
func TestRepair(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	mem, nights := damageRepo(t)
	// The largest pack (of chunks; packs of tree nodes may hold one).
	var big string
	var b []byte
	for _, p := range objectsUnder(mem, PacksDir+"/") {
		if d, _ := mem.Get(p); len(d) > len(b) {
			big, b = p, d
		}
	}
	b[3] ^= 0xff
	mem.Put(big, b)
	garbage := []byte("garbage")
	mem.Put(indexName(ID(sha256.Sum256(garbage))), garbage)
	man := objectsUnder(mem, BackupsDir+"/502/")[0]
	mb, _ := mem.Get(man)
	mem.Put(man, mb[:100])
	before := len(mem.Names())

	r := openMem(t, mem)
	var dumps []Dump
	for _, paths := range nights {
		for _, p := range paths {
			dumps = append(dumps, mustDump(t, p))
		}
	}
	dry, err := r.Repair(ctx, RepairOptions{DryRun: true, ReadData: true, Dumps: dumps})
	if err != nil {
		t.Fatal(err)
	}
	if len(mem.Names()) != before || len(dry.SetAside) != 3 {
		t.Fatalf("dry run: %d objects (was %d), set aside %v", len(mem.Names()), before, dry.SetAside)
	}
	res, err := r.Repair(ctx, RepairOptions{ReadData: true, Dumps: dumps})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range res.SetAside {
		t.Logf("set aside: %s", d)
	}
	for _, l := range res.Lost {
		t.Logf("lost: %s missing %d/%d damaged=%v dump=%s", l.Backup.Name, l.Missing, l.Chunks, l.Damaged, l.Dump)
		if l.Dump == "" {
			t.Errorf("no dump named for %s", l.Backup.Name)
		}
	}
	if len(res.SetAside) != 3 || len(res.Lost) == 0 || len(objectsUnder(mem, DamagedDir+"/")) != 3 {
		t.Fatalf("repair: %+v", res)
	}
	// The flipped byte damaged one blob of the pack: its other chunks were
	// copied into a new pack before it was set aside.
	if res.Salvaged == 0 {
		t.Fatalf("repair salvaged no chunk of the damaged pack")
	}
	if dry.Salvaged != res.Salvaged {
		t.Errorf("dry run counted %d salvageable chunks, repair salvaged %d", dry.Salvaged, res.Salvaged)
	}
	if _, err := r.LoadIndex(ctx, true); err != nil {
		t.Fatal(err)
	}
	for _, d := range dumps {
		if _, err := r.Push(ctx, d, PushOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	r = openMem(t, mem)
	cr, err := r.Check(ctx, CheckOptions{ReadData: true})
	if err != nil || len(cr.Problems) != 0 {
		t.Fatalf("check after repair and push: %v %v", err, cr.Problems)
	}
	mustPullAll(t, mem, nights)
	if errors.Is(err, ErrCorruptObject) {
		t.Fatal(err)
	}
}
