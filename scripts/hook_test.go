package scripts_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// script returns the absolute path of a script in this directory.
func script(t *testing.T, name string) string {
	t.Helper()
	p, err := filepath.Abs(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

type run struct {
	code    int
	out     string // stdout and stderr, as vzdump's task log gets them
	elapsed time.Duration
}

// runEnv runs prog with exactly env (no inherited PATH or HOME: vzdump's
// run_hook_script does `local %ENV` before it sets its few variables) and
// waits, like PVE::Tools::run_command, until the output pipe is closed.
func runEnv(t *testing.T, env []string, prog string, args ...string) run {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Env = env
	cmd.Dir = t.TempDir()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	r := run{out: out.String(), elapsed: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("%s %v: %v", prog, args, err)
	}
	if ctx.Err() != nil {
		t.Fatalf("%s %v did not end within 60s (output %q)", prog, args, r.out)
	}
	return r
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

// conf renders KEY=VALUE lines for a vmasync.conf, single-quoted for sh.
func conf(kv ...string) string {
	var b strings.Builder
	for i := 0; i+1 < len(kv); i += 2 {
		b.WriteString(kv[i] + "='" + strings.ReplaceAll(kv[i+1], "'", `'\''`) + "'\n")
	}
	return b.String()
}

// queue lists the entries of a queue directory (dot files excluded).
func queue(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		if !strings.HasPrefix(de.Name(), ".") {
			names = append(names, de.Name())
		}
	}
	sort.Strings(names)
	return names
}

func TestScriptsSyntaxAndMode(t *testing.T) {
	t.Parallel()
	shells := []string{"sh", "dash", "bash"}
	for _, name := range []string{"vzdump-hook", "vmasync-nightly", "install.sh"} {
		p := script(t, name)
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode()&0o111 == 0 {
			t.Errorf("%s is not executable (vzdump refuses a hook that is not)", name)
		}
		for _, sh := range shells {
			if _, err := exec.LookPath(sh); err != nil {
				continue
			}
			if out, err := exec.Command(sh, "-n", p).CombinedOutput(); err != nil {
				t.Errorf("%s -n %s: %v\n%s", sh, name, err, out)
			}
		}
		// shellcheck is optional (not installed by .ci/run); clean when present.
		if _, err := exec.LookPath("shellcheck"); err == nil {
			if out, err := exec.Command("shellcheck", "-s", "sh", p).CombinedOutput(); err != nil {
				t.Errorf("shellcheck %s: %v\n%s", name, err, out)
			}
		}
	}
}

// hookEnv is the environment of one hook call.
type hookEnv map[string]string

func (h hookEnv) list(extra ...string) []string {
	var env []string
	for k, v := range h {
		env = append(env, k+"="+v)
	}
	return append(env, extra...)
}

// phaseCall is one call of the hook by vzdump.
type phaseCall struct {
	args []string
	env  hookEnv
}

// jobCalls returns the calls vzdump makes for a job that backs up one
// guest, as exec_backup/exec_backup_task in PVE/VZDump.pm make them:
// jobInit adds job-init (newer releases), tarfile/target choose the
// variable(s) that carry the archive path, storeid "" is a --dumpdir job.
func jobCalls(dumpdir, storeid, vmtype, vmid, mode, archive string, jobInit, tarfile, target bool) []phaseCall {
	job := hookEnv{}
	if storeid != "" {
		job["STOREID"] = storeid
	}
	if dumpdir != "" {
		job["DUMPDIR"] = dumpdir
	}
	guest := hookEnv{"VMTYPE": vmtype, "HOSTNAME": "guest-" + vmid}
	for k, v := range job {
		guest[k] = v
	}
	if target {
		guest["TARGET"] = archive
	}
	if tarfile {
		guest["TARFILE"] = archive
	}
	logfile := strings.TrimSuffix(strings.TrimSuffix(archive, ".zst"), ".vma") + ".log"
	if dumpdir != "" {
		guest["LOGFILE"] = logfile
	}
	var calls []phaseCall
	if jobInit {
		init := hookEnv{}
		if storeid != "" {
			init["STOREID"] = storeid
		} else {
			init["DUMPDIR"] = dumpdir
		}
		calls = append(calls, phaseCall{[]string{"job-init"}, init})
	}
	calls = append(calls, phaseCall{[]string{"job-start"}, job})
	for _, p := range []string{"backup-start", "pre-stop", "pre-restart", "post-restart", "backup-end", "log-end"} {
		calls = append(calls, phaseCall{[]string{p, mode, vmid}, guest})
	}
	return append(calls, phaseCall{[]string{"job-end"}, job})
}

const dumpName = "vzdump-qemu-105-2026_11_20-01_00_00.vma.zst"

func TestHookPhasesQueueTheDump(t *testing.T) {
	t.Parallel()
	variants := []struct {
		name                     string
		storeid                  string
		jobInit, tarfile, target bool
		mode                     string
	}{
		{"PVE 8/9 storage job", "local", true, false, true, "snapshot"},
		{"PVE 8/9 --dumpdir job", "", true, false, true, "stop"},
		{"PVE 7 storage job", "nas", false, false, true, "suspend"},
		{"PVE 6 (TARFILE and TARGET)", "local", false, true, true, "snapshot"},
		{"PVE 5 (TARFILE only)", "local", false, true, false, "snapshot"},
	}
	hook := script(t, "vzdump-hook")
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			dir := t.TempDir()
			dumpdir := filepath.Join(dir, "dump")
			archive := filepath.Join(dumpdir, dumpName)
			writeFile(t, archive, "not a real archive: the hook does not read it", 0o644)
			qdir := filepath.Join(dir, "queue")
			confPath := filepath.Join(dir, "vmasync.conf")
			writeFile(t, confPath, conf("REMOTE", "/srv/remote", "QUEUE_DIR", qdir, "HOOK_TRIGGER", "none"), 0o600)
			for _, c := range jobCalls(dumpdir, v.storeid, "qemu", "105", v.mode, archive, v.jobInit, v.tarfile, v.target) {
				r := runEnv(t, c.env.list("VMASYNC_CONF="+confPath), hook, c.args...)
				if r.code != 0 {
					t.Fatalf("%v: exit %d, output %q", c.args, r.code, r.out)
				}
				switch c.args[0] {
				case "backup-end":
					if !strings.Contains(r.out, "vmasync: queued "+dumpName+" for upload to /srv/remote") {
						t.Errorf("backup-end: task log %q does not say the dump was queued", r.out)
					}
				case "job-end":
					if !strings.Contains(r.out, "1 dump(s) queued; the timer") {
						t.Errorf("job-end: output %q", r.out)
					}
				default:
					if r.out != "" {
						t.Errorf("%v: unexpected output %q", c.args, r.out)
					}
				}
			}
			q := queue(t, qdir)
			if len(q) != 1 || q[0] != dumpName {
				t.Fatalf("queue %v, want [%s]", q, dumpName)
			}
			entry, _ := os.ReadFile(filepath.Join(qdir, dumpName))
			for _, want := range []string{"target=" + archive + "\n", "dumpdir=" + dumpdir + "\n", "vmid=105\n", "mode=" + v.mode + "\n"} {
				if !strings.Contains(string(entry), want) {
					t.Errorf("queue entry %q lacks %q", entry, want)
				}
			}
		})
	}
}

