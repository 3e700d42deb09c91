package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmasync/vmasync/vma/vmatest"
)

// TestKillAnywhere kills the real binary (SIGKILL, as the OOM killer or a
// power cut would) at random moments of pushes and prunes into a local
// directory, moments the crash-point harness did not pick: the partial
// writes are then real files cut short by the kernel, not simulations.
// After the kills, the next push and prune succeed, check --read-data is
// clean, and every backup kept pulls byte-exactly.
func TestKillAnywhere(t *testing.T) {
	bin := builtBinary(t)
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 1))
	t.Logf("seed %d", seed)
	rem := filepath.Join(t.TempDir(), "remote")
	var nights []string
	want := map[string]string{} // backup stem -> optimized archive
	for night := range 3 {
		dir := t.TempDir()
		for vm := range 2 {
			s := vmatest.Spec{Disks: []vmatest.Disk{
				{Name: "drive-scsi0", Size: 24 << 20, Content: vmatest.Mixed},
				{Name: "drive-scsi1", Size: 3 << 20, Content: vmatest.Random},
			}, Order: vmatest.ProxmoxLike, Seed: uint64(30 + vm), Generation: uint64(night), ChangeFraction: 0.05}
			b, err := vmatest.Archive(s)
			if err != nil {
				t.Fatal(err)
			}
			stem := fmt.Sprintf("vzdump-qemu-%d-2026_11_%02d-01_00_00", 130+vm, 20+night)
			p := filepath.Join(dir, stem+".vma")
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
			want[stem] = exe(t, nil, "optimize", p, "-").stdout
		}
		nights = append(nights, dir)
	}
	killed := 0
	const rounds = 12
	for round := range rounds {
		// Pushes are slowed by --bwlimit so that a kill lands inside them.
		dir := nights[round/4]
		args := []string{"push", "--transfers", "2", "--bwlimit", "16M", "--lock-wait", "30s", dir, rem}
		if round%4 == 3 {
			args = []string{"prune", "--keep-last", "1", "--repack-threshold", "0.01", "--lock-wait", "30s", rem}
		}
		cmd := exec.Command(bin, args...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		delay := time.Duration(20+rng.IntN(1500)) * time.Millisecond
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
			t.Logf("round %d: %s finished before the kill at %s", round, args[0], delay)
		case <-time.After(delay):
			cmd.Process.Signal(syscall.SIGKILL)
			<-done
			killed++
			t.Logf("round %d: %s killed after %s", round, args[0], delay)
		}
	}
	// The next nights: every night's dumps again, then a prune.
	for _, dir := range nights {
		if r := exe(t, nil, "push", "--lock-wait", "30s", dir, rem); r.code != 0 {
			t.Fatalf("push after the kills: %v", r)
		}
	}
	if r := exe(t, nil, "prune", "--keep-last", "1", "--lock-wait", "30s", rem); r.code != 0 {
		t.Fatalf("prune after the kills: %v", r)
	}
	if r := exe(t, nil, "check", "--read-data", rem); r.code != 0 {
		t.Fatalf("check --read-data after the kills: %v", r)
	}
	for _, vm := range []string{"130", "131"} {
		stem := "vzdump-qemu-" + vm + "-2026_11_22-01_00_00"
		r := exe(t, nil, "pull", rem, vm+"@latest", "-")
		if r.code != 0 || r.stdout != want[stem] {
			t.Fatalf("pull %s after the kills: code %d, %d bytes, identical %v: %s", stem, r.code, len(r.stdout), r.stdout == want[stem], r.stderr)
		}
	}
	var temps []string
	filepath.Walk(rem, func(p string, fi os.FileInfo, err error) error {
		if err == nil && strings.Contains(p, ".tmp-") && !strings.Contains(p, "/locks/") {
			temps = append(temps, p)
		}
		return nil
	})
	if len(temps) > 0 {
		t.Errorf("prune left temporary objects: %v", temps)
	}
	t.Logf("%d of %d runs killed", killed, rounds)
	if killed == 0 {
		t.Error("no run was killed: the test tested nothing")
	}
}
