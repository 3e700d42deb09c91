package remote

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/vmasync/vmasync/chunkplan"
	"github.com/vmasync/vmasync/internal/vzdump"
	"github.com/vmasync/vmasync/remote/backend"
	"github.com/vmasync/vmasync/vma/vmatest"
)

// The crash-point harness. A scenario is a list of phases (two nights of
// three VMs pushed, a prune with GC and repack, two pushes overlapping).
// Each phase starts from the repository the previous phases left. For
// every write or delete N of a phase and every fault mode (the process
// stops before the call takes effect, after it, or the call fails), the
// phase is run again from its start state through a Fault backend that
// faults at N; then, as after a kill, the dead process's locks are
// removed and the phase runs again on the plain backend (the next night's
// run). After that:
//   - the recovery run succeeds (no command is blocked by what the crash
//     left);
//   - every backup that was ever reported complete and that no prune
//     removed pulls byte-exactly;
//   - after one more push and prune, check --read-data is clean.
// The figures (points run, failures) are logged; docs/benchmarks.md has
// them.

// crashVM is a small VM: a few packs of 64 KiB per push keep the
// number of write points (and the run time) small.
func crashVM(seed, gen uint64) vmatest.Spec {
	return vmatest.Spec{
		Disks: []vmatest.Disk{
			{Name: "drive-scsi0", Size: 320 << 10, Content: vmatest.Mixed},
			{Name: "drive-scsi1", Size: 130<<10 + 4567, Content: vmatest.ZeroRuns},
		},
		Order: vmatest.ProxmoxLike, PullForward: 0.05, Seed: seed, Generation: gen,
		ChangeFraction: 0.2,
	}
}

type crashWorld struct {
	dumps   map[int][]string  // night -> dump paths (3 VMs)
	want    map[string]uint64 // backup name -> optimizedSum of its dump
	packMax int
	// cacheDir is the index cache every "process" of the world shares, as
	// processes on one host share ~/.cache/vmasync; it survives the
	// crashes (and holds what they left).
	cacheDir string
}

func newCrashWorld(t *testing.T) *crashWorld {
	w := &crashWorld{dumps: map[int][]string{}, want: map[string]uint64{}, packMax: 64 << 10, cacheDir: t.TempDir()}
	for night := 1; night <= 3; night++ {
		dir := t.TempDir()
		for vm := range 3 {
			vmid := fmt.Sprint(400 + vm)
			stamp := fmt.Sprintf("2026_11_%02d-02_00_00", 20+night)
			p := writeDump(t, dir, crashVM(uint64(40+vm), uint64(night-1)), vmid, stamp, vm == 1)
			if vm == 2 {
				os.WriteFile(p+".notes", []byte("notes of "+vmid+"\n"), 0o644)
				os.WriteFile(strings.TrimSuffix(p, ".vma")+".log", []byte("INFO: backup of "+vmid+"\n"), 0o644)
			}
			w.dumps[night] = append(w.dumps[night], p)
			w.want[mustDump(t, p).Stem] = optimizedSum(t, p)
		}
	}
	return w
}

// open opens the repository as a new process would.
func (w *crashWorld) open(ctx context.Context, b backend.Backend) (*Repository, error) {
	r, _, err := OpenOrInit(ctx, b, chunkplan.DefaultParams())
	if err != nil {
		return nil, err
	}
	r.Config.PackSize = w.packMax
	r.CacheDir = w.cacheDir
	r.Transfers = 2
	r.Warn = func(string) {}
	return r, nil
}

// push runs 'vmasync push' of the given dumps; done receives the backups
// reported complete.
func (w *crashWorld) push(ctx context.Context, b backend.Backend, paths []string, done func(string)) error {
	r, err := w.open(ctx, b)
	if err != nil {
		return err
	}
	l, err := r.Lock(ctx, false, "push", 0)
	if err != nil {
		return err
	}
	defer l.Unlock()
	ctx = l.Context()
	if _, err := r.LoadIndex(ctx, true); err != nil {
		return err
	}
	for _, p := range paths {
		d, _ := vzdump.ParseName(filepath.Base(p))
		d.Path = p
		if _, err := r.Push(ctx, d, PushOptions{}); err != nil {
			return fmt.Errorf("push %s: %w", d.Stem, err)
		}
		done(d.Stem)
	}
	return nil
}