func TestHookSkipsWhatItCannotUpload(t *testing.T) {
	t.Parallel()
	hook := script(t, "vzdump-hook")
	dir := t.TempDir()
	dumpdir := filepath.Join(dir, "dump")
	qdir := filepath.Join(dir, "queue")
	confPath := filepath.Join(dir, "vmasync.conf")
	writeFile(t, confPath, conf("REMOTE", "/srv/remote", "QUEUE_DIR", qdir, "HOOK_TRIGGER", "none", "VMIDS", "105 106"), 0o600)
	lxc := filepath.Join(dumpdir, "vzdump-lxc-105-2026_11_20-01_00_00.tar.zst")
	odd := filepath.Join(dumpdir, "vm105-backup.vma.zst")
	other := filepath.Join(dumpdir, "vzdump-qemu-300-2026_11_20-01_00_00.vma")
	for _, f := range []string{lxc, odd, other} {
		writeFile(t, f, "x", 0o644)
	}
	cases := []struct {
		name string
		env  hookEnv
		args []string
		want string
	}{
		{"LXC container", hookEnv{"VMTYPE": "lxc", "DUMPDIR": dumpdir, "TARGET": lxc}, []string{"backup-end", "snapshot", "105"}, "skipping lxc backup of 105"},
		{"Proxmox Backup Server storage", hookEnv{"VMTYPE": "qemu", "STOREID": "pbs", "TARGET": "vm/105/2026-11-20T01:00:00Z"}, []string{"backup-end", "snapshot", "105"}, "is not a file (Proxmox Backup Server storage)"},
		{"--stdout", hookEnv{"VMTYPE": "qemu", "DUMPDIR": dumpdir, "TARGET": "-"}, []string{"backup-end", "snapshot", "105"}, "no archive file (vzdump --stdout)"},
		{"archive missing", hookEnv{"VMTYPE": "qemu", "DUMPDIR": dumpdir, "TARGET": filepath.Join(dumpdir, dumpName)}, []string{"backup-end", "snapshot", "105"}, "does not exist"},
		{"not a vzdump name", hookEnv{"VMTYPE": "qemu", "DUMPDIR": dumpdir, "TARGET": odd}, []string{"backup-end", "snapshot", "105"}, "not a vzdump-qemu-<vmid>-<date>"},
		{"VM not in VMIDS", hookEnv{"VMTYPE": "qemu", "DUMPDIR": dumpdir, "TARGET": other}, []string{"backup-end", "snapshot", "300"}, "not in VMIDS"},
		{"no variables at all", hookEnv{}, []string{"backup-end", "snapshot", "105"}, "unknown VMTYPE"},
		{"backup-abort", hookEnv{"VMTYPE": "qemu", "DUMPDIR": dumpdir, "TARGET": other}, []string{"backup-abort", "snapshot", "105"}, "backup of 105 failed; nothing queued"},
		{"unknown phase", hookEnv{"DUMPDIR": dumpdir}, []string{"some-future-phase", "x", "y"}, ""},
		{"no arguments", hookEnv{}, nil, ""},
		{"job-end with an empty queue", hookEnv{"DUMPDIR": dumpdir}, []string{"job-end"}, ""},
	}
	for _, c := range cases {
		r := runEnv(t, c.env.list("VMASYNC_CONF="+confPath), hook, c.args...)
		if r.code != 0 {
			t.Errorf("%s: exit %d (%q)", c.name, r.code, r.out)
		}
		if c.want == "" && r.out != "" || !strings.Contains(r.out, c.want) {
			t.Errorf("%s: output %q, want %q", c.name, r.out, c.want)
		}
	}
	if q := queue(t, qdir); len(q) != 0 {
		t.Errorf("queue %v, want none", q)
	}
}

