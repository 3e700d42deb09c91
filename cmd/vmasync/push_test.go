package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/vmasync/vmasync/vma/vmatest"
)

// nightly writes the dump of generation gen of a small VM into dir under
// its vzdump name and returns the path.
func nightly(t *testing.T, dir, vmid string, gen uint64, stamp string, zst bool) string {
	t.Helper()
	b, err := nightlyArchive(gen, zst)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "vzdump-qemu-"+vmid+"-"+stamp+".vma")
	if zst {
		p += ".zst"
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// writeArchive writes the archive of s to path, generated straight into
// the file rather than into memory first.
func writeArchive(t *testing.T, path string, s vmatest.Spec) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	if err := vmatest.Write(w, s); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// nightlyArchives are nightly's dumps by generation and compression. The
// VM is the same whatever the VM id and time stamp, so each dump is
// generated (and compressed) once per test run however many tests write
// it; the bytes are only read.
var nightlyArchives struct {
	sync.Mutex
	m map[[2]uint64]func() ([]byte, error)
}

func nightlyArchive(gen uint64, zst bool) ([]byte, error) {
	key := [2]uint64{gen, 0}
	if zst {
		key[1] = 1
	}
	nightlyArchives.Lock()
	if nightlyArchives.m == nil {
		nightlyArchives.m = map[[2]uint64]func() ([]byte, error){}
	}
	f, ok := nightlyArchives.m[key]
	if !ok {
		f = sync.OnceValues(func() ([]byte, error) {
			s := vmatest.Spec{
				Disks: []vmatest.Disk{
					{Name: "drive-scsi0", Size: 12 << 20, Content: vmatest.Mixed},
					{Name: "drive-efidisk0", Size: 540672, Content: vmatest.Random},
					{Name: "drive-tpmstate0", Size: 4 << 20, Content: vmatest.Sparse},
				},
				Order: vmatest.ProxmoxLike, Seed: 21, Generation: gen, ChangeFraction: 0.01,
			}
			b, err := vmatest.Archive(s)
			if err != nil || !zst {
				return b, err
			}
			enc, _ := zstd.NewWriter(nil)
			return enc.EncodeAll(b, nil), nil
		})
		nightlyArchives.m[key] = f
	}
	nightlyArchives.Unlock()
	return f()
}

type pushOut struct {
	Dumps []struct {
		Backup, Status, Previous string
		ArchiveBytes             int64 `json:"archive_bytes"`
		NewBytes                 int64 `json:"new_bytes"`
		Uploaded                 int64 `json:"uploaded_bytes"`
	}
	Skipped []string
	Failed  int
}

func TestPushPullCLI(t *testing.T) {
	dumps := t.TempDir()
	rem := filepath.Join(t.TempDir(), "remote")
	d1 := nightly(t, dumps, "105", 0, "2026_11_20-01_00_00", true)
	os.WriteFile(strings.TrimSuffix(d1, ".vma.zst")+".notes", []byte("db server\n"), 0o644)
	os.WriteFile(strings.TrimSuffix(d1, ".vma.zst")+".protected", nil, 0o644)
	os.WriteFile(filepath.Join(dumps, "vzdump-lxc-110-2026_11_20-01_00_00.tar.zst"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(dumps, "vzdump-qemu-106-2026_11_20-01_30_00.vma.dat"), []byte("partial"), 0o644)

	// dry run on an empty remote: nothing is written.
	r := runCLI(t, nil, "push", "--dry-run", dumps, rem)
	if r.code != 0 || !strings.Contains(r.stdout, "would upload") {
		t.Fatalf("dry run: %v", r)
	}
	if _, err := os.Stat(rem); !os.IsNotExist(err) {
		t.Fatalf("dry run created the remote: %v", err)
	}

	r = runCLI(t, nil, "push", "--json", dumps, rem)
	var out pushOut
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &out) != nil {
		t.Fatalf("push day 1: %v", r)
	}
	if len(out.Dumps) != 1 || out.Dumps[0].Status != "pushed" || len(out.Skipped) != 1 || !strings.Contains(out.Skipped[0], "lxc") {
		t.Fatalf("day 1 json: %+v", out)
	}

	d2 := nightly(t, dumps, "105", 1, "2026_11_21-01_00_00", false)
	r = runCLI(t, nil, "push", "--json", dumps, rem)
	out = pushOut{}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &out) != nil || len(out.Dumps) != 2 {
		t.Fatalf("push day 2: %v", r)
	}
	day2 := out.Dumps[1]
	if out.Dumps[0].Status != "skipped" || day2.Status != "pushed" || day2.Previous != "vzdump-qemu-105-2026_11_20-01_00_00" {
		t.Fatalf("day 2 json: %+v", out)
	}
	if day2.NewBytes*5 > day2.ArchiveBytes {
		t.Errorf("day 2: %d new of %d bytes", day2.NewBytes, day2.ArchiveBytes)
	}

	r = runCLI(t, nil, "snapshots", "--json", rem)
	var snaps []struct {
		Backup    string
		Protected bool
		Size      uint64
		NewBytes  uint64 `json:"new_bytes"`
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &snaps) != nil || len(snaps) != 2 || !snaps[0].Protected || snaps[1].Protected || snaps[1].NewBytes >= snaps[1].Size/5 {
		t.Fatalf("snapshots: %v", r)
	}
	if r = runCLI(t, nil, "snapshots", rem); r.code != 0 || !strings.Contains(r.stdout, "protected") {
		t.Fatalf("snapshots table: %v", r)
	}

	// pull into a directory: canonical name, notes beside it, identical
	// to optimize's output.
	dest := t.TempDir()
	if r = runCLI(t, nil, "pull", rem, "105@2026_11_20-01_00_00", dest); r.code != 0 {
		t.Fatalf("pull: %v", r)
	}
	want1 := runCLI(t, nil, "optimize", "--force", d1, "-").stdout
	got, _ := os.ReadFile(filepath.Join(dest, "vzdump-qemu-105-2026_11_20-01_00_00.vma"))
	if len(want1) == 0 || !bytes.Equal(got, []byte(want1)) {
		t.Fatalf("pulled day 1 differs from optimize (%d vs %d bytes)", len(got), len(want1))
	}
	// Under Proxmox VE's names: notes and protection after the archive.
	if notes, _ := os.ReadFile(filepath.Join(dest, "vzdump-qemu-105-2026_11_20-01_00_00.vma.notes")); string(notes) != "db server\n" {
		t.Errorf("notes not pulled: %q", notes)
	}
	if _, err := os.Stat(filepath.Join(dest, "vzdump-qemu-105-2026_11_20-01_00_00.vma.protected")); err != nil {
		t.Errorf("protected marker not pulled: %v", err)
	}
	r = runCLI(t, nil, "pull", rem, "105@latest", "-")
	if want2 := runCLI(t, nil, "optimize", "--force", d2, "-").stdout; r.code != 0 || r.stdout != want2 {
		t.Fatalf("pull latest to stdout differs from optimize: %d vs %d bytes", len(r.stdout), len(want2))
	}
	if v := runCLI(t, strings.NewReader(r.stdout), "verify", "-"); v.code != 0 {
		t.Fatalf("pulled archive does not verify: %v", v)
	}
	// pull --compress zstd to a file.
	zf := filepath.Join(t.TempDir(), "x.vma.zst")
	if r = runCLI(t, nil, "pull", "--compress", "zstd", rem, "105", zf); r.code != 0 {
		t.Fatalf("pull zstd: %v", r)
	}
	if v := runCLI(t, nil, "verify", zf); v.code != 0 {
		t.Fatalf("pulled .zst does not verify: %v", v)
	}

	if r = runCLI(t, nil, "check", "--read-data", rem); r.code != 0 || !strings.Contains(r.stderr, "no problems") {
		t.Fatalf("check: %v", r)
	}
	for _, c := range []struct {
		args []string
		code int
		err  string
	}{
		{[]string{"pull", rem, "105@2025_01_01"}, 1, "no backup at"},
		{[]string{"pull", rem, "999"}, 1, "no backup of VM 999"},
		{[]string{"pull", rem, "abc"}, 2, "not a VM id"},
		{[]string{"check", "--read-data=0", rem}, 2, "percentage"},
		{[]string{"snapshots", t.TempDir()}, 1, "not a vmasync repository"},
		{[]string{"push", filepath.Join(dumps, "nope"), rem}, 1, "nope"},
		{[]string{"push", "-o", "nosuchoption=1", dumps, rem}, 2, "unknown rclone option"},
	} {
		r := runCLI(t, nil, c.args...)
		if r.code != c.code {
			t.Errorf("%q: exit %d, want %d: %v", c.args, r.code, c.code, r)
			continue
		}
		wantOneErrorLine(t, r, c.err)
	}
}

