package restictest

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLowerKDF rewraps a key file written as restic writes one (made here
// with this package's own sealing; that real restic opens the result is
// what the restic tests of chunkplan and cmd/vmasync rely on and check
// with every restic command they run) and checks that the master key
// survives under the cheap parameters and that a wrong password is
// refused.
func TestLowerKDF(t *testing.T) {
	t.Parallel()
	repo := t.TempDir()
	os.Mkdir(filepath.Join(repo, "keys"), 0o700)
	master := []byte(`{"mac":{"k":"a2V5a2V5a2V5a2V5a2V5aw==","r":"cnJycnJycnJycnJycnJycg=="},"encrypt":"ZW5jZW5jZW5jZW5jZW5jZW5jZW5jZW5jZW5jZW5jZW4="}`)
	k := key{KDF: "scrypt", N: 2048, R: 8, P: 2, Salt: bytes.Repeat([]byte{7}, saltLen), Created: json.RawMessage(`"2026-12-03T22:40:20Z"`)}
	u, err := derive("pw", k.Salt, k.N, k.R, k.P)
	if err != nil {
		t.Fatal(err)
	}
	k.Data = u.seal(master)
	raw, _ := json.Marshal(k)
	os.WriteFile(filepath.Join(repo, "keys", "0123"), raw, 0o400)

	if err := LowerKDF(repo, "wrong"); err == nil || !strings.Contains(err.Error(), "MAC") {
		t.Fatalf("LowerKDF with a wrong password: %v", err)
	}
	if err := LowerKDF(repo, "pw"); err != nil {
		t.Fatal(err)
	}
	names, _ := filepath.Glob(filepath.Join(repo, "keys", "*"))
	if len(names) != 1 || filepath.Base(names[0]) == "0123" {
		t.Fatalf("key files %v", names)
	}
	raw, _ = os.ReadFile(names[0])
	var got key
	if err := json.Unmarshal(raw, &got); err != nil || got.N != lowN || got.R != lowR || got.P != lowP || len(got.Salt) != saltLen {
		t.Fatalf("key file %s: %v", raw, err)
	}
	low, _ := derive("pw", got.Salt, got.N, got.R, got.P)
	plain, err := low.open(got.Data)
	if err != nil || !bytes.Equal(plain, master) {
		t.Fatalf("master key after LowerKDF: %q, %v", plain, err)
	}
	got.Data[20] ^= 1
	if _, err := low.open(got.Data); err == nil {
		t.Fatal("a damaged key opened")
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