// prune runs 'vmasync prune --keep-last 1 --repack-threshold 0.05'.
func (w *crashWorld) prune(ctx context.Context, b backend.Backend) error {
	r, err := w.open(ctx, b)
	if err != nil {
		return err
	}
	l, err := r.Lock(ctx, true, "prune", 0)
	if err != nil {
		return err
	}
	defer l.Unlock()
	ctx = l.Context()
	backups, err := r.Backups(ctx)
	if err != nil {
		return err
	}
	var gone []Backup
	for _, m := range MarkBackups(backups, KeepRules{Last: 1}) {
		if !m.Keep {
			gone = append(gone, m.Backup)
		}
	}
	if err := r.Forget(ctx, gone); err != nil {
		return err
	}
	_, err = r.GC(ctx, GCOptions{RepackThreshold: 0.05})
	return err
}

// repair runs 'vmasync repair --read-data' (a garbage index object is
// planted first, so that there is something to set aside).
func (w *crashWorld) repair(ctx context.Context, b backend.Backend) error {
	garbage := []byte("not an index")
	if err := b.Save(ctx, indexName(ID(sha256.Sum256(garbage))), garbage); err != nil {
		return err
	}
	r, err := w.open(ctx, b)
	if err != nil {
		return err
	}
	l, err := r.Lock(ctx, true, "repair", 0)
	if err != nil {
		return err
	}
	defer l.Unlock()
	_, err = r.Repair(l.Context(), RepairOptions{ReadData: true})
	return err
}

// phase is one step of the scenario; run runs it on b and reports the
// backups it completed.
type phase struct {
	name string
	run  func(ctx context.Context, b backend.Backend, done func(string)) error
	// prunes: after it, only the newest backup of each VM is kept.
	prunes bool
}

func (w *crashWorld) phases() []phase {
	return []phase{
		{name: "night 1", run: func(ctx context.Context, b backend.Backend, done func(string)) error {
			return w.push(ctx, b, w.dumps[1], done)
		}},
		{name: "night 2", run: func(ctx context.Context, b backend.Backend, done func(string)) error {
			return w.push(ctx, b, w.dumps[2], done)
		}},
		{name: "prune", prunes: true, run: func(ctx context.Context, b backend.Backend, done func(string)) error {
			return w.prune(ctx, b)
		}},
		{name: "repair", run: func(ctx context.Context, b backend.Backend, done func(string)) error {
			return w.repair(ctx, b)
		}},
		{name: "overlapping pushes", run: func(ctx context.Context, b backend.Backend, done func(string)) error {
			// Two processes push night 3 at once; the faulty backend is
			// one process's, the other runs on the plain backend.
			plain := b
			if f, ok := b.(*backend.Fault); ok {
				plain = f.B
			}
			var wg sync.WaitGroup
			var otherErr error
			wg.Add(1)
			go func() {
				defer wg.Done()
				otherErr = w.push(ctx, plain, w.dumps[3], done)
			}()
			err := w.push(ctx, b, w.dumps[3], done)
			wg.Wait()
			if otherErr != nil {
				return fmt.Errorf("the other push failed: %w", otherErr)
			}
			return err
		}},
	}
}

// verify pulls every backup in complete that is still listed (and, after a
// prune, every VM's newest) and compares it with the optimized dump.
func (w *crashWorld) verify(ctx context.Context, b backend.Backend, complete map[string]bool) error {
	r, err := w.open(ctx, b)
	if err != nil {
		return err
	}
	if _, err := r.LoadIndex(ctx, false); err != nil {
		return err
	}
	backups, err := r.Backups(ctx)
	if err != nil {
		return err
	}
	listed := map[string]Backup{}
	for _, bk := range backups {
		listed[bk.Name] = bk
	}
	for name := range complete {
		bk, ok := listed[name]
		if !ok {
			return fmt.Errorf("backup %s was reported complete and is gone", name)
		}
		m, err := r.Manifest(ctx, bk)
		if err != nil {
			return err
		}
		h := newSum()
		if err := r.Restore(ctx, m, h, nil); err != nil {
			return fmt.Errorf("pull %s: %w", name, err)
		}
		if h.Sum64() != w.want[name] {
			return fmt.Errorf("pull %s: not the optimized dump", name)
		}
	}
	return nil
}

// pruned drops from complete the backups a keep-last 1 prune removes.
func pruned(complete map[string]bool) map[string]bool {
	newest := map[string]string{}
	for name := range complete {
		vmid := strings.Split(name, "-")[2]
		if name > newest[vmid] {
			newest[vmid] = name
		}
	}
	out := map[string]bool{}
	for _, name := range newest {
		out[name] = true
	}
	return out
}

// removeLocks removes every lock, as 'vmasync unlock' does for the locks
// of a process that was killed.
func removeLocks(ctx context.Context, m *backend.Mem) {
	for _, n := range m.Names() {
		if strings.HasPrefix(n, LocksDir+"/") {
			m.Remove(ctx, n)
		}
	}
}