// TestPushCorruptDumpContinues: a corrupt dump fails with its byte offset,
// the others are still pushed, nothing of the corrupt one is visible.
func TestPushCorruptDumpContinues(t *testing.T) {
	dumps := t.TempDir()
	rem := filepath.Join(t.TempDir(), "remote")
	bad := nightly(t, dumps, "105", 0, "2026_11_20-01_00_00", false)
	b, _ := os.ReadFile(bad)
	// The first extent header (after the archive header; VMA's MD5 covers
	// headers, not cluster data): its checksum no longer matches.
	hdrSize := int(b[56])<<24 | int(b[57])<<16 | int(b[58])<<8 | int(b[59])
	b[hdrSize+100] ^= 0xff
	os.WriteFile(bad, b, 0o644)
	nightly(t, dumps, "106", 0, "2026_11_20-01_10_00", true)
	r := runCLI(t, nil, "push", dumps, rem)
	if r.code != 1 || !strings.Contains(r.stderr, "vzdump-qemu-105-2026_11_20-01_00_00.vma: ") || !strings.Contains(r.stderr, "byte offset") {
		t.Fatalf("push with a corrupt dump: %v", r)
	}
	if !strings.Contains(r.stdout, "vzdump-qemu-106-2026_11_20-01_10_00:") {
		t.Fatalf("the good dump was not pushed: %v", r)
	}
	s := runCLI(t, nil, "snapshots", rem)
	if strings.Contains(s.stdout, "qemu-105") || !strings.Contains(s.stdout, "qemu-106") {
		t.Fatalf("snapshots after a failed dump: %v", s)
	}
	if after, _ := os.ReadFile(bad); !bytes.Equal(after, b) {
		t.Fatal("the corrupt dump was changed")
	}
}

