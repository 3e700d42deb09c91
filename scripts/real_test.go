package scripts_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vmasync/vmasync/internal/testbin"
)

// buildTools builds vmasync and vmagen from this checkout into dir (a
// link only when their sources changed: internal/testbin).
func buildTools(t *testing.T, dir string) (vmasync, vmagen string) {
	t.Helper()
	bins, err := testbin.Build(dir, "./cmd/vmasync", "./internal/cmd/vmagen")
	if err != nil {
		t.Fatal(err)
	}
	return bins[0], bins[1]
}

// hasCommand tells whether the built vmasync has a command; an error other
// than "unknown command" is a failure.
func hasCommand(t *testing.T, vmasync, name string) bool {
	t.Helper()
	out, err := exec.Command(vmasync, name, "--help").CombinedOutput()
	if strings.Contains(string(out), `unknown command "`+name+`"`) {
		return false
	}
	if err != nil {
		t.Fatalf("vmasync %s --help: %v\n%s", name, err, out)
	}
	return true
}

func mentionsVM(out, vmid string) bool {
	return regexp.MustCompile(`(^|[^0-9A-Za-z])` + vmid + `([^0-9A-Za-z]|$)`).MatchString(out)
}

func linesMentioning(out, vmid string) int {
	n := 0
	for l := range strings.Lines(out) {
		if mentionsVM(l, vmid) {
			n++
		}
	}
	return n
}