// TestHookNeverFails breaks everything the hook depends on: the config, the
// queue directory, vmasync, the runner, systemctl, the remote.
func TestHookNeverFails(t *testing.T) {
	t.Parallel()
	hook := script(t, "vzdump-hook")
	dir := t.TempDir()
	dumpdir := filepath.Join(dir, "dump")
	archive := filepath.Join(dumpdir, dumpName)
	writeFile(t, archive, "x", 0o644)
	notDir := filepath.Join(dir, "plainfile")
	writeFile(t, notDir, "x", 0o644)
	failing := filepath.Join(dir, "failing")
	writeFile(t, failing, "#!/bin/sh\necho broken >&2\nexit 1\n", 0o755)
	guest := hookEnv{"VMTYPE": "qemu", "DUMPDIR": dumpdir, "STOREID": "local", "TARGET": archive}
	qdir := filepath.Join(dir, "queue")

	cases := []struct {
		name string
		conf string // "" = no config file
		env  []string
		want string // in the backup-end output
	}{
		{"no config file", "", []string{"VMASYNC_QUEUE_DIR=" + qdir}, "queued " + dumpName},
		{"config with a syntax error", "REMOTE=x\nif then fi (\n", []string{"VMASYNC_QUEUE_DIR=" + qdir}, "has errors"},
		{"config that exits", "exit 3\n", []string{"VMASYNC_QUEUE_DIR=" + qdir}, "has errors"},
		{"queue directory cannot be created", conf("QUEUE_DIR", notDir+"/queue"), nil, "is not queued"},
		{"broken vmasync, runner and remote", conf("REMOTE", "nosuchremote:x", "QUEUE_DIR", qdir, "VMASYNC", failing, "NIGHTLY", failing, "HOOK_TRIGGER", "detached", "HOOK_LOG", filepath.Join(dir, "log")), nil, "queued"},
		{"missing vmasync and runner", conf("REMOTE", "r:x", "QUEUE_DIR", qdir, "VMASYNC", "/nonexistent/vmasync", "NIGHTLY", "/nonexistent/runner", "HOOK_TRIGGER", "detached"), nil, "queued"},
		{"failing systemctl, missing runner", conf("REMOTE", "r:x", "QUEUE_DIR", qdir, "SYSTEMCTL", failing, "NIGHTLY", "/nonexistent/runner", "HOOK_TRIGGER", "systemd"), nil, "queued"},
		{"no REMOTE", conf("QUEUE_DIR", qdir, "HOOK_TRIGGER", "detached"), nil, "queued"},
	}
	for _, c := range cases {
		confPath := filepath.Join(dir, "missing.conf")
		if c.conf != "" {
			confPath = filepath.Join(t.TempDir(), "vmasync.conf")
			writeFile(t, confPath, c.conf, 0o600)
		}
		os.RemoveAll(qdir)
		env := append([]string{"VMASYNC_CONF=" + confPath}, c.env...)
		for _, args := range [][]string{{"job-init"}, {"job-start"}, {"backup-end", "snapshot", "105"}, {"log-end", "snapshot", "105"}, {"job-end"}, {"job-abort"}} {
			e := env
			if len(args) > 1 {
				e = append(e, guest.list()...)
			}
			r := runEnv(t, e, hook, args...)
			if r.code != 0 {
				t.Errorf("%s: %v: exit %d (%q)", c.name, args, r.code, r.out)
			}
			if args[0] == "backup-end" && !strings.Contains(r.out, c.want) {
				t.Errorf("%s: backup-end output %q, want %q", c.name, r.out, c.want)
			}
			if args[0] == "job-end" && r.elapsed > 5*time.Second {
				t.Errorf("%s: job-end took %v", c.name, r.elapsed)
			}
			t.Logf("%s: %v: %s", c.name, args, strings.TrimSpace(r.out))
		}
	}
}

