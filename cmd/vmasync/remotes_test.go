package main

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/rclone/rclone/cmd/serve/ftp" // registers serve/start type ftp
	"github.com/rclone/rclone/fs/config/obscure"
	"github.com/rclone/rclone/fs/rc"
)

// TestCryptRemote pushes two nights through an rclone crypt remote over a
// local directory, with passwords made by vmasync obscure, pulls them back
// byte for byte, and checks that the directory shows no dump name and no
// VMA data: neither in object names nor in their bytes.
func TestCryptRemote(t *testing.T) {
	dumps := t.TempDir()
	store := t.TempDir()
	pw := func(s string) string {
		r := runCLI(t, nil, "obscure", s)
		if r.code != 0 {
			t.Fatalf("obscure: %v", r)
		}
		return strings.TrimSpace(r.stdout)
	}
	conf := filepath.Join(t.TempDir(), "rclone.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf(`[store]
type = local

[secret]
type = crypt
remote = store:%s
filename_encryption = standard
directory_name_encryption = true
password = %s
password2 = %s
`, store, pw("a long passphrase"), pw("another long passphrase"))), 0o600)

	d1 := nightly(t, dumps, "105", 0, "2026_11_20-01_00_00", true)
	if r := runCLI(t, nil, "push", "--rclone-config", conf, dumps, "secret:pve"); r.code != 0 {
		t.Fatalf("push night 1: %v", r)
	}
	d2 := nightly(t, dumps, "105", 1, "2026_11_21-01_00_00", false)
	r := runCLI(t, nil, "push", "--rclone-config", conf, "--json", dumps, "secret:pve")
	if r.code != 0 || !strings.Contains(r.stdout, `"status": "pushed"`) {
		t.Fatalf("push night 2: %v", r)
	}
	if r := runCLI(t, nil, "snapshots", "--rclone-config", conf, "secret:pve"); r.code != 0 || strings.Count(r.stdout, "vzdump-qemu-105-") != 2 {
		t.Fatalf("snapshots: %v", r)
	}
	for _, c := range []struct{ sel, dump string }{{"105@2026_11_20-01_00_00", d1}, {"105@latest", d2}} {
		got := runCLI(t, nil, "pull", "--rclone-config", conf, "secret:pve", c.sel, "-")
		want := runCLI(t, nil, "optimize", "--force", c.dump, "-")
		if got.code != 0 || want.code != 0 || len(want.stdout) == 0 || got.stdout != want.stdout {
			t.Fatalf("pull %s: %d bytes (exit %d, %s), optimize gives %d", c.sel, len(got.stdout), got.code, got.stderr, len(want.stdout))
		}
	}
	if r := runCLI(t, nil, "check", "--rclone-config", conf, "--read-data", "secret:pve"); r.code != 0 {
		t.Fatalf("check: %v", r)
	}

	// The directory under crypt: only encrypted names and bytes.
	if found, n := plainTraces(t, store); len(found) > 0 || n < 4 {
		t.Errorf("%d objects under the crypt remote; plain traces: %q", n, found)
	}
	// The same scan finds them in a repository without crypt.
	plain := filepath.Join(t.TempDir(), "plain")
	if r := runCLI(t, nil, "push", dumps, plain); r.code != 0 {
		t.Fatalf("push without crypt: %v", r)
	}
	if found, _ := plainTraces(t, plain); len(found) == 0 {
		t.Error("the scan finds no dump name or VMA header in a repository without crypt")
	}
	// Without crypt the directory is no repository.
	if r := runCLI(t, nil, "snapshots", "--rclone-config", conf, "store:"+store+"/pve"); r.code == 0 {
		t.Fatalf("the directory under crypt reads as a repository: %v", r)
	}
}

// plainTraces lists what in the objects under dir shows a dump: a dump
// name in an object's name or bytes, the VMA header's magic and version,
// a config or disk name. n counts the objects.
func plainTraces(t *testing.T, dir string) (found []string, n int) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if strings.Contains(rel, "vzdump") || strings.Contains(rel, "qemu-") {
			found = append(found, "name "+rel)
		}
		if d.IsDir() {
			return nil
		}
		n++
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		// Long enough that encrypted bytes do not show them by chance.
		for _, w := range []string{"vzdump-qemu-", "VMA\x00\x00\x00\x00\x01", "qemu-server.conf", "drive-scsi0"} {
			if bytes.Contains(b, []byte(w)) {
				found = append(found, fmt.Sprintf("%s holds %q", rel, w))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found, n
}

// TestFTPRemote: a backend outside the nine vmasync was first built with
// works. rclone's own FTP server runs in-process on 127.0.0.1, serving a
// temporary directory; push and snapshots use an ftp connection string,
// whose password vmasync does not show.
func TestFTPRemote(t *testing.T) {
	ctx := context.Background()
	// The FTP server does not say which port it got for :0: take a free one.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	served := t.TempDir()
	out, err := rc.Calls.Get("serve/start").Fn(ctx, rc.Params{
		"type": "ftp", "fs": served, "addr": addr,
		"user": "vm", "pass": "secret", "passive_port": "30000-32000",
	})
	if err != nil {
		t.Fatalf("serve/start ftp: %v", err)
	}
	t.Cleanup(func() { _, _ = rc.Calls.Get("serve/stop").Fn(ctx, rc.Params{"id": out["id"]}) })
	host, port, _ := net.SplitHostPort(addr)
	pass := obscure.MustObscure("secret")
	rem := fmt.Sprintf(":ftp,host=%s,port=%s,user=vm,pass=%s:pve", host, port, pass)

	dumps := t.TempDir()
	nightly(t, dumps, "107", 0, "2026_11_20-01_00_00", true)
	r := runCLI(t, nil, "push", "--rclone-config", os.DevNull, dumps, rem)
	if r.code != 0 {
		t.Fatalf("push to ftp: %v", r)
	}
	if strings.Contains(r.stderr+r.stdout, pass) || !strings.Contains(r.stderr, "pass=***") {
		t.Errorf("push shows the connection string's password, or not the masked string: %v", r)
	}
	nightly(t, dumps, "107", 1, "2026_11_21-01_00_00", false)
	if r := runCLI(t, nil, "push", "--rclone-config", os.DevNull, dumps, rem); r.code != 0 {
		t.Fatalf("push night 2 to ftp: %v", r)
	}
	r = runCLI(t, nil, "snapshots", "--rclone-config", os.DevNull, rem)
	if r.code != 0 || strings.Count(r.stdout, "vzdump-qemu-107-") != 2 {
		t.Fatalf("snapshots on ftp: %v", r)
	}
	if _, err := os.Stat(filepath.Join(served, "pve", "config")); err != nil {
		t.Fatalf("the repository is not in the FTP server's directory: %v", err)
	}
}