// TestHookQueuesAndNightlyPushesForReal is the whole path with the real
// binary: vzdump's hook calls queue two VM backups from two storages,
// job-end starts vmasync-nightly detached, which pushes both to a local
// directory remote and clears the queue; a broken remote keeps a dump
// queued (the hook still exits 0) until a later run pushes it.
func TestHookQueuesAndNightlyPushesForReal(t *testing.T) {
	t.Parallel() // the real binary in processes of its own, in directories of its own
	if testing.Short() {
		t.Skip("builds vmasync and pushes real archives")
	}
	dir := t.TempDir()
	vmasync, vmagen := buildTools(t, t.TempDir())
	if !hasCommand(t, vmasync, "push") {
		t.Skip("waits for `vmasync push` (being added to cmd/vmasync): this test runs the hook and vmasync-nightly against the real push; it runs by itself once `vmasync push --help` works")
	}
	prune := hasCommand(t, vmasync, "prune")

	dump := filepath.Join(dir, "dump")
	dump2 := filepath.Join(dir, "nas", "dump")
	remote := filepath.Join(dir, "remote")
	qdir := filepath.Join(dir, "queue")
	logPath := filepath.Join(dir, "nightly.log")
	rcconf := filepath.Join(dir, "rclone.conf")
	for _, d := range []string{dump, dump2, remote} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, rcconf, "", 0o600)
	gen := func(dumpdir, vmid, stamp, seed, generation string) string {
		p := filepath.Join(dumpdir, "vzdump-qemu-"+vmid+"-"+stamp+".vma")
		out, err := exec.Command(vmagen, "-disks", "drive-scsi0:8M", "-seed", seed, "-gen", generation, "-o", p).CombinedOutput()
		if err != nil {
			t.Fatalf("vmagen: %v\n%s", err, out)
		}
		return p
	}
	a105 := gen(dump, "105", "2026_11_20-01_00_00", "1", "0")
	a106 := gen(dump2, "106", "2026_11_20-01_30_00", "2", "0")
	gen(dump2, "107", "2026_11_20-01_40_00", "3", "0") // not backed up by these jobs: not queued, not pushed

	settings := []string{"DUMPDIR", dump, "REMOTE", remote, "RCLONE_CONFIG", rcconf, "VMASYNC", vmasync,
		"QUEUE_DIR", qdir, "HOOK_TRIGGER", "detached", "NIGHTLY", script(t, "vmasync-nightly"), "HOOK_LOG", logPath}
	if prune {
		settings = append(settings, "KEEP_LAST", "3")
	} else {
		t.Log("vmasync prune does not exist yet: the nightly runs without keep rules")
	}
	good := filepath.Join(dir, "vmasync.conf")
	writeFile(t, good, conf(settings...), 0o600)

	hook := script(t, "vzdump-hook")
	callHook := func(confPath string, c phaseCall) string {
		r := runEnv(t, c.env.list("VMASYNC_CONF="+confPath), hook, c.args...)
		if r.code != 0 {
			t.Fatalf("hook %v: exit %d (%q)", c.args, r.code, r.out)
		}
		return r.out
	}
	// job 1: storage "local", VM 105, ends without job-end here; job 2:
	// --dumpdir job for VM 106, whose job-end starts the upload.
	job1 := jobCalls(dump, "local", "qemu", "105", "snapshot", a105, true, false, true)
	for _, c := range job1[:len(job1)-1] {
		callHook(good, c)
	}
	var jobEnd string
	for _, c := range jobCalls(dump2, "", "qemu", "106", "stop", a106, true, false, true) {
		if c.args[0] == "job-end" {
			jobEnd = callHook(good, c)
			continue
		}
		callHook(good, c)
	}
	if !strings.Contains(jobEnd, "started in the background") {
		t.Fatalf("job-end: %q", jobEnd)
	}
	var nightlyLog string
	for deadline := time.Now().Add(5 * time.Minute); ; {
		data, _ := os.ReadFile(logPath)
		nightlyLog = string(data)
		if strings.Contains(nightlyLog, "vmasync-nightly: done:") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the detached vmasync-nightly did not finish in 5 minutes; log:\n%s", nightlyLog)
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("detached vmasync-nightly:\n%s", nightlyLog)
	if !strings.Contains(nightlyLog, "done: ok") {
		t.Fatalf("vmasync-nightly failed")
	}
	if q := queue(t, qdir); len(q) != 0 {
		t.Errorf("queue %v after the push, want empty", q)
	}
	snapshots := func() string {
		out, err := exec.Command(vmasync, "snapshots", remote).CombinedOutput()
		if err != nil {
			t.Fatalf("vmasync snapshots: %v\n%s", err, out)
		}
		return string(out)
	}
	snaps := snapshots()
	t.Logf("vmasync snapshots:\n%s", snaps)
	if !mentionsVM(snaps, "105") || !mentionsVM(snaps, "106") {
		t.Errorf("the remote lacks VM 105 or 106")
	}
	if mentionsVM(snaps, "107") {
		t.Errorf("VM 107 was pushed although only 106 was queued from %s", dump2)
	}

	// The next night the remote is broken: the hook still exits 0, the run
	// fails with exit 1 and keeps the dump queued; a later run pushes it.
	next := gen(dump, "105", "2026_11_21-01_00_00", "1", "1")
	broken := filepath.Join(dir, "broken.conf")
	writeFile(t, broken, conf(append(settings, "REMOTE", "nosuchremote:backups", "HOOK_TRIGGER", "none")...), 0o600)
	for _, c := range jobCalls(dump, "local", "qemu", "105", "snapshot", next, true, false, true) {
		callHook(broken, c)
	}
	r := runEnv(t, append(os.Environ(), "VMASYNC_CONF="+broken), script(t, "vmasync-nightly"))
	t.Logf("vmasync-nightly with a broken remote: exit %d\n%s", r.code, r.out)
	if r.code != 1 {
		t.Errorf("exit %d with a broken remote, want 1", r.code)
	}
	if q := queue(t, qdir); len(q) != 1 || q[0] != filepath.Base(next) {
		t.Fatalf("queue %v, want the new dump kept", q)
	}
	r = runEnv(t, append(os.Environ(), "VMASYNC_CONF="+good), script(t, "vmasync-nightly"))
	t.Logf("vmasync-nightly, remote back: exit %d\n%s", r.code, r.out)
	if r.code != 0 {
		t.Fatalf("exit %d", r.code)
	}
	if q := queue(t, qdir); len(q) != 0 {
		t.Errorf("queue %v, want empty", q)
	}
	if after := snapshots(); linesMentioning(after, "105") <= linesMentioning(snaps, "105") {
		t.Errorf("the second backup of VM 105 is not on the remote:\n%s", after)
	}

	if hasCommand(t, vmasync, "pull") {
		restored := filepath.Join(dir, "restored.vma")
		if out, err := exec.Command(vmasync, "pull", remote, "105@latest", restored).CombinedOutput(); err != nil {
			t.Fatalf("vmasync pull: %v\n%s", err, out)
		}
		if out, err := exec.Command(vmasync, "verify", restored).CombinedOutput(); err != nil {
			t.Fatalf("vmasync verify of the pulled backup: %v\n%s", err, out)
		}
	}
}
