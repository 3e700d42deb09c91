package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rclone/rclone/fs/config/obscure"
)

// TestObscure: vmasync obscure's output is what rclone reveals as the
// password, from the argument, from stdin and from "-".
func TestObscure(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		stdin string
		args  []string
		want  string
	}{
		{"", []string{"obscure", "a long passphrase"}, "a long passphrase"},
		{"from stdin\n", []string{"obscure"}, "from stdin"},
		{"dash\r\nsecond line\n", []string{"obscure", "-"}, "dash"},
		{"no newline", []string{"obscure"}, "no newline"},
	} {
		r := runCLI(t, strings.NewReader(c.stdin), c.args...)
		if r.code != 0 || r.stderr != "" {
			t.Fatalf("%q: %v", c.args, r)
		}
		got, err := obscure.Reveal(strings.TrimSuffix(r.stdout, "\n"))
		if err != nil || got != c.want {
			t.Errorf("%q: revealed %q (%v), want %q", c.args, got, err, c.want)
		}
	}
	// Two runs obscure differently (random IV), both reveal the same.
	a := runCLI(t, nil, "obscure", "x").stdout
	b := runCLI(t, nil, "obscure", "x").stdout
	if a == b {
		t.Errorf("obscure is not randomised: %q twice", a)
	}
	r := runCLI(t, nil, "obscure")
	if r.code != 2 {
		t.Fatalf("obscure without a password: %v", r)
	}
	wantOneErrorLine(t, r, "no password")
	if r := runCLI(t, nil, "obscure", "a", "b"); r.code != 2 {
		t.Fatalf("obscure a b: %v", r)
	}
}

// TestConfigEditor runs rclone's config editor in the binary with answers
// on stdin: it lists the remotes of --rclone-config, deletes one, creates a
// local one, and fails cleanly when the input ends.
func TestConfigEditor(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "rclone.conf")
	os.WriteFile(conf, []byte("[offsite]\ntype = local\n\n[old]\ntype = local\n"), 0o600)

	r := exe(t, strings.NewReader("q\n"), "config", "--rclone-config", conf)
	if r.code != 0 || !strings.Contains(r.stdout, "Current remotes:") || !strings.Contains(r.stdout, "offsite") || !strings.Contains(r.stderr, "rclone config file: "+conf) {
		t.Fatalf("config, quit: %v", r)
	}

	// d(elete) old, n(ew) remote "nas" of type local, no advanced
	// options, keep it, q(uit).
	r = exe(t, strings.NewReader("d\nold\nn\nnas\nlocal\nn\ny\nq\n"), "config", "--rclone-config", conf)
	if r.code != 0 {
		t.Fatalf("config, delete and new: %v", r)
	}
	b, _ := os.ReadFile(conf)
	if s := string(b); strings.Contains(s, "[old]") || !strings.Contains(s, "[offsite]") || !strings.Contains(s, "[nas]\ntype = local\n") {
		t.Fatalf("rclone.conf after config:\n%s\n%v", s, r)
	}

	// The input ends before q: exit 1, one error line, nothing changed.
	r = exe(t, strings.NewReader(""), "config", "--rclone-config", conf)
	if r.code != 1 {
		t.Fatalf("config with no input: %v", r)
	}
	if !strings.Contains(r.stderr, "vmasync: config: standard input ended") {
		t.Errorf("config with no input: %v", r)
	}
	if b2, _ := os.ReadFile(conf); string(b2) != string(b) {
		t.Errorf("rclone.conf changed:\n%s", b2)
	}
	// And in-process, with RCLONE_CONFIG naming a file that does not exist
	// yet: the empty-config menu.
	t.Setenv("RCLONE_CONFIG", filepath.Join(t.TempDir(), "new.conf"))
	if r := runCLI(t, strings.NewReader("q\n"), "config"); r.code != 0 {
		t.Fatalf("config in-process: %v", r)
	}
}

func TestMaskRemote(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"/srv/backup", "/srv/backup"},
		{"offsite:pve", "offsite:pve"},
		{":sftp,host=x,user=pve,pass=c2VjcmV0,key_file=/root/.ssh/id_ed25519:pve",
			":sftp,host=x,user=pve,pass=***,key_file=***:pve"},
		{":sftp,host=x,key_file='/root/my key',known_hosts_file=/root/.ssh/known_hosts,key_use_agent=true:/a/b",
			":sftp,host=x,key_file=***,known_hosts_file=/root/.ssh/known_hosts,key_use_agent=true:/a/b"},
		{":s3,provider=Rclone,endpoint='http://127.0.0.1:9000',access_key_id=AK,secret_access_key=SK:bucket/pve",
			":s3,provider=Rclone,endpoint='http://127.0.0.1:9000',access_key_id=***,secret_access_key=***:bucket/pve"},
		{"offsite,pass=xyz:pve", "offsite,pass=***:pve"},
		{":crypt,remote=/srv/x,password=P1,password2=P2:", ":crypt,remote=/srv/x,password=***,password2=***:"},
	} {
		if got := maskRemote(c.in); got != c.want {
			t.Errorf("maskRemote(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	// An error about a connection string does not show its secrets.
	r := runCLI(t, nil, "snapshots", "--rclone-config", os.DevNull, ":nosuchbackend,pass=hunter2,key_file=/k:pve")
	if r.code != 1 || strings.Contains(r.stderr, "hunter2") || strings.Contains(r.stderr, "/k") {
		t.Fatalf("error shows a secret: %v", r)
	}
}
