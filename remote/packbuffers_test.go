package remote

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmasync/vmasync/remote/backend"
	"github.com/vmasync/vmasync/vma/vmatest"
)

// slowSaves delays every pack upload and records how many run at once.
type slowSaves struct {
	backend.Backend
	mu       sync.Mutex
	now, max int
}

func (s *slowSaves) Save(ctx context.Context, name string, data []byte) error {
	if !strings.HasPrefix(name, PacksDir+"/") {
		return s.Backend.Save(ctx, name, data)
	}
	s.mu.Lock()
	s.now++
	s.max = max(s.max, s.now)
	s.mu.Unlock()
	time.Sleep(5 * time.Millisecond)
	defer func() { s.mu.Lock(); s.now--; s.mu.Unlock() }()
	return s.Backend.Save(ctx, name, data)
}

// TestSlowRemoteBoundsPackBuffers: with uploads slower than packing and
// many transfers allowed, a push still holds no more than packBuffers
// packs of chunks (plus its two packs of tree nodes), so a slow remote
// costs time, not memory; the backup still restores.
func TestSlowRemoteBoundsPackBuffers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	slow := &slowSaves{Backend: backend.NewMem()}
	r := openMem(t, slow)
	r.Config.PackSize = 16 << 10
	r.Transfers = 16
	if _, err := r.LoadIndex(ctx, true); err != nil {
		t.Fatal(err)
	}
	s := vmatest.Spec{Disks: []vmatest.Disk{{Name: "drive-scsi0", Size: 2 << 20, Content: vmatest.Random}}, Order: vmatest.ProxmoxLike, Seed: 3}
	p := writeDump(t, t.TempDir(), s, "140", "2026_11_20-01_00_00", false)
	res, err := r.Push(ctx, mustDump(t, p), PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Packs < 50 {
		t.Fatalf("only %d packs: the test needs many", res.Packs)
	}
	if packBuffers+2 >= r.Transfers {
		t.Fatalf("the test needs more transfers (%d) than pack buffers (%d+2)", r.Transfers, packBuffers)
	}
	if slow.max > packBuffers+2 || slow.max < 2 {
		t.Fatalf("%d pack uploads at once; want 2 to %d (packBuffers of chunks, 2 of nodes)", slow.max, packBuffers+2)
	}
	t.Logf("%d packs, at most %d uploads at once", res.Packs, slow.max)
	var buf bytes.Buffer
	backups, err := r.Backups(ctx)
	if err != nil || len(backups) != 1 {
		t.Fatalf("backups: %v %v", backups, err)
	}
	if err := r.RestoreBackup(ctx, backups[0], &buf, nil); err != nil {
		t.Fatal(err)
	}
}
