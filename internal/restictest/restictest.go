// Package restictest prepares repositories of the real restic binary for
// the tests that check vmasync's dedup predictions against it. Its one
// job: make restic's key derivation cheap in a repository made for a
// test, as restic's own tests do (TestUseLowSecurityKDFParameters).
//
// restic init calibrates scrypt to half a second of CPU on this machine
// and every later restic command pays that to open the repository; a
// test that runs restic a dozen times spent most of its CPU there. After
// `restic init`, LowerKDF replaces the repository's key with one that
// wraps the same master key under scrypt N=1024, r=8, p=1. Everything
// else (config, chunker polynomial, data format) is restic's own.
package restictest

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/crypto/poly1305"
	"golang.org/x/crypto/scrypt"
)

// The cheap parameters LowerKDF writes.
const (
	lowN, lowR, lowP = 1024, 8, 1
	saltLen          = 64 // restic refuses other salt lengths
)

// key is a restic key file (restic's internal/repository.Key).
type key struct {
	Created  json.RawMessage `json:"created"`
	Username string          `json:"username"`
	Hostname string          `json:"hostname"`
	KDF      string          `json:"kdf"`
	N        int             `json:"N"`
	R        int             `json:"r"`
	P        int             `json:"p"`
	Salt     []byte          `json:"salt"`
	Data     []byte          `json:"data"`
}

// userKey is what scrypt derives from the password: AES-256 key, then
// the Poly1305-AES MAC key k||r (restic's internal/crypto.KDF).
type userKey struct {
	enc  [32]byte
	macK [16]byte
	macR [16]byte
}

func derive(password string, salt []byte, n, r, p int) (*userKey, error) {
	b, err := scrypt.Key([]byte(password), salt, n, r, p, 64)
	if err != nil {
		return nil, err
	}
	var k userKey
	copy(k.enc[:], b[:32])
	copy(k.macK[:], b[32:48])
	copy(k.macR[:], b[48:64])
	return &k, nil
}

// mac is restic's Poly1305-AES: the one-time key is r || AES_k(nonce).
func (k *userKey) mac(nonce, msg []byte) [16]byte {
	var pk [32]byte
	c, _ := aes.NewCipher(k.macK[:])
	c.Encrypt(pk[16:], nonce)
	copy(pk[:16], k.macR[:])
	var out [16]byte
	poly1305.Sum(&out, msg, &pk)
	return out
}

// open decrypts data = nonce (16) || AES-256-CTR ciphertext || MAC (16).
func (k *userKey) open(data []byte) ([]byte, error) {
	if len(data) < 32 {
		return nil, errors.New("key data too short")
	}
	nonce, ct, tag := data[:16], data[16:len(data)-16], data[len(data)-16:]
	if m := k.mac(nonce, ct); !poly1305Equal(m[:], tag) {
		return nil, errors.New("wrong password (MAC mismatch)")
	}
	c, _ := aes.NewCipher(k.enc[:])
	out := make([]byte, len(ct))
	cipher.NewCTR(c, nonce).XORKeyStream(out, ct)
	return out, nil
}

func (k *userKey) seal(plain []byte) []byte {
	nonce := make([]byte, 16)
	rand.Read(nonce)
	c, _ := aes.NewCipher(k.enc[:])
	ct := make([]byte, len(plain))
	cipher.NewCTR(c, nonce).XORKeyStream(ct, plain)
	m := k.mac(nonce, ct)
	return append(append(nonce, ct...), m[:]...)
}

func poly1305Equal(a, b []byte) bool {
	var d byte
	for i := range a {
		d |= a[i] ^ b[i]
	}
	return d == 0 && len(a) == len(b)
}

// LowerKDF rewrites the one key of the restic repository in dir (a local
// repository just made by `restic init`) to wrap the same master key
// under cheap scrypt parameters, and removes the old key file.
func LowerKDF(dir, password string) error {
	names, err := filepath.Glob(filepath.Join(dir, "keys", "*"))
	if err != nil {
		return err
	}
	if len(names) != 1 {
		return fmt.Errorf("restictest: %d key files in %s, want 1", len(names), dir)
	}
	raw, err := os.ReadFile(names[0])
	if err != nil {
		return err
	}
	var k key
	if err := json.Unmarshal(raw, &k); err != nil {
		return fmt.Errorf("restictest: key file %s: %w", names[0], err)
	}
	if k.KDF != "scrypt" {
		return fmt.Errorf("restictest: key file %s: kdf %q", names[0], k.KDF)
	}
	old, err := derive(password, k.Salt, k.N, k.R, k.P)
	if err != nil {
		return err
	}
	master, err := old.open(k.Data)
	if err != nil {
		return fmt.Errorf("restictest: key file %s: %w", names[0], err)
	}
	k.N, k.R, k.P = lowN, lowR, lowP
	k.Salt = make([]byte, saltLen)
	rand.Read(k.Salt)
	low, err := derive(password, k.Salt, k.N, k.R, k.P)
	if err != nil {
		return err
	}
	k.Data = low.seal(master)
	out, err := json.Marshal(k)
	if err != nil {
		return err
	}
	// Key files are named by the SHA-256 of their bytes.
	sum := sha256.Sum256(out)
	name := filepath.Join(dir, "keys", hex.EncodeToString(sum[:]))
	if err := os.WriteFile(name, out, 0o400); err != nil {
		return err
	}
	return os.Remove(names[0])
}

// CopyRepo copies the local repository src to dst: a second repository
// with the same chunker polynomial and key (and the same id: give each
// its own RESTIC_CACHE_DIR). It is what `restic init --from-repo
// --copy-chunker-params` makes, without a second calibration and key.
func CopyRepo(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o700)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o600)
	})
}