// TestPushKilled kills a push (SIGKILL) after its first pack is stored;
// the next push reuses the stored packs and ends with a complete backup.
func TestPushKilled(t *testing.T) {
	t.Parallel()
	bin := builtBinary(t)
	dumps := t.TempDir()
	rem := filepath.Join(t.TempDir(), "remote")
	s := vmatest.Spec{Disks: []vmatest.Disk{{Name: "drive-scsi0", Size: 48 << 20, Content: vmatest.Random}}, Order: vmatest.ProxmoxLike, Seed: 9}
	dump := filepath.Join(dumps, "vzdump-qemu-120-2026_11_20-01_00_00.vma")
	writeArchive(t, dump, s)

	cmd := exec.Command(bin, "push", "--transfers", "1", "--bwlimit", "8M", dumps, rem)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	packsDir := filepath.Join(rem, "packs")
	// With one transfer at a time, a second pack file means the first is
	// complete; the second one is cut short by the kill.
	var first map[string]time.Time
	for deadline := time.Now().Add(60 * time.Second); ; {
		first = packFiles(t, packsDir)
		if len(first) >= 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	first = packFiles(t, packsDir)
	if len(first) < 2 {
		t.Fatal("no pack stored before the kill")
	}
	// Keep only the complete packs: the partial one is replaced.
	for name := range first {
		if fi, err := os.Stat(name); err == nil && fi.Size() < 16<<20 {
			delete(first, name)
		}
	}
	if st := exe(t, nil, "snapshots", rem); strings.Contains(st.stdout, "qemu-120") {
		t.Fatalf("a killed push left a visible backup: %v", st)
	}
	r := exe(t, nil, "push", dumps, rem)
	if r.code != 0 || !strings.Contains(r.stderr, "interrupted push") {
		t.Fatalf("push after kill: %v", r)
	}
	after := packFiles(t, packsDir)
	for name, mt := range first {
		if m2, ok := after[name]; !ok || !m2.Equal(mt) {
			t.Errorf("pack %s of the killed run was replaced or removed", name)
		}
	}
	if c := exe(t, nil, "check", "--read-data", rem); c.code != 0 {
		t.Fatalf("check after resume: %v", c)
	}
	pulled := exe(t, nil, "pull", rem, "120", "-")
	opt := exe(t, nil, "optimize", "--force", dump, "-")
	if pulled.code != 0 || pulled.stdout != opt.stdout {
		t.Fatalf("pulled archive differs from optimize's output")
	}
}

func packFiles(t *testing.T, dir string) map[string]time.Time {
	m := map[string]time.Time{}
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() && strings.HasSuffix(p, ".pack") {
			m[p] = fi.ModTime()
		}
		return nil
	})
	return m
}

