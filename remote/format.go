package remote

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/restic/chunker"

	"github.com/vmasync/vmasync/chunkplan"
	"github.com/vmasync/vmasync/remote/pack"
)

// FormatVersion is the newest repository format this package reads and
// the one it writes into new repositories. A repository with a newer
// version is refused. Version 1 names a pack by the SHA-256 of all its
// bytes, version 2 by the SHA-256 of its tail (header, CRC, length and
// magic), which lists every blob's hash and lengths; a push into a
// version 1 repository keeps naming packs the version 1 way.
const FormatVersion = 3

// Object names and prefixes of the repository layout (docs/repository.md).
const (
	ConfigName   = "config"
	PacksDir     = "packs"
	IndexDir     = "index"
	BackupsDir   = "backups"
	LocksDir     = "locks"
	packSuffix   = ".pack"
	indexSuffix  = ".index"
	ManifestExt  = ".manifest"
	configFormat = "vmasync-repository"
)

// DefaultPackSize is the size at which a pack is closed and uploaded.
const DefaultPackSize = 16 << 20

// ErrNewerFormat is returned for a repository written by a newer vmasync.
var ErrNewerFormat = errors.New("repository format is newer than this vmasync")

// ErrCorruptObject is wrapped by errors about damaged repository objects.
var ErrCorruptObject = pack.ErrCorrupt

// Config is the repository's config object: its format and the chunking
// and compression every push uses.
type Config struct {
	Format      string    `json:"format"`
	Version     int       `json:"version"`
	ID          string    `json:"id"`
	Created     time.Time `json:"created"`
	Chunker     Chunking  `json:"chunker"`
	Compression string    `json:"compression"`
	PackSize    int       `json:"pack_size"`
}

// Chunking is chunkplan.Params as stored in the config (the polynomial
// in hex, so that it reads like restic's).
type Chunking struct {
	Polynomial  string `json:"polynomial"`
	MinSize     uint   `json:"min_size"`
	MaxSize     uint   `json:"max_size"`
	AverageBits int    `json:"average_bits"`
}

// Params returns the chunking parameters, validated.
func (c Chunking) Params() (chunkplan.Params, error) {
	pol, err := strconv.ParseUint(c.Polynomial, 0, 64)
	if err != nil {
		return chunkplan.Params{}, fmt.Errorf("chunker polynomial %q: %w", c.Polynomial, err)
	}
	p := chunkplan.Params{Polynomial: chunker.Pol(pol), MinSize: c.MinSize, MaxSize: c.MaxSize, AverageBits: c.AverageBits}
	return p, p.Validate()
}

func chunkingOf(p chunkplan.Params) Chunking {
	return Chunking{Polynomial: fmt.Sprintf("0x%x", uint64(p.Polynomial)), MinSize: p.MinSize, MaxSize: p.MaxSize, AverageBits: p.AverageBits}
}

func decodeConfig(b []byte) (*Config, error) {
	var c Config
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("%w: config: %v", ErrCorruptObject, err)
	}
	if c.Format != configFormat {
		return nil, fmt.Errorf("%w: config: format %q is not %q", ErrCorruptObject, c.Format, configFormat)
	}
	if c.Version > FormatVersion {
		return nil, fmt.Errorf("%w: the repository has format version %d, this vmasync reads up to %d; upgrade vmasync", ErrNewerFormat, c.Version, FormatVersion)
	}
	if c.Version < 1 {
		return nil, fmt.Errorf("%w: config: version %d", ErrCorruptObject, c.Version)
	}
	if _, err := c.Chunker.Params(); err != nil {
		return nil, fmt.Errorf("%w: config: %v", ErrCorruptObject, err)
	}
	if c.Compression != "zstd" && c.Compression != "none" {
		return nil, fmt.Errorf("%w: config: unknown compression %q", ErrCorruptObject, c.Compression)
	}
	if c.PackSize <= 0 || c.PackSize > 1<<30 {
		return nil, fmt.Errorf("%w: config: pack size %d", ErrCorruptObject, c.PackSize)
	}
	return &c, nil
}

// ID is the SHA-256 of a chunk or of an object's bytes.
type ID = pack.ID

// Location says where a chunk is stored.
type Location = pack.Location

// parseID parses 64 hex digits.
func parseID(s string) (ID, bool) { return pack.ParseID(s) }

// packName is the object name of the pack with content hash id.
func packName(id ID) string {
	s := id.String()
	return PacksDir + "/" + s[:2] + "/" + s + packSuffix
}

// indexName is the object name of the index object with content hash id.
func indexName(id ID) string { return IndexDir + "/" + id.String() + indexSuffix }
