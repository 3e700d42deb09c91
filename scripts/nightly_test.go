package scripts_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
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

// fakeSendmail appends its arguments and the message to $MAIL_LOG.
const fakeSendmail = `#!/bin/sh
{ echo "ARGS: $*"; cat; echo "-- end of mail --"; } >> "$MAIL_LOG"
`

type nightlyFixture struct {
	dir, dumpdir, dump2, qdir, remote, calls, fake, confPath string
	// bin holds the fake sendmail, first on PATH; mails is its log.
	bin, mails string
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
		bin:     filepath.Join(dir, "bin"),
		mails:   filepath.Join(dir, "mails"),
	}
	f.confPath = filepath.Join(dir, "vmasync.conf")
	writeFile(t, f.fake, fakeVmasync, 0o755)
	writeFile(t, filepath.Join(f.bin, "sendmail"), fakeSendmail, 0o755)
	for _, d := range []string{f.dumpdir, f.dump2, f.qdir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// DUMPDIR holds an older dump (an empty one fails the run).
	writeFile(t, filepath.Join(f.dumpdir, "vzdump-qemu-100-2026_11_19-01_00_00.vma.zst"), "x", 0o644)
	return f
}

// mail returns what the fake sendmail got ("" for no mail).
func (f *nightlyFixture) mail(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(f.mails)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
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
	env := append(os.Environ(), "VMASYNC_CONF="+f.confPath, "CALLS="+f.calls,
		"PATH="+f.bin+string(os.PathListSeparator)+os.Getenv("PATH"), "MAIL_LOG="+f.mails)
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
	t.Parallel()
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
	keep := "--keep-last|3|--keep-hourly|2|--keep-daily|7|--keep-weekly|4|--keep-monthly|6|--keep-yearly|1|"
	want := []string{
		"push|" + opts + keep + "--json|" + f.dumpdir + "|" + f.remote,
		"push|" + opts + "--vmid|106|--vmid|107|" + keep + "--json|" + f.dump2 + "|" + f.remote,
		"prune|--rclone-config|" + rcconf + "|" + keep + f.remote,
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
	t.Parallel()
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
	t.Parallel()
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
	// without a prune, push must not skip what prune would remove
	if r.code != 0 || len(calls) != 1 || calls[0] != "push|"+f.dumpdir+"|"+f.remote {
		t.Errorf("PRUNE=no: exit %d, calls %q", r.code, calls)
	}

	f = newNightly(t)
	writeFile(t, f.confPath, f.baseConf("KEEP_LAST", "1", "KEEP_ALL", "yes"), 0o600)
	r, calls = f.run(t)
	if r.code != 0 || len(calls) != 2 || calls[0] != "push|"+f.dumpdir+"|"+f.remote || calls[1] != "prune|--keep-last|1|--keep-all|"+f.remote {
		t.Errorf("KEEP_ALL: exit %d, calls %q", r.code, calls)
	}
}

func TestNightlyConfigErrors(t *testing.T) {
	t.Parallel()
	f := newNightly(t)
	cases := map[string]string{
		"missing config":   "",
		"syntax error":     "REMOTE=x\nif then (\n",
		"no REMOTE":        conf("DUMPDIR", f.dumpdir, "VMASYNC", f.fake),
		"no vmasync":       conf("DUMPDIR", f.dumpdir, "REMOTE", "r:x", "VMASYNC", "/nonexistent/vmasync"),
		"no DUMPDIR":       conf("DUMPDIR", filepath.Join(f.dir, "nope"), "REMOTE", "r:x", "VMASYNC", f.fake),
		"bad TRANSFERS":    f.baseConf("TRANSFERS", "many"),
		"bad KEEP_DAILY":   f.baseConf("KEEP_DAILY", "7d"),
		"bad MAIL_ON":      f.baseConf("MAIL_ON", "sometimes"),
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
	t.Parallel()
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
	t.Parallel()
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

// An empty dump directory (an unmounted NFS storage) fails the run loudly
// instead of a green run that uploaded nothing; the queued directories
// still go, prune does not run, root gets a mail.
func TestNightlyEmptyDumpDirFails(t *testing.T) {
	t.Parallel()
	f := newNightly(t)
	os.Remove(filepath.Join(f.dumpdir, "vzdump-qemu-100-2026_11_19-01_00_00.vma.zst"))
	writeFile(t, filepath.Join(f.dumpdir, "vzdump-qemu-101-2026_11_19-01_00_00.vma.dat"), "partial", 0o644)
	writeFile(t, f.confPath, f.baseConf("KEEP_LAST", "1"), 0o600)
	f.enqueue(t, f.dump2, "106", "2026_11_20-01_10_00", true)
	r, calls := f.run(t)
	if r.code != 1 {
		t.Errorf("exit %d, want 1", r.code)
	}
	if want := []string{"push|--vmid|106|--keep-last|1|" + f.dump2 + "|" + f.remote}; !slices.Equal(calls, want) {
		t.Errorf("calls %q, want %q", calls, want)
	}
	for _, want := range []string{"FAILED: DUMPDIR " + f.dumpdir + " holds no vzdump VM backup", "is the storage mounted", "done: FAILED"} {
		if !strings.Contains(r.out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if m := f.mail(t); !strings.Contains(m, "To: root") || !strings.Contains(m, "FAILED (exit 1)") || !strings.Contains(m, "holds no vzdump VM backup") {
		t.Errorf("mail:\n%s", m)
	}
}

// hcServer is a healthchecks.io stand-in on 127.0.0.1 that records the
// pings as "METHOD PATH BODY".
type hcServer struct {
	*httptest.Server
	mu    sync.Mutex
	pings []string
}

func newHC(t *testing.T) *hcServer {
	h := &hcServer{}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		h.pings = append(h.pings, r.Method+" "+r.URL.Path+" "+string(body))
		h.mu.Unlock()
		fmt.Fprintln(w, "OK")
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *hcServer) got() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.pings)
}

func TestNightlyNotifications(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("curl"); err != nil {
		if _, err := exec.LookPath("wget"); err != nil {
			t.Skip("neither curl nor wget")
		}
	}
	hc := newHC(t)
	url := hc.URL + "/ping/abc-123"

	// success: /start, then the URL itself; no mail by default
	f := newNightly(t)
	writeFile(t, f.confPath, f.baseConf("HEALTHCHECK_URL", url+"/"), 0o600)
	if r, _ := f.run(t); r.code != 0 {
		t.Fatalf("exit %d", r.code)
	}
	if got, want := hc.got(), []string{"GET /ping/abc-123/start ", "GET /ping/abc-123 "}; !slices.Equal(got, want) {
		t.Errorf("pings %q, want %q", got, want)
	}
	if m := f.mail(t); m != "" {
		t.Errorf("a mail on success with the default MAIL_ON:\n%s", m)
	}

	// failure: /start, /fail with the last log lines; a mail to MAILTO
	hc.pings = nil
	f = newNightly(t)
	writeFile(t, f.confPath, f.baseConf("HEALTHCHECK_URL", url, "MAILTO", "admin@example.com", "NOTIFY_LINES", "5"), 0o600)
	r, _ := f.run(t, "FAKE_PUSH_RC=1")
	if r.code != 1 {
		t.Fatalf("exit %d, want 1", r.code)
	}
	got := hc.got()
	if len(got) != 2 || got[0] != "GET /ping/abc-123/start " || !strings.HasPrefix(got[1], "POST /ping/abc-123/fail ") ||
		!strings.Contains(got[1], "push of "+f.dumpdir+" failed (exit 1)") || !strings.Contains(got[1], "done: FAILED") {
		t.Errorf("pings %q", got)
	}
	if n := strings.Count(strings.TrimSpace(strings.TrimPrefix(got[len(got)-1], "POST /ping/abc-123/fail ")), "\n") + 1; n != 5 {
		t.Errorf("the failure ping carries %d lines, want NOTIFY_LINES=5", n)
	}
	m := f.mail(t)
	for _, want := range []string{"ARGS: -oi -t", "To: admin@example.com", "Subject: vmasync-nightly on ", ": FAILED (exit 1)", "Remote: " + f.remote, "push of " + f.dumpdir + " failed (exit 1)", "done: FAILED"} {
		if !strings.Contains(m, want) {
			t.Errorf("mail lacks %q:\n%s", want, m)
		}
	}

	// MAIL_ON=always mails a success too; MAIL_ON=never not even a failure
	f = newNightly(t)
	writeFile(t, f.confPath, f.baseConf("MAIL_ON", "always"), 0o600)
	if r, _ := f.run(t); r.code != 0 || !strings.Contains(f.mail(t), ": ok") || !strings.Contains(f.mail(t), "done: ok") {
		t.Errorf("MAIL_ON=always: exit %d, mail:\n%s", r.code, f.mail(t))
	}
	f = newNightly(t)
	writeFile(t, f.confPath, f.baseConf("MAIL_ON", "never"), 0o600)
	if r, _ := f.run(t, "FAKE_PUSH_RC=1"); r.code != 1 || f.mail(t) != "" {
		t.Errorf("MAIL_ON=never: exit %d, mail:\n%s", r.code, f.mail(t))
	}

	// a configuration error found after the config was read is a failure too
	hc.pings = nil
	f = newNightly(t)
	writeFile(t, f.confPath, f.baseConf("HEALTHCHECK_URL", url, "TRANSFERS", "many"), 0o600)
	if r, _ := f.run(t); r.code != 2 || !strings.Contains(f.mail(t), "FAILED (exit 2)") || !strings.Contains(f.mail(t), "TRANSFERS must be a number") {
		t.Errorf("config error: exit %d, mail:\n%s", r.code, f.mail(t))
	}
	if got := hc.got(); len(got) != 1 || !strings.HasPrefix(got[0], "POST /ping/abc-123/fail ") {
		t.Errorf("config error pings %q", got)
	}

	// an unreachable ping URL and a failing sendmail never fail the run
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL + "/ping/x"
	dead.Close()
	f = newNightly(t)
	writeFile(t, filepath.Join(f.bin, "sendmail"), "#!/bin/sh\ncat >/dev/null\nexit 75\n", 0o755)
	writeFile(t, f.confPath, f.baseConf("HEALTHCHECK_URL", deadURL, "HEALTHCHECK_TIMEOUT", "2", "MAIL_ON", "always"), 0o600)
	r, _ = f.run(t)
	if r.code != 0 || !strings.Contains(r.out, "healthcheck ping to "+deadURL+"/start failed") || !strings.Contains(r.out, "sendmail failed") {
		t.Errorf("dead URL: exit %d", r.code)
	}
	if r.elapsed > 30*time.Second {
		t.Errorf("the dead URL took %v", r.elapsed)
	}
}

// Issue 16: remote retention and local dumps must not undo each other.
// Three nights with KEEP_LAST=1, vzdump keeping two dumps locally, and two
// runs a night (the hook's right after the job, the timer's later): no
// backup is uploaded twice, and the remote ends with the newest one only.
func TestNightlyThreeNightsRetentionSticks(t *testing.T) {
	t.Parallel() // the real binary in processes of its own, in directories of its own
	if testing.Short() {
		t.Skip("builds vmasync and pushes real archives")
	}
	dir := t.TempDir()
	vmasync, vmagen := buildTools(t, t.TempDir())
	dump := filepath.Join(dir, "dump")
	remote := filepath.Join(dir, "remote")
	if err := os.MkdirAll(dump, 0o755); err != nil {
		t.Fatal(err)
	}
	confPath := filepath.Join(dir, "vmasync.conf")
	writeFile(t, confPath, conf("DUMPDIR", dump, "REMOTE", remote, "RCLONE_CONFIG", filepath.Join(dir, "rclone.conf"),
		"VMASYNC", vmasync, "QUEUE_DIR", filepath.Join(dir, "queue"), "KEEP_LAST", "1", "MAIL_ON", "never"), 0o600)
	writeFile(t, filepath.Join(dir, "rclone.conf"), "", 0o600)
	env := append(os.Environ(), "VMASYNC_CONF="+confPath)

	uploads := map[string]int{}
	var stems []string
	for night := 1; night <= 3; night++ {
		stem := fmt.Sprintf("vzdump-qemu-105-2026_11_2%d-01_00_00", night)
		stems = append(stems, stem)
		if out, err := exec.Command(vmagen, "-disks", "drive-scsi0:8M", "-seed", "1", "-gen", fmt.Sprint(night),
			"-o", filepath.Join(dump, stem+".vma")).CombinedOutput(); err != nil {
			t.Fatalf("vmagen: %v\n%s", err, out)
		}
		if night >= 3 { // vzdump's local prune-backups keep-last=2
			os.Remove(filepath.Join(dump, stems[night-3]+".vma"))
		}
		for _, run := range []string{"hook", "timer"} {
			r := runEnv(t, env, script(t, "vmasync-nightly"))
			t.Logf("night %d, %s's run: exit %d\n%s", night, run, r.code, r.out)
			if r.code != 0 {
				t.Fatalf("night %d, %s's run: exit %d", night, run, r.code)
			}
			for l := range strings.Lines(r.out) {
				if name, rest, ok := strings.Cut(l, ": "); ok && strings.HasPrefix(name, "vzdump-qemu-") && strings.Contains(rest, " uploaded ") {
					uploads[name]++
				}
			}
		}
	}
	for _, s := range stems {
		if uploads[s] != 1 {
			t.Errorf("%s uploaded %d times, want once", s, uploads[s])
		}
	}
	out, err := exec.Command(vmasync, "snapshots", "--json", remote).Output()
	if err != nil {
		t.Fatalf("snapshots: %v", err)
	}
	var snaps []struct{ Backup string }
	if err := json.Unmarshal(out, &snaps); err != nil || len(snaps) != 1 || snaps[0].Backup != stems[2] {
		t.Errorf("the remote holds %s, want only %s", out, stems[2])
	}
}

// A run stopped by SIGTERM (systemd's time limit, systemctl stop) says so
// and mails and pings the failure.
func TestNightlyStoppedBySignalNotifies(t *testing.T) {
	t.Parallel()
	hc := newHC(t)
	f := newNightly(t)
	writeFile(t, f.confPath, f.baseConf("HEALTHCHECK_URL", hc.URL+"/p"), 0o600)
	cmd := exec.Command(script(t, "vmasync-nightly"))
	cmd.Env = append(os.Environ(), "VMASYNC_CONF="+f.confPath, "CALLS="+f.calls, "FAKE_ON_PUSH=sleep 30",
		"PATH="+f.bin+string(os.PathListSeparator)+os.Getenv("PATH"), "MAIL_LOG="+f.mails)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if b, _ := os.ReadFile(f.calls); strings.HasPrefix(string(b), "push|") {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("no push started")
		}
	}
	time.Sleep(200 * time.Millisecond)
	syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) // as systemd: the whole group
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		t.Fatalf("the run did not end after SIGTERM:\n%s", out.String())
	}
	t.Logf("vmasync-nightly:\n%s", out.String())
	if code := cmd.ProcessState.ExitCode(); code != 143 {
		t.Errorf("exit %d, want 143", code)
	}
	if !strings.Contains(out.String(), "stopped by SIGTERM (exit 143)") {
		t.Errorf("output lacks the stop line")
	}
	if m := f.mail(t); !strings.Contains(m, "FAILED (exit 143)") || !strings.Contains(m, "stopped by SIGTERM") {
		t.Errorf("mail:\n%s", m)
	}
	if got := hc.got(); len(got) != 2 || !strings.HasPrefix(got[1], "POST /p/fail ") || !strings.Contains(got[1], "stopped by SIGTERM") {
		t.Errorf("pings %q", got)
	}
}