// TestPushNamedRemote uses a remote of an rclone.conf, given by
// --rclone-config and by RCLONE_CONFIG.
func TestPushNamedRemote(t *testing.T) {
	dumps := t.TempDir()
	nightly(t, dumps, "105", 0, "2026_11_20-01_00_00", false)
	store := t.TempDir()
	conf := filepath.Join(t.TempDir(), "rclone.conf")
	os.WriteFile(conf, []byte("[offsite]\ntype = local\n"), 0o600)
	if r := runCLI(t, nil, "push", "--rclone-config", conf, dumps, "offsite:"+store+"/pve"); r.code != 0 {
		t.Fatalf("push to a named remote: %v", r)
	}
	if _, err := os.Stat(filepath.Join(store, "pve", "config")); err != nil {
		t.Fatal(err)
	}
	t.Setenv("RCLONE_CONFIG", conf)
	if r := exe(t, nil, "snapshots", "offsite:"+store+"/pve"); r.code != 0 || !strings.Contains(r.stdout, "qemu-105") {
		t.Fatalf("RCLONE_CONFIG: %v", r)
	}
}

// TestPruneCLI: prune --dry-run changes nothing, prune removes by the
// rules (the locks: TestLocksCLI).
func TestPruneCLI(t *testing.T) {
	dumps := t.TempDir()
	rem := filepath.Join(t.TempDir(), "remote")
	for i, stamp := range []string{"2026_11_18-01_00_00", "2026_11_19-01_00_00", "2026_11_20-01_00_00", "2026_11_20-13_00_00"} {
		nightly(t, dumps, "105", uint64(i), stamp, false)
	}
	if r := runCLI(t, nil, "push", dumps, rem); r.code != 0 {
		t.Fatalf("push: %v", r)
	}
	r := runCLI(t, nil, "prune", "--dry-run", "--json", "--keep-daily", "2", rem)
	var out struct {
		Backups []struct {
			Backup string
			Keep   bool
			Reason string
		}
		GC *struct {
			Before int64 `json:"bytes_before"`
			After  int64 `json:"bytes_after"`
		}
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &out) != nil || len(out.Backups) != 4 {
		t.Fatalf("prune --dry-run: %v", r)
	}
	// The dry run estimates what removing the two backups frees.
	if out.GC == nil || out.GC.After >= out.GC.Before || out.GC.After <= 0 {
		t.Errorf("prune --dry-run: no estimate of the freed bytes: %s", r.stdout)
	}
	want := map[string]string{"2026_11_18-01_00_00": "", "2026_11_19-01_00_00": "keep-daily", "2026_11_20-01_00_00": "", "2026_11_20-13_00_00": "keep-daily"}
	for _, b := range out.Backups {
		stamp := strings.TrimPrefix(b.Backup, "vzdump-qemu-105-")
		if b.Keep != (want[stamp] != "") || (b.Keep && b.Reason != want[stamp]) {
			t.Errorf("%s: keep=%v (%s)", b.Backup, b.Keep, b.Reason)
		}
	}
	if s := runCLI(t, nil, "snapshots", "--json", rem); strings.Count(s.stdout, `"backup"`) != 4 {
		t.Fatalf("dry run removed backups: %v", s)
	}
	if r = runCLI(t, nil, "prune", "--keep-daily", "2", rem); r.code != 0 || !strings.Contains(r.stderr, "removed 2 of 4") {
		t.Fatalf("prune: %v", r)
	}
	if s := runCLI(t, nil, "snapshots", "--json", rem); strings.Count(s.stdout, `"backup"`) != 2 {
		t.Fatalf("after prune: %v", s)
	}
	if c := runCLI(t, nil, "check", "--read-data", rem); c.code != 0 {
		t.Fatalf("check after prune: %v", c)
	}
}

