package remote

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmasync/vmasync/internal/vzdump"
	"github.com/vmasync/vmasync/remote/backend"
	"github.com/vmasync/vmasync/remote/pack"

	"github.com/vmasync/vmasync/chunkplan"
)

// at builds a backup of vmid at a local time "2006-01-02 15:04".
func at(vmid, s string, protected bool) Backup {
	t, err := time.ParseInLocation("2006-01-02 15:04", s, time.Local)
	if err != nil {
		panic(err)
	}
	stamp := t.Format(vzdump.StampLayout)
	return Backup{VMID: vmid, Name: "vzdump-qemu-" + vmid + "-" + stamp, Stamp: stamp, Time: t, Protected: protected}
}

func kept(marks []Mark) map[string]string {
	m := map[string]string{}
	for _, k := range marks {
		if k.Keep {
			m[k.Backup.Time.Format("2006-01-02 15:04")] = k.Reason
		}
	}
	return m
}

// TestMarkBackups follows the rules of the PVE and PBS documentation
// (vzdump "Backup Retention", PBS "Pruning"): rules in the order last,
// hourly, daily, weekly, monthly, yearly; each covers only backups older
// than what earlier rules kept... and only the newest backup per period.
func TestMarkBackups(t *testing.T) {
	t.Parallel()
	daily := func(vmid string, from time.Time, days int) []Backup {
		var b []Backup
		for i := 0; i < days; i++ {
			b = append(b, at(vmid, from.AddDate(0, 0, i).Format("2006-01-02")+" 01:00", false))
		}
		return b
	}
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.Local)
	cases := []struct {
		name    string
		backups []Backup
		rules   KeepRules
		want    map[string]string
	}{
		{
			name:    "keep-last 3",
			backups: daily("100", start, 5),
			rules:   KeepRules{Last: 3},
			want:    map[string]string{"2025-01-05 01:00": "keep-last", "2025-01-04 01:00": "keep-last", "2025-01-03 01:00": "keep-last"},
		},
		{
			name: "keep-daily keeps the newest of each day",
			backups: []Backup{at("100", "2025-03-01 01:00", false), at("100", "2025-03-01 13:00", false), at("100", "2025-03-02 01:00", false),
				at("100", "2025-03-02 09:00", false), at("100", "2025-03-02 20:00", false), at("100", "2025-02-28 23:59", false)},
			rules: KeepRules{Daily: 2},
			want:  map[string]string{"2025-03-02 20:00": "keep-daily", "2025-03-01 13:00": "keep-daily"},
		},
		{
			name: "keep-hourly then keep-daily skips days already covered",
			backups: []Backup{at("100", "2025-03-02 10:00", false), at("100", "2025-03-02 10:30", false), at("100", "2025-03-02 11:15", false),
				at("100", "2025-03-01 22:00", false), at("100", "2025-02-28 22:00", false)},
			rules: KeepRules{Hourly: 2, Daily: 2},
			// hourly keeps 11:15 and 10:30 (10:00 is the same hour: removed);
			// daily: 03-02 is covered already, so 03-01 and 02-28.
			want: map[string]string{"2025-03-02 11:15": "keep-hourly", "2025-03-02 10:30": "keep-hourly", "2025-03-01 22:00": "keep-daily", "2025-02-28 22:00": "keep-daily"},
		},
		{
			name: "protected backups are kept and not counted",
			backups: []Backup{at("100", "2025-03-03 01:00", true), at("100", "2025-03-02 01:00", false), at("100", "2025-03-01 01:00", false),
				at("100", "2024-06-01 01:00", true)},
			rules: KeepRules{Last: 1},
			want:  map[string]string{"2025-03-03 01:00": "protected", "2025-03-02 01:00": "keep-last", "2024-06-01 01:00": "protected"},
		},
		{
			name: "keep-weekly uses ISO weeks across the new year",
			// 2026-12-28 (Monday) and 2027-01-03 (Sunday) are both in ISO week 2026-W53.
			backups: []Backup{at("100", "2026-12-28 01:00", false), at("100", "2027-01-03 01:00", false), at("100", "2027-01-04 01:00", false), at("100", "2026-12-27 01:00", false)},
			rules:   KeepRules{Weekly: 3},
			want:    map[string]string{"2027-01-04 01:00": "keep-weekly", "2027-01-03 01:00": "keep-weekly", "2026-12-27 01:00": "keep-weekly"},
		},
		{
			// The PVE documentation's example: daily backups, keep-last=3,
			// keep-daily=13, keep-yearly=9.
			name:    "PVE example last=3 daily=13 yearly=9",
			backups: daily("100", time.Date(2023, 12, 20, 0, 0, 0, 0, time.Local), 500),
			rules:   KeepRules{Last: 3, Daily: 13, Yearly: 9},
			want: func() map[string]string {
				m := map[string]string{}
				last := time.Date(2023, 12, 20, 0, 0, 0, 0, time.Local).AddDate(0, 0, 499) // 2025-05-02
				for i := 0; i < 3; i++ {
					m[last.AddDate(0, 0, -i).Format("2006-01-02")+" 01:00"] = "keep-last"
				}
				for i := 3; i < 16; i++ {
					m[last.AddDate(0, 0, -i).Format("2006-01-02")+" 01:00"] = "keep-daily"
				}
				// 2025 is covered; the newest of 2024 and of 2023 follow.
				m["2024-12-31 01:00"] = "keep-yearly"
				m["2023-12-31 01:00"] = "keep-yearly"
				return m
			}(),
		},
		{
			name:    "no rules keep everything",
			backups: daily("100", start, 3),
			rules:   KeepRules{},
			want:    map[string]string{"2025-01-01 01:00": "keep-all", "2025-01-02 01:00": "keep-all", "2025-01-03 01:00": "keep-all"},
		},
		{
			name:    "keep-monthly",
			backups: daily("100", time.Date(2025, 1, 25, 0, 0, 0, 0, time.Local), 40), // to 2025-03-05
			rules:   KeepRules{Monthly: 2},
			want:    map[string]string{"2025-03-05 01:00": "keep-monthly", "2025-02-28 01:00": "keep-monthly"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// Two VMs with the same times: rules apply per VM.
			var all []Backup
			for _, b := range c.backups {
				all = append(all, b)
				o := b
				o.VMID, o.Name = "200", strings.Replace(b.Name, "-100-", "-200-", 1)
				all = append(all, o)
			}
			marks := MarkBackups(all, c.rules)
			var m100, m200 []Mark
			for _, m := range marks {
				if m.Backup.VMID == "100" {
					m100 = append(m100, m)
				} else {
					m200 = append(m200, m)
				}
			}
			for _, ms := range [][]Mark{m100, m200} {
				got := kept(ms)
				if fmt.Sprint(sortedMap(got)) != fmt.Sprint(sortedMap(c.want)) {
					t.Errorf("kept:\n got %v\nwant %v", sortedMap(got), sortedMap(c.want))
				}
			}
		})
	}
}

