// Package pack is the format of a vmasync pack: compressed chunks one
// after another, then a header that lists every chunk's type, lengths and
// SHA-256, its CRC, its length and a magic. It builds packs, parses and
// checks them, and decodes one blob; it knows nothing of storage.
//
//	blob ... | header: entries (type u8, raw u32, stored u32, hash 32 bytes) |
//	crc32c(header) u32 | header length u32 | "VMASYNCPACK1"
package pack

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/klauspost/compress/zstd"

	"github.com/vmasync/vmasync/chunkplan"
)

// Format constants.
const (
	Magic = "VMASYNCPACK1"
	// EntrySize is the size of one header entry.
	EntrySize = 1 + 4 + 4 + 32
	// TrailerLen is the size of the header length and the magic.
	TrailerLen = 4 + len(Magic)
)

// ErrCorrupt is wrapped by errors about damaged packs and blobs.
var ErrCorrupt = errors.New("corrupt repository object")

// ID is the SHA-256 of a chunk or of an object's bytes.
type ID [32]byte

func (id ID) String() string { return hex.EncodeToString(id[:]) }

// Short is the first 8 hex digits, for messages.
func (id ID) Short() string { return hex.EncodeToString(id[:4]) }

// ParseID parses 64 hex digits.
func ParseID(s string) (ID, bool) {
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
	BlobRaw  = 0 // stored as is
	BlobZstd = 1 // one zstd frame
)

// Entry describes one chunk stored in a pack.
type Entry struct {
	Type   uint8
	Raw    uint32 // chunk length
	Stored uint32 // bytes in the pack
	Hash   ID     // SHA-256 of the chunk
	Offset uint32 // derived: position in the pack
}

// IDOf is the name of a pack in a repository of format version v:
// the SHA-256 of the whole pack (version 1) or of its tail, the bytes
// from blobsEnd on (version 2). The tail commits to the content as well,
// since it holds every blob's SHA-256 and lengths, and readers check each
// blob against its hash; hashing it instead of the pack saves a push a
// twentieth of its CPU.
func IDOf(v int, data []byte, blobsEnd int) ID {
	if v == 1 {
		return sha256.Sum256(data)
	}
	return sha256.Sum256(data[blobsEnd:])
}

// Builder collects compressed chunks into one pack object:
//
//	blob ... | header: entries (type u8, raw u32, stored u32, hash 32 bytes) |
//	crc32c(header) u32 | header length u32 | "VMASYNCPACK1"
//
// The builder appends into a buffer, which a caller may set with
// SetBuffer to a reused one (with enough capacity for a whole pack) before
// the first Add; Finish and Seal hand it over and leave the builder empty.
type Builder struct {
	buf     []byte
	entries []Entry
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// SetBuffer makes the builder append into b[:0].
func (p *Builder) SetBuffer(b []byte) { p.buf = b[:0] }

// HasBuffer reports whether the builder has a buffer (set or grown).
func (p *Builder) HasBuffer() bool { return p.buf != nil }

// Grow makes room for n more bytes of blobs. The buffer's capacity
// doubles while it is small; once doubling would reach an eighth of
// limit it goes to limit at once (unless n bytes need more), so that a
// pack started in a small buffer ends at limit, not wherever append's
// own growth would take it, and leaves no more than that eighth behind
// as garbage (doubling up to a 17 MiB pack left 17 MiB of it, which the
// peak RSS of a push showed).
func (p *Builder) Grow(n, limit int) {
	need := len(p.buf) + n
	if need <= cap(p.buf) {
		return
	}
	c := 2 * cap(p.buf)
	if c >= limit/8 {
		c = limit
	}
	b := make([]byte, len(p.buf), max(c, need))
	copy(b, p.buf)
	p.buf = b
}

// Add appends a stored blob: the chunk's hash, raw length and type.
func (p *Builder) Add(hash ID, raw int, typ uint8, stored []byte) {
	p.entries = append(p.entries, Entry{Type: typ, Raw: uint32(raw), Stored: uint32(len(stored)), Hash: hash, Offset: uint32(len(p.buf))})
	p.buf = append(p.buf, stored...)
}

// Len is the bytes of blobs added so far.
func (p *Builder) Len() int { return len(p.buf) }

// Seal appends the header and trailer and returns the pack's bytes (the
// builder's buffer, handed over), where its blobs end, and its entries;
// the builder is reset.
func (p *Builder) Seal() (data []byte, blobsEnd int, entries []Entry) {
	blobsEnd = len(p.buf)
	p.buf = AppendHeader(p.buf, p.entries)
	p.buf = binary.BigEndian.AppendUint32(p.buf, uint32(len(p.entries)*EntrySize+4))
	p.buf = append(p.buf, Magic...)
	data, entries = p.buf, p.entries
	p.buf, p.entries = nil, nil
	return data, blobsEnd, entries
}

// Finish is Seal with the pack's id in a repository of format version v.
func (p *Builder) Finish(v int) ([]byte, ID, []Entry) {
	data, blobsEnd, entries := p.Seal()
	return data, IDOf(v, data, blobsEnd), entries
}

// AppendHeader appends the pack header of entries (CRC included) to b.
func AppendHeader(b []byte, entries []Entry) []byte {
	start := len(b)
	for _, e := range entries {
		b = append(b, e.Type)
		b = binary.BigEndian.AppendUint32(b, e.Raw)
		b = binary.BigEndian.AppendUint32(b, e.Stored)
		b = append(b, e.Hash[:]...)
	}
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b[start:], castagnoli))
}