func TestCrashPoints(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newCrashWorld(t)
	state := backend.NewMem()
	complete := map[string]bool{}
	var mu sync.Mutex
	add := func(set map[string]bool) func(string) {
		return func(s string) { mu.Lock(); set[s] = true; mu.Unlock() }
	}
	modes := []backend.FaultMode{backend.CrashBefore, backend.CrashAfter, backend.CrashTorn, backend.FailCall}
	// The crash points of a phase are independent (each starts from a
	// clone of the phase's start state), so two workers run them, each as
	// the processes of one host: with an index cache of its own, which
	// survives their crashes and holds what they left.
	workers := make([]*crashWorld, 2)
	for i := range workers {
		ww := *w
		ww.cacheDir = t.TempDir()
		workers[i] = &ww
	}
	type crashPoint struct {
		n    int
		mode backend.FaultMode
	}
	points := 0
	var failures atomic.Int64
	for pi, ph := range w.phases() {
		// Count the phase's writes.
		count := backend.NewFault(state.Clone(), 0, backend.FailCall)
		if err := ph.run(ctx, count, func(string) {}); err != nil {
			t.Fatalf("%s without faults: %v", ph.name, err)
		}
		writes := count.Writes()
		if ph.name == "overlapping pushes" {
			writes += 4 // the other push races it: its points move
		}
		log := count.Log()
		var todo []crashPoint
		for n := 1; n <= writes; n++ {
			for _, mode := range modes {
				if mode == backend.CrashTorn && n <= len(log) && log[n-1] == "save "+ConfigName {
					// The config is written once, at init, and only with an
					// atomic save (every backend's); a torn config is not
					// something vmasync claims to survive.
					continue
				}
				todo = append(todo, crashPoint{n, mode})
			}
		}
		points += len(todo)
		var next atomic.Int64
		var wg sync.WaitGroup
		for _, ww := range workers {
			wph := ww.phases()[pi]
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := int(next.Add(1) - 1); i < len(todo); i = int(next.Add(1) - 1) {
					p := todo[i]
					if err := ww.crashAt(ctx, wph, state, p.n, p.mode, complete, add); err != nil {
						failures.Add(1)
						t.Errorf("%s, write %d, %s: %v", ph.name, p.n, p.mode, err)
					}
				}
			}()
		}
		wg.Wait()
		t.Logf("%s: %d write points × %d modes", ph.name, writes, len(modes))
		// The phase as it runs without faults, for the next phase.
		if err := ph.run(ctx, state, add(complete)); err != nil {
			t.Fatalf("%s: %v", ph.name, err)
		}
		if ph.prunes {
			complete = pruned(complete)
		}
	}
	t.Logf("crash points run: %d, failures: %d", points, failures.Load())
}

// crashAt runs phase ph from state with a fault at write n, then the
// recovery, and checks the invariants.
func (w *crashWorld) crashAt(ctx context.Context, ph phase, state *backend.Mem, n int, mode backend.FaultMode, complete map[string]bool, add func(map[string]bool) func(string)) error {
	mem := state.Clone()
	f := backend.NewFault(mem, n, mode)
	done := map[string]bool{}
	for k := range complete {
		done[k] = true
	}
	err := ph.run(ctx, f, add(done))
	if log := f.Log(); err == nil && mode != backend.FailCall && f.Crashed() && !strings.HasPrefix(log[n-1], "remove "+LocksDir+"/") {
		// Only the last write, releasing the lock, may fail unnoticed:
		// the work was done.
		return fmt.Errorf("the phase reported success though the process crashed at %q", log[n-1])
	}
	removeLocks(ctx, mem)
	// The next run: the same phase again, on the plain backend.
	if err := ph.run(ctx, mem, add(done)); err != nil {
		return fmt.Errorf("the next run failed: %w", err)
	}
	if ph.prunes {
		done = pruned(done)
	}
	if err := w.verify(ctx, mem, done); err != nil {
		return err
	}
	// One more push and prune leave a clean repository.
	if err := w.push(ctx, mem, w.dumps[3], add(done)); err != nil {
		return fmt.Errorf("push after recovery: %w", err)
	}
	if err := w.prune(ctx, mem); err != nil {
		return fmt.Errorf("prune after recovery: %w", err)
	}
	r, err := w.open(ctx, mem)
	if err != nil {
		return err
	}
	cr, err := r.Check(ctx, CheckOptions{ReadData: true})
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}
	if len(cr.Problems) > 0 {
		return fmt.Errorf("check --read-data after push + prune: %v", cr.Problems)
	}
	if err := w.verify(ctx, mem, pruned(done)); err != nil {
		return fmt.Errorf("after push + prune: %w", err)
	}
	for _, name := range mem.Names() {
		if backend.IsTemp(name) {
			return fmt.Errorf("prune left the temporary object %s", name)
		}
	}
	return nil
}
