package scripts_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const nightlyPath = "/usr/local/lib/vmasync/vmasync-nightly"

// TestSystemdUnitsVerify runs systemd-analyze verify on the units. verify
// refuses a unit whose ExecStart binary does not exist, so it checks copies
// whose ExecStart points at a temporary executable; it prints unknown keys
// and bad values as warnings with exit 0, so any output naming the units is
// a failure too.
func TestSystemdUnitsVerify(t *testing.T) {
	t.Parallel()
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("systemd-analyze is missing; .ci/run installs the systemd package")
		}
		t.Skip("systemd-analyze is missing (apt-get install systemd)")
	}
	dir := t.TempDir()
	exe := filepath.Join(dir, "vmasync-nightly")
	writeFile(t, exe, "#!/bin/sh\nexit 0\n", 0o755)
	var units []string
	for _, name := range []string{"vmasync-push.service", "vmasync-push.timer"} {
		data, err := os.ReadFile(filepath.Join("systemd", name))
		if err != nil {
			t.Fatal(err)
		}
		text := string(data)
		if strings.HasSuffix(name, ".service") {
			if !strings.Contains(text, "\nExecStart="+nightlyPath+"\n") {
				t.Fatalf("%s: ExecStart is not %s (install.sh puts the runner there)", name, nightlyPath)
			}
			text = strings.Replace(text, "ExecStart="+nightlyPath, "ExecStart="+exe, 1)
		}
		p := filepath.Join(dir, name)
		writeFile(t, p, text, 0o644)
		units = append(units, p)
	}
	cmd := exec.Command(analyze, append([]string{"verify", "--man=no"}, units...)...)
	out, err := cmd.CombinedOutput()
	t.Logf("systemd-analyze verify: err %v, output:\n%s", err, out)
	if err != nil {
		t.Fatalf("systemd-analyze verify failed: %v\n%s", err, out)
	}
	for l := range strings.Lines(string(out)) {
		if strings.Contains(l, "vmasync-push") || strings.Contains(l, dir) {
			t.Errorf("systemd-analyze: %s", strings.TrimSpace(l))
		}
	}

	// The same check must catch a broken unit, or it proves nothing.
	bad := filepath.Join(t.TempDir(), "vmasync-push.service")
	data, _ := os.ReadFile(units[0])
	writeFile(t, bad, strings.Replace(string(data), "Nice=10", "Nicee=10", 1), 0o644)
	out, _ = exec.Command(analyze, "verify", "--man=no", bad).CombinedOutput()
	if !strings.Contains(string(out), "Unknown key") {
		t.Errorf("systemd-analyze verify did not notice an unknown key: %q", out)
	}
}

func TestUnitsAndConfigAgree(t *testing.T) {
	t.Parallel()
	service, err := os.ReadFile("systemd/vmasync-push.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Type=oneshot", "Environment=VMASYNC_CONF=/etc/vmasync.conf", "Nice=", "IOSchedulingClass="} {
		if !strings.Contains(string(service), want) {
			t.Errorf("vmasync-push.service lacks %q", want)
		}
	}
	timer, err := os.ReadFile("systemd/vmasync-push.timer")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"OnCalendar=", "Persistent=true", "RandomizedDelaySec=", "WantedBy=timers.target"} {
		if !strings.Contains(string(timer), want) {
			t.Errorf("vmasync-push.timer lacks %q", want)
		}
	}
	// The example config must be valid sh and leave the defaults alone.
	out, err := exec.Command("sh", "-c", `. ./vmasync.conf.example && echo "$DUMPDIR|$REMOTE"`).CombinedOutput()
	if err != nil || string(out) != "/var/lib/vz/dump|\n" {
		t.Errorf("sourcing vmasync.conf.example: %v, %q", err, out)
	}
}

func TestInstallIntoDestdir(t *testing.T) {
	t.Parallel()
	dest := t.TempDir()
	bin := filepath.Join(t.TempDir(), "vmasync")
	writeFile(t, bin, "#!/bin/sh\necho fake vmasync\n", 0o755)
	install := func() string {
		cmd := exec.Command("sh", script(t, "install.sh"))
		cmd.Env = append(os.Environ(), "DESTDIR="+dest, "VMASYNC_BIN="+bin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("install.sh: %v\n%s", err, out)
		}
		return string(out)
	}
	out := install()
	want := map[string]os.FileMode{
		"usr/local/bin/vmasync":                            0o755,
		"usr/local/lib/vmasync/vzdump-hook":                0o755,
		"usr/local/lib/vmasync/vmasync-nightly":            0o755,
		"etc/systemd/system/vmasync-push.service":          0o644,
		"etc/systemd/system/vmasync-push.timer":            0o644,
		"etc/vmasync.conf":                                 0o600,
		"usr/local/share/doc/vmasync/vmasync.conf.example": 0o644,
		"var/lib/vmasync/queue":                            0o700 | os.ModeDir,
	}
	for p, mode := range want {
		fi, err := os.Stat(filepath.Join(dest, p))
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		if fi.Mode() != mode {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode(), mode)
		}
	}
	if !strings.Contains(out, "script: /usr/local/lib/vmasync/vzdump-hook") {
		t.Errorf("install.sh does not say how to enable the hook:\n%s", out)
	}
	// A second install keeps the admin's config.
	confPath := filepath.Join(dest, "etc/vmasync.conf")
	writeFile(t, confPath, "REMOTE=mine:backups\n", 0o600)
	install()
	if got, _ := os.ReadFile(confPath); string(got) != "REMOTE=mine:backups\n" {
		t.Errorf("second install changed /etc/vmasync.conf to %q", got)
	}
}
