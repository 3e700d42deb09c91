package remote

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strconv"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/restic/chunker"

	"github.com/vmasync/vmasync/chunkplan"
)

// FormatVersion is the newest repository format this package reads and
// the one it writes into new repositories. A repository with a newer
// version is refused. Version 1 names a pack by the SHA-256 of all its
// bytes, version 2 by the SHA-256 of its tail (header, CRC, length and
// magic), which lists every blob's hash and lengths; a push into a
// version 1 repository keeps naming packs the version 1 way.
const FormatVersion = 2

// Object names and prefixes of the repository layout (docs/repository.md).
const (
	ConfigName    = "config"
	PacksDir      = "packs"
	IndexDir      = "index"
	BackupsDir    = "backups"
	LocksDir      = "locks"
	packSuffix    = ".pack"
	indexSuffix   = ".index"
	ManifestExt   = ".manifest"
	configFormat  = "vmasync-repository"
	packMagic     = "VMASYNCPACK1"
	indexMagic    = "VMASYNC-INDEX\x00\x00\x01"
	packEntrySize = 1 + 4 + 4 + 32
	packTrailer   = 4 + len(packMagic)
	indexEntry    = 32 + 4 + 4 + 4 + 4 + 1
)

// DefaultPackSize is the size at which a pack is closed and uploaded.
const DefaultPackSize = 16 << 20

// ErrNewerFormat is returned for a repository written by a newer vmasync.
var ErrNewerFormat = errors.New("repository format is newer than this vmasync")

// ErrCorruptObject is wrapped by errors about damaged repository objects.
var ErrCorruptObject = errors.New("corrupt repository object")

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
type ID [32]byte

func (id ID) String() string { return hex.EncodeToString(id[:]) }

// Short is the first 8 hex digits, for messages.
func (id ID) Short() string { return hex.EncodeToString(id[:4]) }

// parseID parses 64 hex digits.
func parseID(s string) (ID, bool) {
	var id ID
	if len(s) != 64 {
		return id, false
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, false
	}
	return id, true
}

// Blob types in a pack.
const (
	blobRaw  = 0 // stored as is
	blobZstd = 1 // one zstd frame
)

// packEntry describes one chunk stored in a pack.
type packEntry struct {
	Type   uint8
	Raw    uint32 // chunk length
	Stored uint32 // bytes in the pack
	Hash   ID     // SHA-256 of the chunk
	Offset uint32 // derived: position in the pack
}

// packName is the object name of the pack with content hash id.
func packName(id ID) string {
	s := id.String()
	return PacksDir + "/" + s[:2] + "/" + s + packSuffix
}

// indexName is the object name of the index object with content hash id.
func indexName(id ID) string { return IndexDir + "/" + id.String() + indexSuffix }

// packID is the name of a pack in a repository of format version v:
// the SHA-256 of the whole pack (version 1) or of its tail, the bytes
// from blobsEnd on (version 2). The tail commits to the content as well,
// since it holds every blob's SHA-256 and lengths, and readers check each
// blob against its hash; hashing it instead of the pack saves a push a
// twentieth of its CPU.
func packID(v int, data []byte, blobsEnd int) ID {
	if v == 1 {
		return sha256.Sum256(data)
	}
	return sha256.Sum256(data[blobsEnd:])
}

// packBuilder collects compressed chunks into one pack object:
//
//	blob ... | header: entries (type u8, raw u32, stored u32, hash 32 bytes) |
//	crc32c(header) u32 | header length u32 | "VMASYNCPACK1"
//
// The builder appends into buf, which a caller may set to a reused
// buffer (with enough capacity for a whole pack) before the first add;
// finish and seal hand buf over and leave the builder empty.
type packBuilder struct {
	buf     []byte
	entries []packEntry
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func (p *packBuilder) add(hash ID, raw int, typ uint8, stored []byte) {
	p.entries = append(p.entries, packEntry{Type: typ, Raw: uint32(raw), Stored: uint32(len(stored)), Hash: hash, Offset: uint32(len(p.buf))})
	p.buf = append(p.buf, stored...)
}

func (p *packBuilder) len() int { return len(p.buf) }

// seal appends the header and trailer and returns the pack's bytes (the
// builder's buffer, handed over), where its blobs end, and its entries;
// the builder is reset.
func (p *packBuilder) seal() (data []byte, blobsEnd int, entries []packEntry) {
	blobsEnd = len(p.buf)
	p.buf = appendPackHeader(p.buf, p.entries)
	p.buf = binary.BigEndian.AppendUint32(p.buf, uint32(len(p.entries)*packEntrySize+4))
	p.buf = append(p.buf, packMagic...)
	data, entries = p.buf, p.entries
	p.buf, p.entries = nil, nil
	return data, blobsEnd, entries
}

// finish is seal with the pack's id in a repository of format version v.
func (p *packBuilder) finish(v int) ([]byte, ID, []packEntry) {
	data, blobsEnd, entries := p.seal()
	return data, packID(v, data, blobsEnd), entries
}

// appendPackHeader appends the pack header of entries (CRC included) to b.
func appendPackHeader(b []byte, entries []packEntry) []byte {
	start := len(b)
	for _, e := range entries {
		b = append(b, e.Type)
		b = binary.BigEndian.AppendUint32(b, e.Raw)
		b = binary.BigEndian.AppendUint32(b, e.Stored)
		b = append(b, e.Hash[:]...)
	}
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b[start:], castagnoli))
}

