package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/rclone/rclone/cmd/serve/sftp" // registers serve/start type sftp
	"github.com/rclone/rclone/fs/config/obscure"
	"github.com/rclone/rclone/fs/rc"

	"github.com/vmasync/vmasync/vma/vmatest"
)

// TestKillAnywhere kills the real binary (SIGKILL, as the OOM killer or a
// power cut would) at random moments of pushes and prunes into a local
// directory, moments the crash-point harness did not pick: the partial
// writes are then real files cut short by the kernel, not simulations.
// After the kills, the next push and prune succeed, check --read-data is
// clean, and every backup kept pulls byte-exactly.
func TestKillAnywhere(t *testing.T) {
	t.Parallel()
	n := killNights(t) // both runs push the same dumps
	// The two runs go on at the same time in this test's parallel slot
	// (subtests run from goroutines, not as parallel subtests, which
	// would each wait for a slot of their own): they mostly wait, for the
	// kill moments, the processes and the SFTP server.
	var wg sync.WaitGroup
	defer wg.Wait()
	run := func(name string, f func(t *testing.T)) {
		wg.Add(1)
		go func() { defer wg.Done(); t.Run(name, f) }()
	}
	run("local", func(t *testing.T) {
		killAnywhere(t, n, filepath.Join(t.TempDir(), "remote"), "")
	})
	run("sftp", func(t *testing.T) {
		// rclone's SFTP server in this process; the killed binary talks to
		// it over 127.0.0.1, so a kill cuts an upload off mid-transfer.
		if _, err := exec.LookPath("ssh-keygen"); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatal("ssh-keygen missing in CI (.ci/run installs openssh-server, which brings it)")
			}
			t.Skip("ssh-keygen not installed")
		}
		key := filepath.Join(t.TempDir(), "host")
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v: %s", err, out)
		}
		served := t.TempDir()
		ctx := context.Background()
		out, err := rc.Calls.Get("serve/start").Fn(ctx, rc.Params{"type": "sftp", "fs": served, "addr": "127.0.0.1:0",
			"user": "vm", "pass": "secret", "authorized_keys": "", "key": []string{key}})
		if err != nil {
			t.Fatalf("serve/start sftp: %v", err)
		}
		t.Cleanup(func() { _, _ = rc.Calls.Get("serve/stop").Fn(ctx, rc.Params{"id": out["id"]}) })
		host, port, _ := net.SplitHostPort(out["addr"].(string))
		rem := fmt.Sprintf(":sftp,host=%s,port=%s,user=vm,pass=%s,known_hosts_file=none:pve", host, port, obscure.MustObscure("secret"))
		// rclone's SFTP backend opens one connection per concurrent
		// listing or read, 100 ms apart (its pacer): with rclone's 8
		// checkers a command spent up to 0.8 s connecting before it did
		// anything (so a kill often landed there), and the commands after
		// the kills took 9 s. Two checkers keep operations going on side by
		// side; TestConcurrentPushes in remote tests SFTP concurrency.
		killAnywhere(t, n, rem, filepath.Join(served, "pve"), "-o", "checkers=2")
	})
}

// nights are the dump directories of the kill scenario, one a night, and
// what the last night's backups (the ones kept by prune --keep-last 1)
// must pull as.
type nights struct {
	dirs []string
	want map[string]string // backup stem -> optimized archive
}

// killNights writes three nights of two VMs' dumps. They are small (a
// dump is one data pack, as it was at four times the size): the pushes
// that are to be killed are slowed by --bwlimit instead.
func killNights(t *testing.T) nights {
	n := nights{want: map[string]string{}}
	for night := range 3 {
		dir := t.TempDir()
		for vm := range 2 {
			s := vmatest.Spec{Disks: []vmatest.Disk{
				{Name: "drive-scsi0", Size: 6 << 20, Content: vmatest.Mixed},
				{Name: "drive-scsi1", Size: 1 << 20, Content: vmatest.Random},
			}, Order: vmatest.ProxmoxLike, Seed: uint64(30 + vm), Generation: uint64(night), ChangeFraction: 0.05}
			stem := fmt.Sprintf("vzdump-qemu-%d-2026_11_%02d-01_00_00", 130+vm, 20+night)
			p := filepath.Join(dir, stem+".vma")
			writeArchive(t, p, s)
			if night == 2 {
				n.want[stem] = exe(t, nil, "optimize", p, "-").stdout
			}
		}
		n.dirs = append(n.dirs, dir)
	}
	return n
}

