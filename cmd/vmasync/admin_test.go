package main

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Issue 16: what a Proxmox admin running the nightly job trips over.

// A backup that prune removed does not come back from the same local dump:
// push with the keep rules skips the dumps they would remove.
func TestPushKeepRulesSkipWhatPruneRemoves(t *testing.T) {
	dumps := t.TempDir()
	rem := filepath.Join(t.TempDir(), "remote")
	a := "vzdump-qemu-105-2026_11_20-01_00_00"
	b := "vzdump-qemu-105-2026_11_21-01_00_00"
	nightly(t, dumps, "105", 0, "2026_11_20-01_00_00", true)
	if r := runCLI(t, nil, "push", "--keep-last", "1", dumps, rem); r.code != 0 || !strings.Contains(r.stdout, a+": ") {
		t.Fatalf("night 1: %v", r)
	}
	nightly(t, dumps, "105", 1, "2026_11_21-01_00_00", true)
	r := runCLI(t, nil, "push", "--keep-last", "1", dumps, rem)
	if r.code != 0 || !strings.Contains(r.stdout, a+": already on the remote") || !strings.Contains(r.stdout, b+": ") || !strings.Contains(r.stdout, "uploaded") {
		t.Fatalf("night 2: %v", r)
	}
	if r = runCLI(t, nil, "prune", "--keep-last", "1", rem); r.code != 0 {
		t.Fatalf("prune: %v", r)
	}
	// The same dumps again (the timer after the hook's run): a is not
	// uploaded again.
	r = runCLI(t, nil, "push", "--json", "--keep-last", "1", dumps, rem)
	var out pushOut
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &out) != nil || len(out.Dumps) != 2 {
		t.Fatalf("night 2, second run: %v", r)
	}
	for _, d := range out.Dumps {
		if d.Status != "skipped" || d.Uploaded != 0 {
			t.Errorf("second run: %+v, want skipped", d)
		}
	}
	r = runCLI(t, nil, "push", "--keep-last", "1", dumps, rem)
	if r.code != 0 || !strings.Contains(r.stdout, a+": skipped: the keep rules would prune it (keep-last=1: kept by no rule)") {
		t.Fatalf("text: %v", r)
	}
	snaps := runCLI(t, nil, "snapshots", rem)
	if strings.Contains(snaps.stdout, a) || !strings.Contains(snaps.stdout, b) {
		t.Errorf("remote after the second run:\n%s", snaps.stdout)
	}

	// On an empty remote, only the dump the rules keep goes; a protected
	// dump is kept whatever the rules.
	os.WriteFile(filepath.Join(dumps, a+".protected"), nil, 0o644)
	rem2 := filepath.Join(t.TempDir(), "remote")
	r = runCLI(t, nil, "push", "--json", "--keep-last", "1", dumps, rem2)
	out = pushOut{}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &out) != nil || len(out.Dumps) != 2 || out.Dumps[0].Status != "pushed" || out.Dumps[1].Status != "pushed" {
		t.Fatalf("protected: %v", r)
	}
	os.Remove(filepath.Join(dumps, a+".protected"))
	// under PVE's name: after the archive's name
	os.WriteFile(filepath.Join(dumps, a+".vma.zst.protected"), nil, 0o644)
	rem4 := filepath.Join(t.TempDir(), "remote")
	r = runCLI(t, nil, "push", "--json", "--keep-last", "1", dumps, rem4)
	out = pushOut{}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &out) != nil || len(out.Dumps) != 2 || out.Dumps[0].Status != "pushed" {
		t.Fatalf("protected under PVE's name: %v", r)
	}
	os.Remove(filepath.Join(dumps, a+".vma.zst.protected"))
	rem3 := filepath.Join(t.TempDir(), "remote")
	r = runCLI(t, nil, "push", "--json", "--keep-daily", "1", dumps, rem3)
	out = pushOut{}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &out) != nil || len(out.Dumps) != 2 || out.Dumps[0].Status != "skipped" || out.Dumps[1].Status != "pushed" {
		t.Fatalf("keep-daily 1 on an empty remote: %v", r)
	}
	if r = runCLI(t, nil, "push", "--keep-last", "-1", dumps, rem3); r.code != exitUsage {
		t.Errorf("negative keep count: %v", r)
	}
}

