package remote

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmasync/vmasync/internal/vzdump"
	"github.com/vmasync/vmasync/remote/backend"
)

// failLocks fails every save of a lock object once armed.
type failLocks struct {
	backend.Backend
	armed atomic.Bool
}

func (f *failLocks) Save(ctx context.Context, name string, data []byte) error {
	if f.armed.Load() && strings.HasPrefix(name, LocksDir+"/") {
		return errors.New("injected: the remote refuses writes")
	}
	return f.Backend.Save(ctx, name, data)
}

// TestLockLostStopsCommand (issue 13.8): when the lock cannot be
// refreshed, the command's context is cancelled with ErrLockLost before
// the lock could be taken for stale by another process; while refreshes
// work, it is not.
func TestLockLostStopsCommand(t *testing.T) {
	t.Parallel()
	mem := backend.NewMem()
	fl := &failLocks{Backend: mem}
	r := openMem(t, fl)
	// Proportions as in production (refresh every 5 min, stale after 30,
	// give up after 20): a second of margin however loaded the machine.
	r.lockRefresh, r.lockStale = 500*time.Millisecond, 3*time.Second
	l, err := r.Lock(context.Background(), false, "push", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock()
	select {
	case <-l.Context().Done():
		t.Fatal("cancelled while refreshes work")
	case <-time.After(1200 * time.Millisecond):
	}
	fl.armed.Store(true)
	start := time.Now()
	select {
	case <-l.Context().Done():
	case <-time.After(5 * time.Second):
		t.Fatal("not cancelled though the lock cannot be refreshed")
	}
	if cause := context.Cause(l.Context()); !errors.Is(cause, ErrLockLost) {
		t.Fatalf("cause = %v", cause)
	}
	// Stopped before the lock was stale for others.
	locks, err := r.Locks(context.Background())
	if err != nil || len(locks) != 1 {
		t.Fatalf("locks: %v %v", locks, err)
	}
	if age := time.Since(locks[0].Refreshed); age >= r.lockStale {
		t.Fatalf("cancelled only %s after the last refresh; stale after %s", age, r.lockStale)
	}
	t.Logf("cancelled %s after refreshes began to fail", time.Since(start).Round(time.Millisecond))
}

// TestSidecarsUnderPVENames (issue 13.9): pve-storage names a dump's notes
// and protection flag after the whole archive name (….vma.zst.notes,
// ….vma.zst.protected) and its log after the stem; push carries all
// three, and the older stem form of notes still.
func TestSidecarsUnderPVENames(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dumps := t.TempDir()
	p := writeDump(t, dumps, crashVM(80, 0), "700", "2026_11_20-01_00_00", true)
	stem := strings.TrimSuffix(p, ".vma.zst")
	os.WriteFile(p+".notes", []byte("db server\n"), 0o644)
	os.WriteFile(p+".protected", nil, 0o644)
	os.WriteFile(stem+".log", []byte("INFO: log\n"), 0o644)
	q := writeDump(t, dumps, crashVM(81, 0), "701", "2026_11_20-01_00_00", false)
	os.WriteFile(strings.TrimSuffix(q, ".vma")+".notes", []byte("old form\n"), 0o644)

	mem := backend.NewMem()
	r := openMem(t, mem)
	pushAll(t, ctx, r, dumps)
	backups, err := r.Backups(ctx)
	if err != nil || len(backups) != 2 {
		t.Fatalf("backups: %v %v", backups, err)
	}
	b := backups[0]
	if !b.Protected || b.Sidecars[".notes"] == "" || b.Sidecars[".log"] == "" {
		t.Fatalf("sidecars of %s: %v protected=%v", b.Name, b.Sidecars, b.Protected)
	}
	if got, _ := r.Object(ctx, b.Sidecars[".notes"]); string(got) != "db server\n" {
		t.Fatalf("notes: %q", got)
	}
	if got, _ := r.Object(ctx, backups[1].Sidecars[".notes"]); string(got) != "old form\n" {
		t.Fatalf("notes in the stem form: %q", got)
	}
	// A protected backup is kept by prune whatever the rules say.
	for _, m := range MarkBackups(backups, KeepRules{Last: 1}) {
		if m.Backup.Name == b.Name && !m.Keep {
			t.Fatal("the protected backup would be pruned")
		}
	}
	if got := vzdump.SidecarPath("/x/vzdump-qemu-700-2026_11_20-01_00_00.vma.zst", ".notes"); got != "/x/vzdump-qemu-700-2026_11_20-01_00_00.vma.zst.notes" {
		t.Fatalf("SidecarPath notes = %s", got)
	}
	if got := vzdump.SidecarPath("/x/vzdump-qemu-700-2026_11_20-01_00_00.vma.zst", ".log"); got != "/x/vzdump-qemu-700-2026_11_20-01_00_00.log" {
		t.Fatalf("SidecarPath log = %s", got)
	}
}

// TestUnlockAllSweepsTemporaryLocks: the temporary object of a lock save
// cut short is left by a stale-lock unlock (a live process may be saving
// it) and removed by unlock --all.
func TestUnlockAllSweepsTemporaryLocks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	mem := backend.NewMem()
	r := openMem(t, mem)
	tmp := LocksDir + "/20261203T000000Z-h-1-ab.lock" + backend.TempMarker + "cafe"
	mem.Put(tmp, []byte(`{"exclusive":tru`))
	if _, err := r.RemoveLocks(ctx, false); err != nil {
		t.Fatal(err)
	}
	if _, ok := mem.Get(tmp); !ok {
		t.Fatal("unlock without --all removed a temporary lock object")
	}
	removed, err := r.RemoveLocks(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := mem.Get(tmp); ok || len(removed) != 1 {
		t.Fatalf("unlock --all left %s (removed %v)", tmp, removed)
	}
}