func sortedMap(m map[string]string) []string {
	var s []string
	for k, v := range m {
		s = append(s, k+"="+v)
	}
	sort.Strings(s)
	return s
}

// TestPruneGC: backups of two VMs over several days; prune keeps the
// last 2 of each, GC shrinks the storage, and every remaining backup pulls
// byte-exactly and passes check --read-data.
// TestPruneGC runs in a repository of each format version: version 1
// names packs by their whole content, version 2 by their tail.
func TestPruneGC(t *testing.T) {
	t.Parallel()
	// The versions push the same dumps (read only) and pull the same
	// backups: both are made once. The VM is vmSpec's with its two
	// larger disks at 8 MiB and 2 MiB, in packs of 256 KiB: about 100
	// packs before GC, as with the full-size VM in packs of 1 MiB, and
	// the same share (13-15 %) freed.
	dumps := t.TempDir()
	var paths = map[string]string{}
	for day := 0; day < 4; day++ {
		for _, vm := range []string{"101", "102"} {
			s := vmSpec(uint64(len(vm)*7+int(vm[2])), uint64(day))
			s.Disks[0].Size, s.Disks[2].Size = 8<<20, 2<<20+12345
			s.ChangeFraction = 0.3 // much changes: old data becomes garbage
			stamp := fmt.Sprintf("2026_11_%02d-01_00_00", 10+day)
			paths[vm+"@"+stamp] = writeDump(t, dumps, s, vm, stamp, false)
		}
	}
	// A protected old backup stays whatever the rules say.
	os.WriteFile(filepath.Join(dumps, "vzdump-qemu-101-2026_11_10-01_00_00.protected"), nil, 0o644)
	want := &optimizedOnce{}
	for v := 1; v <= FormatVersion; v++ {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			t.Parallel()
			testPruneGC(t, v, dumps, paths, want)
		})
	}
}