// A push that finds nothing to push is an error, not a green run.
func TestPushNothingToPushFails(t *testing.T) {
	rem := filepath.Join(t.TempDir(), "remote")
	empty := t.TempDir()
	os.WriteFile(filepath.Join(empty, "vzdump-lxc-110-2026_11_20-01_00_00.tar.zst"), []byte("x"), 0o644)
	r := runCLI(t, nil, "push", empty, rem)
	wantOneErrorLine(t, r, empty+": no vzdump VM backups", "is the storage mounted?")
	if r.code != exitFailure {
		t.Errorf("empty dump directory: exit %d, want %d", r.code, exitFailure)
	}
	if _, err := os.Stat(rem); !os.IsNotExist(err) {
		t.Errorf("an empty push created the remote")
	}
	dumps := t.TempDir()
	nightly(t, dumps, "105", 0, "2026_11_20-01_00_00", false)
	r = runCLI(t, nil, "push", "--vmid", "999", dumps, rem)
	wantOneErrorLine(t, r, "no dump of VM 999", "dumps of VM 105")
	if r.code != exitFailure {
		t.Errorf("--vmid matching nothing: exit %d", r.code)
	}
}

// init and push do not make a repository inside a directory that holds
// something else, unless --force.
func TestInitPushRefuseNonEmptyDirectory(t *testing.T) {
	dumps := t.TempDir()
	nightly(t, dumps, "105", 0, "2026_11_20-01_00_00", false)
	for _, cmd := range []string{"init", "push"} {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "photos.tar"), []byte("x"), 0o644)
		args := []string{cmd, dir}
		if cmd == "push" {
			args = []string{cmd, dumps, dir}
		}
		r := runCLI(t, nil, args...)
		wantOneErrorLine(t, r, "not empty and not a vmasync repository", "photos.tar", "--force")
		if r.code != exitFailure {
			t.Errorf("%s: exit %d", cmd, r.code)
		}
		if _, err := os.Stat(filepath.Join(dir, "config")); err == nil {
			t.Errorf("%s wrote a config despite refusing", cmd)
		}
		forced := append([]string{cmd, "--force"}, args[1:]...)
		if r = runCLI(t, nil, forced...); r.code != 0 {
			t.Fatalf("%s --force: %v", cmd, r)
		}
		// now a repository: no --force needed
		if cmd == "push" {
			if r = runCLI(t, nil, args...); r.code != 0 || !strings.Contains(r.stdout, "already on the remote") {
				t.Errorf("push to the repository: %v", r)
			}
		}
	}
	// an empty directory is fine
	if r := runCLI(t, nil, "init", t.TempDir()); r.code != 0 {
		t.Errorf("init of an empty directory: %v", r)
	}
	// So is one that holds only what an init killed before it moved its
	// config into place left: no --force is needed after a crash.
	for _, cmd := range []string{"init", "push"} {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "config.tmp-3194ea5c56a6"), []byte(`{"ver`), 0o644)
		args := []string{cmd, dir}
		if cmd == "push" {
			args = []string{cmd, dumps, dir}
		}
		if r := runCLI(t, nil, args...); r.code != 0 {
			t.Errorf("%s into a directory holding a killed init's temporary config: %v", cmd, r)
		}
	}
}

// pushedRemote pushes one small dump of VM 105 to a new local remote.
func pushedRemote(t *testing.T) (rem, stem string) {
	t.Helper()
	return pushedRemoteBy(t, runCLI)
}

// pushedRemoteBy is pushedRemote with the push run by run (runCLI in
// this process, or exe: the binary).
func pushedRemoteBy(t *testing.T, run func(*testing.T, io.Reader, ...string) result) (rem, stem string) {
	t.Helper()
	dumps := t.TempDir()
	rem = filepath.Join(t.TempDir(), "remote")
	nightly(t, dumps, "105", 0, "2026_11_20-01_00_00", false)
	if r := run(t, nil, "push", dumps, rem); r.code != 0 {
		t.Fatalf("push: %v", r)
	}
	return rem, "vzdump-qemu-105-2026_11_20-01_00_00"
}