// packHeaderLen reads the trailer (the last packTrailer bytes of a pack)
// and returns the header's length (CRC included).
func packHeaderLen(trailer []byte, packSize int64) (int, error) {
	if len(trailer) != packTrailer || string(trailer[4:]) != packMagic {
		return 0, fmt.Errorf("%w: pack trailer: no %q magic", ErrCorruptObject, packMagic)
	}
	n := int64(binary.BigEndian.Uint32(trailer[:4]))
	if n < 4 || (n-4)%packEntrySize != 0 || n+int64(packTrailer) > packSize {
		return 0, fmt.Errorf("%w: pack trailer: header length %d in a pack of %d bytes", ErrCorruptObject, n, packSize)
	}
	return int(n), nil
}

// decodePackHeader parses a pack header (as located by packHeaderLen) of
// a pack whose blobs take dataLen bytes.
func decodePackHeader(hdr []byte, dataLen int64) ([]packEntry, error) {
	body := hdr[:len(hdr)-4]
	if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(hdr[len(hdr)-4:]) {
		return nil, fmt.Errorf("%w: pack header checksum mismatch", ErrCorruptObject)
	}
	entries := make([]packEntry, 0, len(body)/packEntrySize)
	var off int64
	for b := body; len(b) > 0; b = b[packEntrySize:] {
		e := packEntry{Type: b[0], Raw: binary.BigEndian.Uint32(b[1:]), Stored: binary.BigEndian.Uint32(b[5:]), Offset: uint32(off)}
		copy(e.Hash[:], b[9:41])
		if e.Type > blobZstd {
			return nil, fmt.Errorf("%w: pack header: blob type %d", ErrCorruptObject, e.Type)
		}
		off += int64(e.Stored)
		if off > dataLen {
			return nil, fmt.Errorf("%w: pack header: blobs end at %d, beyond the %d data bytes", ErrCorruptObject, off, dataLen)
		}
		entries = append(entries, e)
	}
	if off != dataLen {
		return nil, fmt.Errorf("%w: pack header: blobs take %d bytes, the pack has %d", ErrCorruptObject, off, dataLen)
	}
	return entries, nil
}

// checkPackTail checks a pack's tail (header to magic) against the
// pack's name in a repository of format version 2 or later.
func checkPackTail(tail []byte, id ID) error {
	if sha256.Sum256(tail) != id {
		return fmt.Errorf("%w: pack %s: header does not match its name (SHA-256)", ErrCorruptObject, id.Short())
	}
	return nil
}

// parsePack checks a whole pack's bytes against its id in a repository
// of format version v and returns its entries. In version 2 the id
// covers the tail only: the blobs are checked by their hashes when read.
func parsePack(data []byte, id ID, v int) ([]packEntry, error) {
	if v == 1 && sha256.Sum256(data) != id {
		return nil, fmt.Errorf("%w: pack %s: content does not match its name (SHA-256)", ErrCorruptObject, id.Short())
	}
	if len(data) < packTrailer {
		return nil, fmt.Errorf("%w: pack %s: %d bytes", ErrCorruptObject, id.Short(), len(data))
	}
	n, err := packHeaderLen(data[len(data)-packTrailer:], int64(len(data)))
	if err != nil {
		return nil, err
	}
	start := len(data) - packTrailer - n
	if v != 1 {
		if err := checkPackTail(data[start:], id); err != nil {
			return nil, err
		}
	}
	return decodePackHeader(data[start:len(data)-packTrailer], int64(start))
}

// Location says where a chunk is stored.
type Location struct {
	Pack   ID
	Offset uint32
	Stored uint32
	Raw    uint32
	Type   uint8
}

// indexEntryOf pairs a chunk hash with its location.
type indexEntryOf struct {
	Hash ID
	Location
}

// encodeIndex serializes index entries, zstd-compressed:
//
//	magic(16) | pack count u32 | pack ids | entry count u32 |
//	entries (hash 32, pack number u32, offset u32, stored u32, raw u32, type u8)
func encodeIndex(entries []indexEntryOf) []byte {
	packs := map[ID]uint32{}
	var order []ID
	for _, e := range entries {
		if _, ok := packs[e.Pack]; !ok {
			packs[e.Pack] = uint32(len(order))
			order = append(order, e.Pack)
		}
	}
	b := make([]byte, 0, 24+len(order)*32+len(entries)*indexEntry)
	b = append(b, indexMagic...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(order)))
	for _, id := range order {
		b = append(b, id[:]...)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(entries)))
	for _, e := range entries {
		b = append(b, e.Hash[:]...)
		b = binary.BigEndian.AppendUint32(b, packs[e.Pack])
		b = binary.BigEndian.AppendUint32(b, e.Offset)
		b = binary.BigEndian.AppendUint32(b, e.Stored)
		b = binary.BigEndian.AppendUint32(b, e.Raw)
		b = append(b, e.Type)
	}
	return zstdEncoder.EncodeAll(b, nil)
}

