package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
}