// liveLock writes the lock object of a live process (this one) as prune
// would hold it.
func liveLock(t *testing.T, rem string, exclusive bool) {
	t.Helper()
	host, _ := os.Hostname()
	now := time.Now().UTC()
	b, _ := json.Marshal(map[string]any{"exclusive": exclusive, "host": host, "pid": os.Getpid(), "command": "vmasync prune", "time": now, "refreshed": now})
	if err := os.MkdirAll(filepath.Join(rem, "locks"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rem, "locks", now.Format("20060102T150405Z")+"-test.lock"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func lockFiles(t *testing.T, rem string) []string {
	t.Helper()
	des, _ := os.ReadDir(filepath.Join(rem, "locks"))
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}

// Invalid rclone option values are usage errors (exit 2, as docs/cli.md
// says); a missing --rclone-config file is named.
func TestRcloneOptionErrors(t *testing.T) {
	dumps := t.TempDir()
	nightly(t, dumps, "105", 0, "2026_11_20-01_00_00", false)
	rem := filepath.Join(t.TempDir(), "remote")
	for _, args := range [][]string{
		{"push", "--bwlimit", "10Q", dumps, rem},
		{"push", "-o", "nosuchopt=1", dumps, rem},
		{"push", "-o", "contimeout=soon", dumps, rem},
		{"snapshots", "--bwlimit", "10Q", rem},
	} {
		r := runCLI(t, nil, args...)
		if r.code != exitUsage {
			t.Errorf("%q: %v, want exit 2", args, r)
		}
		wantOneErrorLine(t, r, "see 'vmasync "+args[0]+" --help'")
	}
	missing := filepath.Join(t.TempDir(), "rclone.conf")
	r := runCLI(t, nil, "snapshots", "--rclone-config", missing, "secret:pve")
	wantOneErrorLine(t, r, "rclone config "+missing+": does not exist")
	if r.code != exitFailure {
		t.Errorf("missing rclone config: %v", r)
	}
	if _, err := os.Stat(rem); !os.IsNotExist(err) {
		t.Errorf("a usage error created the remote")
	}
}

// push says that it waits for a lock (the library says it since 184aad5);
// unlock names the live locks it left.
//
// It runs the binary, not vmasync in this process (whose rclone setup is
// global), so that it can run in parallel: it mostly waits, for the
// lock (0.5 to 2 s).
func TestLockMessages(t *testing.T) {
	t.Parallel()
	rem, _ := pushedRemoteBy(t, exe)
	liveLock(t, rem, true)
	dumps := t.TempDir()
	nightly(t, dumps, "105", 1, "2026_11_21-01_00_00", false)
	r := exe(t, nil, "push", "--lock-wait", "1s", dumps, rem)
	if r.code != exitFailure || !strings.Contains(r.stderr, "vmasync: waiting up to 1s for the exclusive lock by vmasync prune") ||
		!strings.Contains(r.stderr, "repository is locked") {
		t.Errorf("push against a live lock: %v", r)
	}
	r = exe(t, nil, "unlock", rem)
	if r.code != 0 || !strings.Contains(r.stderr, "no stale locks") || !strings.Contains(r.stderr, "left 1 live lock in use (exclusive lock by vmasync prune") {
		t.Errorf("unlock: %v", r)
	}
	if len(lockFiles(t, rem)) != 1 {
		t.Errorf("unlock removed a live lock")
	}
	if r = exe(t, nil, "unlock", "--all", rem); r.code != 0 || strings.Contains(r.stderr, "left") || len(lockFiles(t, rem)) != 0 {
		t.Errorf("unlock --all: %v", r)
	}
}

// pull says what it wrote; pull to /dev/null is not refused as a
// terminal.
func TestPullMessagesAndDevNull(t *testing.T) {
	rem, stem := pushedRemote(t)
	dest := t.TempDir()
	r := runCLI(t, nil, "pull", rem, "105", dest)
	if r.code != 0 || !strings.Contains(r.stderr, stem+": "+filepath.Join(dest, stem+".vma")) || !strings.Contains(r.stderr, "SHA-256 checked") {
		t.Errorf("pull: %v", r)
	}
	if r = runCLI(t, nil, "--quiet", "pull", rem, "105", t.TempDir()); r.code != 0 || r.stderr != "" {
		t.Errorf("pull --quiet: %v", r)
	}
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	var errb strings.Builder
	if code := run([]string{"vmasync", "pull", rem, "105", "-"}, strings.NewReader(""), null, &errb); code != 0 {
		t.Errorf("pull to /dev/null: exit %d, %s", code, errb.String())
	}
	if isTerminal(null) {
		t.Errorf("/dev/null taken for a terminal")
	}
}

// check -v lists every backup on stdout; --read-data 50 REMOTE works as the
// help shows it; summaries say "1 backup".
func TestCheckVerboseAndReadDataPercent(t *testing.T) {
	rem, stem := pushedRemote(t)
	plain := runCLI(t, nil, "check", rem)
	verbose := runCLI(t, nil, "check", "-v", rem)
	if plain.code != 0 || verbose.code != 0 || plain.stdout != "" || verbose.stdout != stem+": ok\n" {
		t.Errorf("check:\n%v\ncheck -v:\n%v", plain, verbose)
	}
	if !strings.HasPrefix(plain.stderr, "1 backup, ") || !strings.Contains(plain.stderr, "no problems found") {
		t.Errorf("check summary: %q", plain.stderr)
	}
	for _, args := range [][]string{{"--read-data", "50", rem}, {"--read-data=50", rem}, {"--read-data", rem}} {
		r := runCLI(t, nil, append([]string{"check"}, args...)...)
		if r.code != 0 || !strings.Contains(r.stderr, "; read ") {
			t.Errorf("check %q: %v", args, r)
		}
	}
	if r := runCLI(t, nil, "check", "--read-data", "150", rem); r.code != exitUsage {
		t.Errorf("--read-data 150 REMOTE: %v", r)
	}
	if r := runCLI(t, nil, "check", rem, rem); r.code != exitUsage || !strings.Contains(r.stderr, "too many arguments") {
		t.Errorf("two remotes: %v", r)
	}
	r := runCLI(t, nil, "prune", "--dry-run", "--keep-last", "1", rem)
	if r.code != 0 || !strings.Contains(r.stderr, "0 of 1 backup would be removed") {
		t.Errorf("prune summary: %v", r)
	}
}

// Help texts: pack --ctime defaults to now; report and manifest show
// --window and -v; --transfers uploads only on push.
func TestHelpTexts(t *testing.T) {
	t.Parallel()
	help := func(cmd string) string {
		r := runCLI(t, nil, cmd, "--help")
		if r.code != 0 {
			t.Fatalf("%s --help: %v", cmd, r)
		}
		return r.stdout
	}
	if h := help("pack"); !strings.Contains(h, "(default: now)") || strings.Contains(h, "(default now)") || strings.Contains(h, "(default: 0)") {
		t.Errorf("pack --help:\n%s", h)
	}
	if h := help("report"); !strings.Contains(h, "[--window BYTES] A B") {
		t.Errorf("report usage:\n%s", h)
	}
	if h := help("manifest"); !strings.Contains(h, "vmasync manifest [-v]") || !strings.Contains(h, "[--window BYTES]") {
		t.Errorf("manifest usage:\n%s", h)
	}
	for cmd, want := range map[string]string{"push": "upload N objects", "pull": "download N objects", "check": "download N objects",
		"snapshots": "download N objects", "prune": "transfer N objects", "init": "transfer N objects", "unlock": "transfer N objects"} {
		if h := help(cmd); !strings.Contains(h, want) {
			t.Errorf("%s --help lacks %q", cmd, want)
		}
	}
	if h := help("push"); !strings.Contains(h, "--keep-last N") || !strings.Contains(h, "--force") {
		t.Errorf("push --help lacks the keep rules or --force")
	}
}

// prune says why removing a backup frees (almost) nothing: its data is
// shared with the kept one.
func TestPruneSaysSharedDataStays(t *testing.T) {
	dumps := t.TempDir()
	rem := filepath.Join(t.TempDir(), "remote")
	nightly(t, dumps, "105", 0, "2026_11_20-01_00_00", false)
	nightly(t, dumps, "105", 1, "2026_11_21-01_00_00", false)
	if r := runCLI(t, nil, "push", dumps, rem); r.code != 0 {
		t.Fatalf("push: %v", r)
	}
	for _, dry := range []bool{true, false} {
		args := []string{"prune", "--keep-last", "1", rem}
		if dry {
			args = append([]string{"prune", "--dry-run"}, args[1:]...)
		}
		r := runCLI(t, nil, args...)
		t.Logf("%q:\n%s", args, r.stderr)
		if r.code != 0 || !strings.Contains(r.stderr, "note: the removed backups share almost all their data with the kept ones") {
			t.Errorf("%q: %v", args, r)
		}
	}
	// nothing removed: no note
	if r := runCLI(t, nil, "prune", "--keep-last", "1", rem); r.code != 0 || strings.Contains(r.stderr, "note:") {
		t.Errorf("prune with nothing to remove: %v", r)
	}
}
