package remote

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	_ "github.com/rclone/rclone/cmd/serve/s3"   // registers serve/start type s3
	_ "github.com/rclone/rclone/cmd/serve/sftp" // registers serve/start type sftp
	"github.com/rclone/rclone/fs/config/obscure"
	"github.com/rclone/rclone/fs/rc"
)

// serve starts one of rclone's in-process servers on 127.0.0.1 and
// returns its address.
func serve(t *testing.T, params rc.Params) string {
	t.Helper()
	ctx := context.Background()
	params["addr"] = "127.0.0.1:0"
	out, err := rc.Calls.Get("serve/start").Fn(ctx, params)
	if err != nil {
		t.Fatalf("serve/start %v: %v", params["type"], err)
	}
	t.Cleanup(func() { _, _ = rc.Calls.Get("serve/stop").Fn(ctx, rc.Params{"id": out["id"]}) })
	return out["addr"].(string)
}

// sshKey makes an ed25519 key pair with ssh-keygen.
func sshKey(t *testing.T, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", p).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	return p
}

func needSSHKeygen(t *testing.T) {
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("ssh-keygen missing in CI (.ci/run installs openssh-server, which brings it)")
		}
		t.Skip("ssh-keygen not installed")
	}
}

func TestPushPullRcloneSFTP(t *testing.T) {
	t.Parallel()
	needSSHKeygen(t)
	keys := t.TempDir()
	host := sshKey(t, keys, "host")
	addr := serve(t, rc.Params{"type": "sftp", "fs": t.TempDir(), "user": "vm", "pass": "secret", "authorized_keys": "", "key": []string{host}})
	h, p, _ := net.SplitHostPort(addr)
	exercise(t, fmt.Sprintf(":sftp,host=%s,port=%s,user=vm,pass=%s:pve", h, p, obscure.MustObscure("secret")))
}

func TestPushPullRcloneS3(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "bucket"), 0o755); err != nil {
		t.Fatal(err)
	}
	addr := serve(t, rc.Params{"type": "s3", "fs": dir, "auth_key": []string{"vmasync,secretkey"}})
	exercise(t, fmt.Sprintf(":s3,provider=Rclone,endpoint='http://%s',access_key_id=vmasync,secret_access_key=secretkey:bucket/pve", addr))
}

// TestPushPullOpenSSH runs against Debian's OpenSSH sshd on 127.0.0.1,
// started with temporary keys (ecosystem reference §2.2).
func TestPushPullOpenSSH(t *testing.T) {
	t.Parallel()
	const sshd = "/usr/sbin/sshd"
	if _, err := os.Stat(sshd); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("sshd missing in CI (.ci/run installs openssh-server)")
		}
		t.Skip("openssh-server not installed")
	}
	needSSHKeygen(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root (sshd privilege separation)")
	}
	d := t.TempDir()
	hostKey := sshKey(t, d, "host_ed25519")
	client := sshKey(t, d, "client_ed25519")
	pub, err := os.ReadFile(client + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, "authorized_keys"), pub, 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cfg := filepath.Join(d, "sshd_config")
	conf := fmt.Sprintf(`ListenAddress 127.0.0.1:%d
HostKey %s
PidFile %s/sshd.pid
AuthorizedKeysFile %s/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
LogLevel ERROR
`, port, hostKey, d, d)
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sshd, "-D", "-e", "-f", cfg)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	for i := 0; ; i++ {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			break
		}
		if i > 100 {
			t.Fatalf("sshd did not start listening: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	hostPub, err := os.ReadFile(hostKey + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	var kt, kb string
	fmt.Sscan(string(hostPub), &kt, &kb)
	kh := filepath.Join(d, "known_hosts")
	if err := os.WriteFile(kh, []byte(fmt.Sprintf("[127.0.0.1]:%d %s %s\n", port, kt, kb)), 0o600); err != nil {
		t.Fatal(err)
	}
	exercise(t, fmt.Sprintf(":sftp,host=127.0.0.1,port=%d,user=root,key_file='%s',known_hosts_file='%s',hashes='md5,sha256':%s", port, client, kh, filepath.Join(d, "remote")))
}