// killAnywhere runs the kill scenario against rem; dir is the remote's
// directory on this machine ("" when rem is a local path itself). opts
// are options of every command run (after the command's name).
func killAnywhere(t *testing.T, n nights, rem, dir string, opts ...string) {
	cmdArgs := func(args ...string) []string {
		return append(append([]string{args[0]}, opts...), args[1:]...)
	}
	bin := builtBinary(t)
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 1))
	t.Logf("seed %d", seed)
	if dir == "" {
		dir = rem
	}
	nights, want := n.dirs, n.want
	killed := 0
	const rounds = 12
	// The kill comes at a random moment up to bound[command and night]
	// after the start (1.5 s at first). A command that finishes first sets
	// the bound to the time it took: the pushes after a night's first are
	// short (little or nothing left to upload), and kills drawn from the
	// first push's range missed them (3-5 of 12 runs were killed).
	bound := map[string]time.Duration{}
	for round := range rounds {
		// Pushes and prunes are slowed by --bwlimit so that a kill lands
		// inside them rather than after them.
		dir := nights[round/4]
		bw := "4M"
		if round >= 4 {
			bw = "1M"
		}
		args := cmdArgs("push", "--transfers", "2", "--bwlimit", bw, "--lock-wait", "30s", dir, rem)
		if round%4 == 3 {
			args = cmdArgs("prune", "--keep-last", "1", "--repack-threshold", "0.01", "--bwlimit", "4M", "--lock-wait", "30s", rem)
		}
		cmd := exec.Command(bin, args...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		key := fmt.Sprint(args[0], round/4)
		if bound[key] == 0 {
			bound[key] = 1500 * time.Millisecond
		}
		delay := 20*time.Millisecond + time.Duration(rng.Int64N(int64(bound[key])))
		start := time.Now()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
			took := time.Since(start)
			bound[key] = max(took, 50*time.Millisecond)
			t.Logf("round %d: %s finished in %s, before the kill at %s", round, args[0], took.Round(time.Millisecond), delay)
		case <-time.After(delay):
			cmd.Process.Signal(syscall.SIGKILL)
			<-done
			killed++
			t.Logf("round %d: %s killed after %s", round, args[0], delay)
		}
	}
	// The next nights: every night's dumps again, then a prune.
	for _, dir := range nights {
		if r := exe(t, nil, cmdArgs("push", "--lock-wait", "30s", dir, rem)...); r.code != 0 {
			t.Fatalf("push after the kills: %v", r)
		}
	}
	if r := exe(t, nil, cmdArgs("prune", "--keep-last", "1", "--lock-wait", "30s", rem)...); r.code != 0 {
		t.Fatalf("prune after the kills: %v", r)
	}
	if r := exe(t, nil, cmdArgs("check", "--read-data", rem)...); r.code != 0 {
		t.Fatalf("check --read-data after the kills: %v", r)
	}
	// The two pulls go on side by side (shared locks; over SFTP each
	// takes about a second, mostly round trips).
	vms := []string{"130", "131"}
	pulled := make([]result, len(vms))
	errs := make([]error, len(vms))
	var wg sync.WaitGroup
	for i, vm := range vms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pulled[i], errs[i] = exeErr(bin, nil, cmdArgs("pull", rem, vm+"@latest", "-")...)
		}()
	}
	wg.Wait()
	for i, vm := range vms {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		stem := "vzdump-qemu-" + vm + "-2026_11_22-01_00_00"
		if r := pulled[i]; r.code != 0 || r.stdout != want[stem] {
			t.Fatalf("pull %s after the kills: code %d, %d bytes, identical %v: %s", stem, r.code, len(r.stdout), r.stdout == want[stem], r.stderr)
		}
	}
	var temps []string
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
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
