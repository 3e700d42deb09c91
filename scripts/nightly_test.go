package scripts_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// fakeVmasync records each call as one line of arguments joined by "|" in
// $CALLS. FAKE_PUSH_RC and FAKE_PRUNE_RC set the exit codes; FAKE_ON_PUSH
// is run by sh at the first push (to queue a dump while a push runs).
const fakeVmasync = `#!/bin/sh
line=
for a in "$@"; do line="$line$a|"; done
printf '%s\n' "$line" >> "$CALLS"
case $1 in
push)
	if [ -n "${FAKE_ON_PUSH:-}" ] && [ ! -e "$CALLS.once" ]; then
		: > "$CALLS.once"
		sh -c "$FAKE_ON_PUSH"
	fi
	exit ${FAKE_PUSH_RC:-0} ;;
prune) exit ${FAKE_PRUNE_RC:-0} ;;
esac
exit 0
`

type nightlyFixture struct {
	dir, dumpdir, dump2, qdir, remote, calls, fake, confPath string
}

func newNightly(t *testing.T) *nightlyFixture {
	t.Helper()
	dir := t.TempDir()
	f := &nightlyFixture{
		dir:     dir,
		dumpdir: filepath.Join(dir, "dump"),
		dump2:   filepath.Join(dir, "other storage", "dump"),
		qdir:    filepath.Join(dir, "queue"),
		remote:  "offsite:pve backups",
		calls:   filepath.Join(dir, "calls"),
		fake:    filepath.Join(dir, "vmasync"),
	}
	f.confPath = filepath.Join(dir, "vmasync.conf")
	writeFile(t, f.fake, fakeVmasync, 0o755)
	for _, d := range []string{f.dumpdir, f.dump2, f.qdir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// enqueue writes a dump and the queue entry the hook writes for it.
func (f *nightlyFixture) enqueue(t *testing.T, dumpdir, vmid, stamp string, keepDump bool) string {
	t.Helper()
	name := "vzdump-qemu-" + vmid + "-" + stamp + ".vma.zst"
	target := filepath.Join(dumpdir, name)
	if keepDump {
		writeFile(t, target, "x", 0o644)
	}
	writeFile(t, filepath.Join(f.qdir, name), "target="+target+"\ndumpdir="+dumpdir+"\nvmid="+vmid+"\nmode=snapshot\nstoreid=local\nqueued=2026-11-20T01:00:00+0100\n", 0o644)
	return name
}

func (f *nightlyFixture) run(t *testing.T, extraEnv ...string) (run, []string) {
	t.Helper()
	env := append(os.Environ(), "VMASYNC_CONF="+f.confPath, "CALLS="+f.calls)
	r := runEnv(t, append(env, extraEnv...), script(t, "vmasync-nightly"))
	t.Logf("vmasync-nightly: exit %d\n%s", r.code, r.out)
	data, err := os.ReadFile(f.calls)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var calls []string
	for l := range strings.Lines(string(data)) {
		calls = append(calls, strings.TrimSuffix(strings.TrimSuffix(l, "\n"), "|"))
	}
	return r, calls
}

func (f *nightlyFixture) baseConf(extra ...string) string {
	return conf(append([]string{"DUMPDIR", f.dumpdir + "/", "REMOTE", f.remote, "VMASYNC", f.fake, "QUEUE_DIR", f.qdir}, extra...)...)
}

func TestNightlyPushesQueuedDirectoriesAndClearsTheQueue(t *testing.T) {
	f := newNightly(t)
	rcconf := filepath.Join(f.dir, "rclone conf", "rclone.conf")
	writeFile(t, f.confPath, f.baseConf(
		"RCLONE_CONFIG", rcconf, "TRANSFERS", "2", "BWLIMIT", "5M", "PUSH_ARGS", "--json",
		"KEEP_LAST", "3", "KEEP_HOURLY", "2", "KEEP_DAILY", "7", "KEEP_WEEKLY", "4", "KEEP_MONTHLY", "6", "KEEP_YEARLY", "1",
	), 0o600)
	f.enqueue(t, f.dumpdir, "105", "2026_11_20-01_00_00", true)
	f.enqueue(t, f.dump2, "106", "2026_11_20-01_10_00", true)
	f.enqueue(t, f.dump2, "107", "2026_11_20-01_20_00", true)
	gone := f.enqueue(t, f.dumpdir, "108", "2026_11_19-01_00_00", false)

	r, calls := f.run(t)
	if r.code != 0 {
		t.Fatalf("exit %d", r.code)
	}
	opts := "--rclone-config|" + rcconf + "|--transfers|2|--bwlimit|5M|"
	want := []string{
		"push|" + opts + "--json|" + f.dumpdir + "|" + f.remote,
		"push|" + opts + "--vmid|106|--vmid|107|--json|" + f.dump2 + "|" + f.remote,
		"prune|--rclone-config|" + rcconf + "|--keep-last|3|--keep-hourly|2|--keep-daily|7|--keep-weekly|4|--keep-monthly|6|--keep-yearly|1|" + f.remote,
	}
	if !slices.Equal(calls, want) {
		t.Errorf("calls\n%s\nwant\n%s", strings.Join(calls, "\n"), strings.Join(want, "\n"))
	}
	if q := queue(t, f.qdir); len(q) != 0 {
		t.Errorf("queue %v after a successful run, want empty", q)
	}
	if !strings.Contains(r.out, "queued "+gone+" is gone") {
		t.Errorf("no note about the dump that is gone")
	}
}

func TestNightlyFailedPushKeepsTheQueueAndSkipsPrune(t *testing.T) {
	f := newNightly(t)
	writeFile(t, f.confPath, f.baseConf("KEEP_LAST", "3"), 0o600)
	a := f.enqueue(t, f.dumpdir, "105", "2026_11_20-01_00_00", true)
	b := f.enqueue(t, f.dump2, "106", "2026_11_20-01_10_00", true)
	r, calls := f.run(t, "FAKE_PUSH_RC=1")
	if r.code != 1 {
		t.Errorf("exit %d, want 1", r.code)
	}
	if len(calls) != 2 || !strings.HasPrefix(calls[0], "push|") || !strings.HasPrefix(calls[1], "push|") {
		t.Errorf("calls %q, want two pushes and no prune", calls)
	}
	if q := queue(t, f.qdir); !slices.Equal(q, []string{a, b}) {
		t.Errorf("queue %v, want both entries kept", q)
	}
	if !strings.Contains(r.out, "a push failed: prune skipped") {
		t.Errorf("output lacks the prune note")
	}
}

func TestNightlyPruneFailureAndNoRules(t *testing.T) {
	f := newNightly(t)
	writeFile(t, f.confPath, f.baseConf("KEEP_ALL", "yes"), 0o600)
	r, calls := f.run(t, "FAKE_PRUNE_RC=1")
	if r.code != 1 || len(calls) != 2 || calls[1] != "prune|--keep-all|"+f.remote {
		t.Errorf("exit %d, calls %q; want 1 and a prune --keep-all", r.code, calls)
	}

	f = newNightly(t)
	writeFile(t, f.confPath, f.baseConf(), 0o600)
	r, calls = f.run(t)
	if r.code != 0 || len(calls) != 1 || !strings.Contains(r.out, "no KEEP_* rules") {
		t.Errorf("no rules: exit %d, calls %q", r.code, calls)
	}

	f = newNightly(t)
	writeFile(t, f.confPath, f.baseConf("KEEP_LAST", "1", "PRUNE", "no"), 0o600)
	r, calls = f.run(t)
	if r.code != 0 || len(calls) != 1 {
		t.Errorf("PRUNE=no: exit %d, calls %q", r.code, calls)
	}
}

func TestNightlyConfigErrors(t *testing.T) {
	f := newNightly(t)
	cases := map[string]string{
		"missing config":   "",
		"syntax error":     "REMOTE=x\nif then (\n",
		"no REMOTE":        conf("DUMPDIR", f.dumpdir, "VMASYNC", f.fake),
		"no vmasync":       conf("DUMPDIR", f.dumpdir, "REMOTE", "r:x", "VMASYNC", "/nonexistent/vmasync"),
		"no DUMPDIR":       conf("DUMPDIR", filepath.Join(f.dir, "nope"), "REMOTE", "r:x", "VMASYNC", f.fake),
		"bad TRANSFERS":    f.baseConf("TRANSFERS", "many"),
		"QUEUE_DIR a file": conf("DUMPDIR", f.dumpdir, "REMOTE", "r:x", "VMASYNC", f.fake, "QUEUE_DIR", f.fake+"/q"),
	}
	for name, body := range cases {
		os.Remove(f.confPath)
		if body != "" {
			writeFile(t, f.confPath, body, 0o600)
		}
		r, calls := f.run(t)
		if r.code != 2 || len(calls) != 0 || !strings.Contains(r.out, "configuration error") {
			t.Errorf("%s: exit %d, calls %q, output %q; want 2, none, a configuration error", name, r.code, calls, r.out)
		}
	}
}

func TestNightlyLeavesWhileAnotherRunHoldsTheLock(t *testing.T) {
	f := newNightly(t)
	writeFile(t, f.confPath, f.baseConf(), 0o600)
	lock, err := os.OpenFile(filepath.Join(f.qdir, ".lock"), os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	r, calls := f.run(t)
	if r.code != 0 || len(calls) != 0 || !strings.Contains(r.out, "another run holds") {
		t.Errorf("exit %d, calls %q", r.code, calls)
	}
}

// A dump queued while the push runs (the next job's backup-end) is pushed
// in a second round, not left for the next night.
func TestNightlySecondRoundForDumpsQueuedDuringThePush(t *testing.T) {
	f := newNightly(t)
	writeFile(t, f.confPath, f.baseConf(), 0o600)
	f.enqueue(t, f.dumpdir, "105", "2026_11_20-01_00_00", true)
	late := "vzdump-qemu-106-2026_11_20-02_00_00.vma.zst"
	onPush := "echo x > '" + filepath.Join(f.dump2, late) + "' && printf 'target=%s\\ndumpdir=%s\\nvmid=106\\n' '" +
		filepath.Join(f.dump2, late) + "' '" + f.dump2 + "' > '" + filepath.Join(f.qdir, late) + "'"
	r, calls := f.run(t, "FAKE_ON_PUSH="+onPush)
	want := []string{
		"push|" + f.dumpdir + "|" + f.remote,
		"push|" + f.dumpdir + "|" + f.remote,
		"push|--vmid|106|" + f.dump2 + "|" + f.remote,
	}
	if r.code != 0 || !slices.Equal(calls, want) || !strings.Contains(r.out, "round 2") {
		t.Errorf("exit %d, calls\n%s\nwant\n%s", r.code, strings.Join(calls, "\n"), strings.Join(want, "\n"))
	}
	if q := queue(t, f.qdir); len(q) != 0 {
		t.Errorf("queue %v, want empty", q)
	}
}