// TestHookDoesNotWaitForTheUpload: job-end starts the runner detached and
// returns while it runs, with vzdump's pipes closed (runEnv waits for them
// as PVE::Tools::run_command does).
func TestHookDoesNotWaitForTheUpload(t *testing.T) {
	t.Parallel()
	hook := script(t, "vzdump-hook")
	dir := t.TempDir()
	qdir := filepath.Join(dir, "queue")
	writeFile(t, filepath.Join(qdir, dumpName), "target=/x\n", 0o644)
	marker := filepath.Join(dir, "ran")
	slow := filepath.Join(dir, "slow-runner")
	// The runner says it started, then runs on for 8 s: the hook must have
	// returned long before (5 s leaves room for a loaded machine).
	writeFile(t, slow, "#!/bin/sh\necho \"conf=$VMASYNC_CONF path=$PATH\" > '"+marker+".tmp'\nmv '"+marker+".tmp' '"+marker+"'\nexec sleep 8\n", 0o755)
	systemctl := filepath.Join(dir, "systemctl")
	calls := filepath.Join(dir, "systemctl.calls")
	writeFile(t, systemctl, "#!/bin/sh\necho \"$*\" >> '"+calls+"'\nexit ${FAIL:-0}\n", 0o755)

	for _, trigger := range []string{"detached", "systemd", "systemd-failing"} {
		os.Remove(marker)
		os.Remove(calls)
		confPath := filepath.Join(dir, trigger+".conf")
		body := conf("REMOTE", "r:x", "QUEUE_DIR", qdir, "NIGHTLY", slow, "VMASYNC", slow, "HOOK_LOG", filepath.Join(dir, "runner.log"), "SYSTEMCTL", systemctl)
		switch trigger {
		case "detached":
			body += "HOOK_TRIGGER=detached\n"
		case "systemd":
			body += "HOOK_TRIGGER=systemd\n"
		case "systemd-failing":
			body += "HOOK_TRIGGER=systemd\nFAIL=1\nexport FAIL\n"
		}
		writeFile(t, confPath, body, 0o600)
		r := runEnv(t, []string{"VMASYNC_CONF=" + confPath, "DUMPDIR=/var/lib/vz/dump"}, hook, "job-end")
		if r.code != 0 || r.elapsed > 5*time.Second {
			t.Fatalf("%s: exit %d after %v (%q); want 0 at once", trigger, r.code, r.elapsed, r.out)
		}
		t.Logf("%s: job-end returned after %v: %s", trigger, r.elapsed, strings.TrimSpace(r.out))
		if trigger == "systemd" {
			got, _ := os.ReadFile(calls)
			if string(got) != "start --no-block vmasync-push.service\n" {
				t.Errorf("systemctl called with %q", got)
			}
			if !strings.Contains(r.out, "upload of the queued dumps started: vmasync-push.service") {
				t.Errorf("output %q", r.out)
			}
			continue
		}
		if !strings.Contains(r.out, "started in the background") {
			t.Errorf("%s: output %q", trigger, r.out)
		}
		deadline := time.Now().Add(20 * time.Second)
		for {
			got, err := os.ReadFile(marker)
			if err == nil {
				if !strings.Contains(string(got), "conf="+confPath+" ") {
					t.Errorf("%s: runner saw %q, want VMASYNC_CONF=%s", trigger, got, confPath)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the detached runner did not run", trigger)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}
