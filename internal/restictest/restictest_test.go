package restictest

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// open decrypts data = nonce (16) || AES-256-CTR ciphertext || MAC (16).
func (k *cryptoKey) open(data []byte) ([]byte, error) {
	if len(data) < 32 {
		return nil, errors.New("key data too short")
	}
	nonce, ct, tag := data[:16], data[16:len(data)-16], data[len(data)-16:]
	if m := k.mac(nonce, ct); subtle.ConstantTimeCompare(m[:], tag) != 1 {
		return nil, errors.New("wrong password (MAC mismatch)")
	}
	c, _ := aes.NewCipher(k.enc[:])
	out := make([]byte, len(ct))
	cipher.NewCTR(c, nonce).XORKeyStream(out, ct)
	return out, nil
}

// TestInit opens what Init wrote as restic does (key file, then the
// config with the master key), and then with real restic: cat config,
// a backup and check.
func TestInit(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "repo")
	pol, err := Init(dir, "pw")
	if err != nil {
		t.Fatal(err)
	}
	names, _ := filepath.Glob(filepath.Join(dir, "keys", "*"))
	if len(names) != 1 {
		t.Fatalf("key files %v", names)
	}
	raw, _ := os.ReadFile(names[0])
	var k key
	if err := json.Unmarshal(raw, &k); err != nil || k.KDF != "scrypt" || k.N != lowN || len(k.Salt) != saltLen {
		t.Fatalf("key file %s: %v", raw, err)
	}
	if wrong, _ := derive("other", k.Salt, k.N, k.R, k.P); wrong != nil {
		if _, err := wrong.open(k.Data); err == nil {
			t.Fatal("the key opened with a wrong password")
		}
	}
	user, _ := derive("pw", k.Salt, k.N, k.R, k.P)
	mj, err := user.open(k.Data)
	if err != nil {
		t.Fatal(err)
	}
	var m masterJSON
	if err := json.Unmarshal(mj, &m); err != nil || len(m.MAC.K) != 16 || len(m.MAC.R) != 16 || len(m.Encrypt) != 32 {
		t.Fatalf("master key %s: %v", mj, err)
	}
	var master cryptoKey
	copy(master.enc[:], m.Encrypt)
	copy(master.macK[:], m.MAC.K)
	copy(master.macR[:], m.MAC.R)
	ct, _ := os.ReadFile(filepath.Join(dir, "config"))
	cj, err := master.open(ct)
	if err != nil {
		t.Fatal(err)
	}
	var cfg configJSON
	if err := json.Unmarshal(cj, &cfg); err != nil || cfg.Version != 2 || len(cfg.ID) != 64 || cfg.Pol != pol || !pol.Irreducible() {
		t.Fatalf("config %s: %v", cj, err)
	}

	if _, err := exec.LookPath("restic"); err != nil {
		t.Fatalf("restic not found (%v): apt-get install restic", err)
	}
	run := func(password string, stdin []byte, args ...string) (string, error) {
		cmd := exec.Command("restic", args...)
		cmd.Env = append(os.Environ(), "RESTIC_REPOSITORY="+dir, "RESTIC_PASSWORD="+password, "RESTIC_CACHE_DIR="+filepath.Join(t.TempDir(), "cache"))
		cmd.Stdin = bytes.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run("pw", nil, "cat", "config"); err != nil || !strings.Contains(out, cfg.ID) {
		t.Fatalf("restic cat config: %v\n%s", err, out)
	}
	if out, err := run("other", nil, "cat", "config"); err == nil {
		t.Fatalf("restic opened the repository with a wrong password:\n%s", out)
	}
	if out, err := run("pw", bytes.Repeat([]byte("restictest "), 1<<16), "backup", "--stdin", "--stdin-filename", "x"); err != nil {
		t.Fatalf("restic backup: %v\n%s", err, out)
	}
	if out, err := run("pw", nil, "check", "--read-data"); err != nil {
		t.Fatalf("restic check: %v\n%s", err, out)
	}
}

func TestCopyRepo(t *testing.T) {
	t.Parallel()
	src, dst := t.TempDir(), filepath.Join(t.TempDir(), "copy")
	os.MkdirAll(filepath.Join(src, "data", "00"), 0o700)
	os.WriteFile(filepath.Join(src, "config"), []byte("cfg"), 0o400)
	os.WriteFile(filepath.Join(src, "data", "00", "x"), []byte("x"), 0o400)
	if err := CopyRepo(src, dst); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"config", "data/00/x"} {
		a, _ := os.ReadFile(filepath.Join(src, f))
		b, err := os.ReadFile(filepath.Join(dst, f))
		if err != nil || !bytes.Equal(a, b) {
			t.Fatalf("%s: %q vs %q (%v)", f, a, b, err)
		}
	}
}