func decodeIndex(data []byte, id ID) ([]indexEntryOf, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: index %s: %s", ErrCorruptObject, id.Short(), fmt.Sprintf(format, args...))
	}
	if sha256.Sum256(data) != id {
		return nil, bad("content does not match its name (SHA-256)")
	}
	// Bound what decoding allocates by what the format allows, whatever
	// the frame claims.
	var fh zstd.Header
	if err := fh.Decode(data); err != nil {
		return nil, bad("%v", err)
	}
	if fh.HasFCS && fh.FrameContentSize > maxIndexObject {
		return nil, bad("declares %d decoded bytes, more than the %d an index object may have", fh.FrameContentSize, maxIndexObject)
	}
	// Streamed, so that a frame without a declared size costs at most
	// the bound too, not what it inflates to.
	dec, err := zstd.NewReader(bytes.NewReader(data), zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxIndexObject), zstd.WithDecoderLowmem(true))
	if err != nil {
		return nil, bad("%v", err)
	}
	defer dec.Close()
	b, err := io.ReadAll(io.LimitReader(dec, maxIndexObject+1))
	if err != nil {
		return nil, bad("%v", err)
	}
	if len(b) > maxIndexObject {
		return nil, bad("decodes to more than the %d bytes an index object may have", maxIndexObject)
	}
	if len(b) < len(indexMagic)+8 || string(b[:len(indexMagic)]) != indexMagic {
		return nil, bad("no index magic")
	}
	b = b[len(indexMagic):]
	np := int(binary.BigEndian.Uint32(b))
	b = b[4:]
	if np > len(b)/32 {
		return nil, bad("%d packs in %d bytes", np, len(b))
	}
	packs := make([]ID, np)
	for i := range packs {
		copy(packs[i][:], b[:32])
		b = b[32:]
	}
	if len(b) < 4 {
		return nil, bad("truncated")
	}
	ne := int(binary.BigEndian.Uint32(b))
	b = b[4:]
	if len(b) != ne*indexEntry {
		return nil, bad("%d entries in %d bytes", ne, len(b))
	}
	out := make([]indexEntryOf, ne)
	for i := range out {
		e := &out[i]
		copy(e.Hash[:], b[:32])
		p := binary.BigEndian.Uint32(b[32:])
		if int(p) >= np {
			return nil, bad("entry %d: pack number %d of %d", i, p, np)
		}
		e.Pack = packs[p]
		e.Offset = binary.BigEndian.Uint32(b[36:])
		e.Stored = binary.BigEndian.Uint32(b[40:])
		e.Raw = binary.BigEndian.Uint32(b[44:])
		e.Type = b[48]
		if e.Type > blobZstd {
			return nil, bad("entry %d: blob type %d", i, e.Type)
		}
		b = b[indexEntry:]
	}
	return out, nil
}

var (
	zstdEncoder, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
	// blobDecoder decodes chunks: none is larger than chunkplan's limit,
	// so a hostile frame cannot make it allocate more.
	blobDecoder, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(chunkplan.MaxChunkSizeLimit))
)

// decodeBlob returns the chunk bytes of a stored blob and checks them
// against the expected hash.
func decodeBlob(stored []byte, loc Location, hash ID, dst []byte) ([]byte, error) {
	var raw []byte
	switch loc.Type {
	case blobRaw:
		raw = append(dst[:0], stored...)
	case blobZstd:
		// The frame must declare the chunk's length, as our writer's
		// frames do; checking it first bounds what decoding allocates.
		var h zstd.Header
		if err := h.Decode(stored); err != nil || !h.HasFCS || h.FrameContentSize != uint64(loc.Raw) || loc.Raw > chunkplan.MaxChunkSizeLimit {
			return nil, fmt.Errorf("%w: chunk %s in pack %s at offset %d: bad zstd frame header", ErrCorruptObject, hash.Short(), loc.Pack.Short(), loc.Offset)
		}
		if cap(dst) < int(loc.Raw) {
			dst = make([]byte, 0, loc.Raw)
		}
		var err error
		if raw, err = blobDecoder.DecodeAll(stored, dst[:0]); err != nil {
			return nil, fmt.Errorf("%w: chunk %s in pack %s at offset %d: %v", ErrCorruptObject, hash.Short(), loc.Pack.Short(), loc.Offset, err)
		}
	default:
		return nil, fmt.Errorf("%w: chunk %s: blob type %d", ErrCorruptObject, hash.Short(), loc.Type)
	}
	if uint32(len(raw)) != loc.Raw || sha256.Sum256(raw) != hash {
		return nil, fmt.Errorf("%w: chunk %s in pack %s at offset %d: content does not match its hash", ErrCorruptObject, hash.Short(), loc.Pack.Short(), loc.Offset)
	}
	return raw, nil
}
