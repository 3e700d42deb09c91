// Package restictest makes repositories of the real restic binary for
// the tests that check vmasync's dedup predictions against it. Its one
// job: a repository whose key derivation is cheap, as restic's own tests
// make theirs (TestUseLowSecurityKDFParameters).
//
// `restic init` calibrates scrypt to half a second of CPU on the machine
// (and spends 3 s doing so), and every later restic command pays the
// half second again to open the repository: the restic tests spent most
// of their CPU there. Init writes what `restic init --repository-version
// 2` writes (restic's design document, "Repository Format"): the config
// (version, id, a random irreducible chunker polynomial) encrypted with a
// new master key, and a key file that wraps the master key under scrypt
// N=1024, r=8, p=1. Every backup, listing and check is then restic's own.
package restictest

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/restic/chunker"
	"golang.org/x/crypto/poly1305"
	"golang.org/x/crypto/scrypt"
)

// The cheap scrypt parameters of the key Init writes.
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

// cryptoKey is restic's crypto.Key, for the master key and for the user
// key scrypt derives from the password: an AES-256 key, then the
// Poly1305-AES MAC key k||r (restic's internal/crypto.KDF).
type cryptoKey struct {
	enc  [32]byte
	macK [16]byte
	macR [16]byte
}

// masterJSON is the master key as a key file's data holds it, encrypted
// with the user key (restic's crypto.Key in JSON).
type masterJSON struct {
	MAC struct {
		K []byte `json:"k"`
		R []byte `json:"r"`
	} `json:"mac"`
	Encrypt []byte `json:"encrypt"`
}

// configJSON is the repository's config object.
type configJSON struct {
	Version int         `json:"version"`
	ID      string      `json:"id"`
	Pol     chunker.Pol `json:"chunker_polynomial"`
}

func derive(password string, salt []byte, n, r, p int) (*cryptoKey, error) {
	b, err := scrypt.Key([]byte(password), salt, n, r, p, 64)
	if err != nil {
		return nil, err
	}
	var k cryptoKey
	copy(k.enc[:], b[:32])
	copy(k.macK[:], b[32:48])
	copy(k.macR[:], b[48:64])
	return &k, nil
}

// mac is restic's Poly1305-AES: the one-time key is r || AES_k(nonce).
func (k *cryptoKey) mac(nonce, msg []byte) [16]byte {
	var pk [32]byte
	c, _ := aes.NewCipher(k.macK[:])
	c.Encrypt(pk[16:], nonce)
	copy(pk[:16], k.macR[:])
	var out [16]byte
	poly1305.Sum(&out, msg, &pk)
	return out
}

func (k *cryptoKey) seal(plain []byte) []byte {
	nonce := make([]byte, 16)
	rand.Read(nonce)
	c, _ := aes.NewCipher(k.enc[:])
	ct := make([]byte, len(plain))
	cipher.NewCTR(c, nonce).XORKeyStream(ct, plain)
	m := k.mac(nonce, ct)
	return append(append(nonce, ct...), m[:]...)
}

// Init makes a new, empty restic repository (format version 2) in the
// directory dir (which need not exist) for password, and returns its
// chunker polynomial.
func Init(dir, password string) (chunker.Pol, error) {
	pol, err := chunker.RandomPolynomial()
	if err != nil {
		return 0, err
	}
	var master cryptoKey
	rand.Read(master.enc[:])
	rand.Read(master.macK[:])
	rand.Read(master.macR[:])
	id := make([]byte, 32)
	rand.Read(id)
	cfg, err := json.Marshal(configJSON{2, hex.EncodeToString(id), pol})
	if err != nil {
		return 0, err
	}
	var m masterJSON
	m.MAC.K, m.MAC.R, m.Encrypt = master.macK[:], master.macR[:], master.enc[:]
	mj, err := json.Marshal(m)
	if err != nil {
		return 0, err
	}
	k := key{KDF: "scrypt", N: lowN, R: lowR, P: lowP, Salt: make([]byte, saltLen), Username: "restictest", Hostname: "restictest"}
	k.Created, _ = json.Marshal(time.Now())
	rand.Read(k.Salt)
	user, err := derive(password, k.Salt, k.N, k.R, k.P)
	if err != nil {
		return 0, err
	}
	k.Data = user.seal(mj)
	kj, err := json.Marshal(k)
	if err != nil {
		return 0, err
	}
	dirs := []string{"keys", "index", "locks", "snapshots"}
	for i := range 256 {
		dirs = append(dirs, filepath.Join("data", fmt.Sprintf("%02x", i)))
	}
	for _, d := range dirs {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return 0, err
		}
	}
	// The config is named "config"; key files by the SHA-256 of their
	// bytes. Both are read-only, as restic writes them.
	if err := os.WriteFile(filepath.Join(dir, "config"), master.seal(cfg), 0o400); err != nil {
		return 0, err
	}
	sum := sha256.Sum256(kj)
	return pol, os.WriteFile(filepath.Join(dir, "keys", hex.EncodeToString(sum[:])), kj, 0o400)
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