// TestLocksCLI: a live exclusive lock blocks push, a stale one does not,
// and unlock removes stale locks. It was the second half of
// TestPruneAndLocksCLI (now TestPruneCLI); it runs the binary, not vmasync in this process
// (whose rclone setup is global), so that it can run in parallel: it
// mostly waits, for the lock (0.5 to 2 s).
func TestLocksCLI(t *testing.T) {
	t.Parallel()
	dumps := t.TempDir()
	rem := filepath.Join(t.TempDir(), "remote")
	for i, stamp := range []string{"2026_11_19-01_00_00", "2026_11_20-13_00_00"} {
		nightly(t, dumps, "105", uint64(i), stamp, false)
	}
	if r := exe(t, nil, "push", dumps, rem); r.code != 0 {
		t.Fatalf("push: %v", r)
	}

	// A live exclusive lock (pid 1 on this host is alive).
	host, _ := os.Hostname()
	os.MkdirAll(filepath.Join(rem, "locks"), 0o755)
	now := time.Now().UTC().Format(time.RFC3339)
	live := filepath.Join(rem, "locks", "live.lock")
	os.WriteFile(live, []byte(`{"exclusive":true,"host":"`+host+`","pid":1,"command":"vmasync prune","time":"`+now+`","refreshed":"`+now+`"}`), 0o644)
	nightly(t, dumps, "105", 9, "2026_11_21-01_00_00", false)
	r := exe(t, nil, "push", "--lock-wait", "1s", dumps, rem)
	if r.code != 1 {
		t.Fatalf("push under a live exclusive lock: %v", r)
	}
	if !strings.HasPrefix(r.stderr, "vmasync: waiting up to 1s for the exclusive lock by vmasync prune") {
		t.Errorf("push under a live lock did not say it waits for it: %q", r.stderr)
	}
	r.stderr = r.stderr[strings.IndexByte(r.stderr, '\n')+1:]
	wantOneErrorLine(t, r, "locked", "exclusive lock by vmasync prune")
	// The same lock, stale: a process that does not exist.
	os.WriteFile(live, []byte(`{"exclusive":true,"host":"`+host+`","pid":999999999,"command":"vmasync prune","time":"`+now+`","refreshed":"`+now+`"}`), 0o644)
	if r = exe(t, nil, "push", "--lock-wait", "1s", dumps, rem); r.code != 0 {
		t.Fatalf("push with a stale lock: %v", r)
	}
	if r = exe(t, nil, "unlock", rem); r.code != 0 || !strings.Contains(r.stderr, "removed exclusive lock") {
		t.Fatalf("unlock: %v", r)
	}
	if _, err := os.Stat(live); !os.IsNotExist(err) {
		t.Fatal("unlock left the stale lock")
	}
}

// TestPushRcloneOptions: --bwlimit takes rclone's rates and timetables;
// bad values are one clear error line.
func TestPushRcloneOptions(t *testing.T) {
	dumps := t.TempDir()
	nightly(t, dumps, "105", 0, "2026_11_20-01_00_00", false)
	rem := filepath.Join(t.TempDir(), "remote")
	if r := runCLI(t, nil, "push", "--bwlimit", "00:00,100M 23:59,off", "-o", "contimeout=5s", dumps, rem); r.code != 0 {
		t.Fatalf("push with a bwlimit timetable: %v", r)
	}
	for _, c := range []struct {
		args []string
		code int
		err  string
	}{
		{[]string{"push", "--bwlimit", "fast", dumps, rem}, 2, "bwlimit"},
		{[]string{"push", "-o", "transfers=abc", dumps, rem}, 2, "transfers"},
		{[]string{"push", "-o", "novalue", dumps, rem}, 2, "NAME=VALUE"},
		{[]string{"push", "--transfers", "0", dumps, rem}, 2, "--transfers"},
	} {
		r := runCLI(t, nil, c.args...)
		if r.code != c.code {
			t.Errorf("%q: exit %d, want %d: %v", c.args, r.code, c.code, r)
			continue
		}
		wantOneErrorLine(t, r, c.err)
	}
}

// TestPushCompressionFlag: a known level pushes, an unknown one is a usage
// error that touches nothing.
func TestPushCompressionFlag(t *testing.T) {
	dumps, rem := t.TempDir(), filepath.Join(t.TempDir(), "remote")
	nightly(t, dumps, "107", 0, "2026_11_20-01_00_00", true)
	if r := runCLI(t, nil, "push", "--compression", "zstd-max", dumps, rem); r.code != 2 || !strings.Contains(r.stderr, "unknown compression level") {
		t.Fatalf("unknown level: %v", r)
	}
	if _, err := os.Stat(rem); !os.IsNotExist(err) {
		t.Fatalf("a refused push created the remote: %v", err)
	}
	if r := runCLI(t, nil, "push", "--compression", "better", dumps, rem); r.code != 0 {
		t.Fatalf("push --compression better: %v", r)
	}
	if r := runCLI(t, nil, "check", "--read-data", rem); r.code != 0 {
		t.Fatalf("check: %v", r)
	}
}