// HeaderLen reads the trailer (the last TrailerLen bytes of a pack)
// and returns the header's length (CRC included).
func HeaderLen(trailer []byte, packSize int64) (int, error) {
	if len(trailer) != TrailerLen || string(trailer[4:]) != Magic {
		return 0, fmt.Errorf("%w: pack trailer: no %q magic", ErrCorrupt, Magic)
	}
	n := int64(binary.BigEndian.Uint32(trailer[:4]))
	if n < 4 || (n-4)%EntrySize != 0 || n+int64(TrailerLen) > packSize {
		return 0, fmt.Errorf("%w: pack trailer: header length %d in a pack of %d bytes", ErrCorrupt, n, packSize)
	}
	return int(n), nil
}

// DecodeHeader parses a pack header (as located by packHeaderLen) of
// a pack whose blobs take dataLen bytes.
func DecodeHeader(hdr []byte, dataLen int64) ([]Entry, error) {
	body := hdr[:len(hdr)-4]
	if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(hdr[len(hdr)-4:]) {
		return nil, fmt.Errorf("%w: pack header checksum mismatch", ErrCorrupt)
	}
	entries := make([]Entry, 0, len(body)/EntrySize)
	var off int64
	for b := body; len(b) > 0; b = b[EntrySize:] {
		e := Entry{Type: b[0], Raw: binary.BigEndian.Uint32(b[1:]), Stored: binary.BigEndian.Uint32(b[5:]), Offset: uint32(off)}
		copy(e.Hash[:], b[9:41])
		if e.Type > BlobZstd {
			return nil, fmt.Errorf("%w: pack header: blob type %d", ErrCorrupt, e.Type)
		}
		off += int64(e.Stored)
		if off > dataLen {
			return nil, fmt.Errorf("%w: pack header: blobs end at %d, beyond the %d data bytes", ErrCorrupt, off, dataLen)
		}
		entries = append(entries, e)
	}
	if off != dataLen {
		return nil, fmt.Errorf("%w: pack header: blobs take %d bytes, the pack has %d", ErrCorrupt, off, dataLen)
	}
	return entries, nil
}

// CheckTail checks a pack's tail (header to magic) against the
// pack's name in a repository of format version 2 or later.
func CheckTail(tail []byte, id ID) error {
	if sha256.Sum256(tail) != id {
		return fmt.Errorf("%w: pack %s: header does not match its name (SHA-256)", ErrCorrupt, id.Short())
	}
	return nil
}

// Parse checks a whole pack's bytes against its id in a repository
// of format version v and returns its entries. In version 2 the id
// covers the tail only: the blobs are checked by their hashes when read.
func Parse(data []byte, id ID, v int) ([]Entry, error) {
	if v == 1 && sha256.Sum256(data) != id {
		return nil, fmt.Errorf("%w: pack %s: content does not match its name (SHA-256)", ErrCorrupt, id.Short())
	}
	if len(data) < TrailerLen {
		return nil, fmt.Errorf("%w: pack %s: %d bytes", ErrCorrupt, id.Short(), len(data))
	}
	n, err := HeaderLen(data[len(data)-TrailerLen:], int64(len(data)))
	if err != nil {
		return nil, err
	}
	start := len(data) - TrailerLen - n
	if v != 1 {
		if err := CheckTail(data[start:], id); err != nil {
			return nil, err
		}
	}
	return DecodeHeader(data[start:len(data)-TrailerLen], int64(start))
}

// Location says where a chunk is stored.
type Location struct {
	Pack   ID
	Offset uint32
	Stored uint32
	Raw    uint32
	Type   uint8
}

var (
	// blobDecoder decodes chunks: none is larger than chunkplan's limit,
	// so a hostile frame cannot make it allocate more.
	blobDecoder, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(chunkplan.MaxChunkSizeLimit))
)

// DecodeBlob returns the chunk bytes of a stored blob and checks them
// against the expected hash.
func DecodeBlob(stored []byte, loc Location, hash ID, dst []byte) ([]byte, error) {
	var raw []byte
	switch loc.Type {
	case BlobRaw:
		raw = append(dst[:0], stored...)
	case BlobZstd:
		// The frame must declare the chunk's length, as our writer's
		// frames do; checking it first bounds what decoding allocates.
		// zstd leaves the length out of frames of fewer than 256 bytes
		// of content (pushes before 2026-12-03 stored such a last chunk
		// of an archive that way): those are decoded within the
		// decoder's memory bound and checked by length and hash below.
		var h zstd.Header
		err := h.Decode(stored)
		if !h.HasFCS && loc.Raw < 256 {
			h.FrameContentSize = uint64(loc.Raw)
		}
		if err != nil || h.FrameContentSize != uint64(loc.Raw) || loc.Raw > chunkplan.MaxChunkSizeLimit {
			return nil, fmt.Errorf("%w: chunk %s in pack %s at offset %d: bad zstd frame header", ErrCorrupt, hash.Short(), loc.Pack.Short(), loc.Offset)
		}
		if cap(dst) < int(loc.Raw) {
			dst = make([]byte, 0, loc.Raw)
		}
		if raw, err = blobDecoder.DecodeAll(stored, dst[:0]); err != nil {
			return nil, fmt.Errorf("%w: chunk %s in pack %s at offset %d: %v", ErrCorrupt, hash.Short(), loc.Pack.Short(), loc.Offset, err)
		}
	default:
		return nil, fmt.Errorf("%w: chunk %s: blob type %d", ErrCorrupt, hash.Short(), loc.Type)
	}
	if uint32(len(raw)) != loc.Raw || sha256.Sum256(raw) != hash {
		return nil, fmt.Errorf("%w: chunk %s in pack %s at offset %d: content does not match its hash", ErrCorrupt, hash.Short(), loc.Pack.Short(), loc.Offset)
	}
	return raw, nil
}