// optimizedOnce is optimized for dumps that do not change, each
// optimized once however many tests want it.
type optimizedOnce struct {
	mu  sync.Mutex
	out map[string]func() []byte
}

func (o *optimizedOnce) get(t testing.TB, path string) []byte {
	o.mu.Lock()
	if o.out == nil {
		o.out = map[string]func() []byte{}
	}
	f, ok := o.out[path]
	if !ok {
		f = sync.OnceValue(func() []byte { return optimized(t, path) })
		o.out[path] = f
	}
	o.mu.Unlock()
	return f()
}

func testPruneGC(t *testing.T, version int, dumps string, paths map[string]string, opt *optimizedOnce) {
	ctx := testCtx(t)
	r, f, remoteDir := localRepoVersion(t, ctx, 256<<10, version)
	pushAll(t, ctx, r, dumps)
	checkPackNames(t, remoteDir, version)
	before := dirSize(t, filepath.Join(remoteDir, PacksDir))

	backups, _ := r.Backups(ctx)
	marks := MarkBackups(backups, KeepRules{Last: 2})
	var gone []Backup
	for _, m := range marks {
		if !m.Keep {
			gone = append(gone, m.Backup)
		}
	}
	if len(gone) != 3 { // 101: days 11 (10 is protected); 102: days 10, 11
		t.Fatalf("prune would remove %d backups, want 3: %+v", len(gone), marks)
	}
	lock, err := r.Lock(ctx, true, "prune", 0)
	if err != nil {
		t.Fatal(err)
	}
	// What prune --dry-run reports: GC counting the backups it would
	// forget as gone, before they are.
	est, err := r.GC(ctx, GCOptions{DryRun: true, Without: gone})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Forget(ctx, gone); err != nil {
		t.Fatal(err)
	}
	dry, err := r.GC(ctx, GCOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if dirSize(t, filepath.Join(remoteDir, PacksDir)) != before {
		t.Fatal("GC --dry-run changed the packs")
	}
	res, err := r.GC(ctx, GCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	lock.Unlock()
	after := dirSize(t, filepath.Join(remoteDir, PacksDir))
	t.Logf("GC: %+v; packs %d -> %d bytes", res, before, after)
	if after >= before*9/10 || res.BytesAfter != after || dry.BytesAfter > after || dry.BytesAfter < after-after/50 {
		t.Fatalf("storage did not shrink as reported: %d -> %d (GC says %d, dry run %d)", before, after, res.BytesAfter, dry.BytesAfter)
	}
	if res.Deleted+res.Repacked == 0 {
		t.Fatal("GC deleted and repacked nothing")
	}
	// The estimate leaves the new packs' headers out (68 bytes per blob
	// plus 20 per pack), so it may be a little below what GC leaves.
	t.Logf("dry-run estimate before forgetting: %+v", est)
	if est.Deleted != res.Deleted || est.Repacked != res.Repacked || est.PacksAfter != res.PacksAfter ||
		est.BytesAfter > after || est.BytesAfter < after-after/50 {
		t.Errorf("dry-run estimate %+v, GC did %+v (%d bytes after)", est, res, after)
	}
	checkPackNames(t, remoteDir, version)
	r2, _ := Open(ctx, f)
	if r2.Config.Version != version {
		t.Fatalf("format version %d after GC, want %d", r2.Config.Version, version)
	}
	cr, err := r2.Check(ctx, CheckOptions{ReadData: true})
	if err != nil || len(cr.Problems) > 0 || cr.Backups != 5 {
		t.Fatalf("check after GC: %v %+v", err, cr)
	}
	left, _ := r2.Backups(ctx)
	for _, b := range left {
		got := pullBytes(t, ctx, r2, b.VMID, b.Stamp)
		if want := opt.get(t, paths[b.VMID+"@"+b.Stamp]); string(got) != string(want) {
			t.Errorf("%s differs after GC", b.Name)
		}
	}
}

// localRepoVersion is localRepo with format version v, as a vmasync of
// that version would have created it.
func localRepoVersion(t *testing.T, ctx context.Context, packSize, v int) (*Repository, backend.Backend, string) {
	t.Helper()
	_, f, dir := localRepo(t, ctx, 0)
	b, err := os.ReadFile(filepath.Join(dir, ConfigName))
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	c["version"] = v
	if b, err = json.Marshal(c); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ConfigName), b, 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := Open(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	r.Config.PackSize = packSize
	return r, f, dir
}

// checkPackNames checks that every pack in the local repository dir is
// named the way format version v names packs: by the SHA-256 of all its
// bytes (1) or of its tail from the header on (2).
func checkPackNames(t *testing.T, dir string, v int) {
	t.Helper()
	n := 0
	filepath.Walk(filepath.Join(dir, PacksDir), func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		named := b
		if v >= 2 {
			hdr := int(binary.BigEndian.Uint32(b[len(b)-pack.TrailerLen:]))
			named = b[len(b)-pack.TrailerLen-hdr:]
		}
		if want := ID(sha256.Sum256(named)).String() + packSuffix; filepath.Base(p) != want {
			t.Errorf("pack %s: want the name %s in format version %d", filepath.Base(p), want, v)
		}
		n++
		return nil
	})
	if n == 0 {
		t.Error("no packs")
	}
}

func dirSize(t *testing.T, dir string) int64 {
	var n int64
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

// TestPushPruneConcurrent runs pushes of new dumps and prune+GC at the
// same time on one remote; the locks serialise them and every manifest
// left is complete.
func TestPushPruneConcurrent(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	remoteDir := filepath.Join(t.TempDir(), "remote")
	f, _ := NewFs(ctx, remoteDir)
	if _, err := Init(ctx, f, chunkplan.DefaultParams()); err != nil {
		t.Fatal(err)
	}
	dumps := t.TempDir()
	for day := 0; day < 3; day++ {
		s := vmSpec(31, uint64(day))
		s.ChangeFraction = 0.3
		writeDump(t, dumps, s, "103", fmt.Sprintf("2026_11_%02d-01_00_00", 10+day), false)
	}
	r0, _ := Open(ctx, f)
	pushAll(t, ctx, r0, dumps)
	// New dumps arrive while prune runs.
	for day := 3; day < 6; day++ {
		s := vmSpec(31, uint64(day))
		s.ChangeFraction = 0.3
		writeDump(t, dumps, s, "103", fmt.Sprintf("2026_11_%02d-01_00_00", 10+day), false)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	wg.Add(2)
	go func() { // push
		defer wg.Done()
		r, _ := Open(ctx, f)
		dl, _, _ := vzdump.Find(dumps)
		for _, d := range dl {
			err := func() error {
				l, err := r.Lock(ctx, false, "push", time.Minute)
				if err != nil {
					return err
				}
				defer l.Unlock()
				if _, err := r.LoadIndex(ctx, true); err != nil {
					return err
				}
				_, err = r.Push(ctx, d, PushOptions{})
				return err
			}()
			if err != nil {
				errs <- fmt.Errorf("push %s: %w", d.Stem, err)
			}
		}
	}()
	go func() { // prune twice
		defer wg.Done()
		r, _ := Open(ctx, f)
		for i := 0; i < 2; i++ {
			err := func() error {
				l, err := r.Lock(ctx, true, "prune", time.Minute)
				if err != nil {
					return err
				}
				defer l.Unlock()
				backups, err := r.Backups(ctx)
				if err != nil {
					return err
				}
				var gone []Backup
				for _, m := range MarkBackups(backups, KeepRules{Last: 2}) {
					if !m.Keep {
						gone = append(gone, m.Backup)
					}
				}
				if err := r.Forget(ctx, gone); err != nil {
					return err
				}
				_, err = r.GC(ctx, GCOptions{RepackThreshold: 0.1})
				return err
			}()
			if err != nil {
				errs <- fmt.Errorf("prune: %w", err)
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	r, _ := Open(ctx, f)
	cr, err := r.Check(ctx, CheckOptions{ReadData: true})
	if err != nil || len(cr.Problems) > 0 {
		t.Fatalf("check after concurrent push and prune: %v %v", err, cr.Problems)
	}
	if locks, _ := r.Locks(context.Background()); len(locks) != 0 {
		t.Errorf("locks left: %v", locks)
	}
	t.Logf("%d backups left", cr.Backups)
}
