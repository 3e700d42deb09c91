package chunkplan

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"
	"strings"

	"github.com/restic/chunker"
)

// ManifestMagic opens every serialized manifest.
const ManifestMagic = "VMASYNC-MANIFEST"

// ManifestVersion is the newest (and only) manifest format version this
// package reads and the one it writes.
const ManifestVersion = 1

// Limits on manifest metadata, enforced when writing and reading.
const (
	// MaxStringLen bounds Source, VMID and device names, in bytes.
	MaxStringLen = 4096
	// MaxDevices bounds len(Manifest.Devices); VMA allows 255 devices.
	MaxDevices = 256
)

var (
	// ErrCorruptManifest is wrapped by ReadManifest errors for manifests
	// that are truncated, damaged or inconsistent.
	ErrCorruptManifest = errors.New("chunkplan: corrupt manifest")
	// ErrUnsupportedVersion is wrapped by ReadManifest errors for manifests
	// of a format version newer than ManifestVersion (or version 0).
	ErrUnsupportedVersion = errors.New("chunkplan: unsupported manifest version")
)

// Device is one disk image contained in the backup.
type Device struct {
	Name string
	Size uint64
}

// Manifest describes one backup stream as a list of content-defined chunks.
// Build fills Version, ArchiveSHA256, ArchiveSize, Params and Chunks; the
// descriptive fields (Source, VMID, BackupTime, Devices) are left for the
// caller.
type Manifest struct {
	// Version is the format version (ManifestVersion for built manifests).
	Version int
	// Source names where the stream came from (e.g. a file name).
	Source string
	// VMID is the Proxmox VM id, as text.
	VMID string
	// BackupTime is the backup's creation time, Unix seconds.
	BackupTime int64
	// Devices lists the backup's disks.
	Devices []Device
	// ArchiveSHA256 and ArchiveSize describe the whole stream.
	ArchiveSHA256 [32]byte
	ArchiveSize   uint64
	// Params are the chunking parameters used.
	Params Params
	// Chunks are the stream's chunks in order; their lengths sum to
	// ArchiveSize.
	Chunks []ChunkRef
}

// Build chunks r with p (see Chunk) and returns its manifest, including
// the SHA-256 and size of the whole stream.
func Build(r io.Reader, p Params) (*Manifest, error) {
	m := &Manifest{Version: ManifestVersion, Params: p}
	whole := sha256.New()
	err := Chunk(r, p, func(c ChunkRef, data []byte) error {
		whole.Write(data)
		m.ArchiveSize += uint64(len(data))
		m.Chunks = append(m.Chunks, c)
		return nil
	})
	if err != nil {
		return nil, err
	}
	whole.Sum(m.ArchiveSHA256[:0])
	return m, nil
}

// check verifies the manifest's internal consistency.
func (m *Manifest) check() error {
	if err := m.Params.Validate(); err != nil {
		return err
	}
	if len(m.Source) > MaxStringLen || len(m.VMID) > MaxStringLen {
		return fmt.Errorf("source or vmid longer than %d bytes", MaxStringLen)
	}
	if len(m.Devices) > MaxDevices {
		return fmt.Errorf("%d devices, at most %d allowed", len(m.Devices), MaxDevices)
	}
	for _, d := range m.Devices {
		if len(d.Name) > MaxStringLen {
			return fmt.Errorf("device name longer than %d bytes", MaxStringLen)
		}
	}
	var sum uint64
	for i, c := range m.Chunks {
		if c.Length == 0 || uint(c.Length) > m.Params.MaxSize {
			return fmt.Errorf("chunk %d has length %d, want 1..%d", i, c.Length, m.Params.MaxSize)
		}
		sum += uint64(c.Length)
	}
	if sum != m.ArchiveSize {
		return fmt.Errorf("chunk lengths sum to %d, archive size is %d", sum, m.ArchiveSize)
	}
	return nil
}

// encoder writes big-endian fields to a hashed, buffered writer and
// remembers the first error.
type encoder struct {
	w   *bufio.Writer
	h   hash.Hash
	n   int64
	err error
	b   [8]byte
}

func (e *encoder) write(p []byte) {
	if e.err != nil {
		return
	}
	e.h.Write(p)
	var n int
	n, e.err = e.w.Write(p)
	e.n += int64(n)
}
func (e *encoder) u16(v uint16) { binary.BigEndian.PutUint16(e.b[:], v); e.write(e.b[:2]) }
func (e *encoder) u32(v uint32) { binary.BigEndian.PutUint32(e.b[:], v); e.write(e.b[:4]) }
func (e *encoder) u64(v uint64) { binary.BigEndian.PutUint64(e.b[:], v); e.write(e.b[:8]) }
func (e *encoder) str(s string) { e.u16(uint16(len(s))); e.write([]byte(s)) }

// WriteTo serializes m in the format described in the package
// documentation (always format version ManifestVersion). It refuses
// manifests that ReadManifest would reject.
func (m *Manifest) WriteTo(w io.Writer) (int64, error) {
	if err := m.check(); err != nil {
		return 0, fmt.Errorf("chunkplan: cannot write manifest: %w", err)
	}
	e := &encoder{w: bufio.NewWriterSize(w, 64<<10), h: sha256.New()}
	e.write([]byte(ManifestMagic))
	e.u32(ManifestVersion)
	e.u64(uint64(m.Params.Polynomial))
	e.u32(uint32(m.Params.MinSize))
	e.u32(uint32(m.Params.MaxSize))
	e.u32(uint32(m.Params.AverageBits))
	e.u64(m.ArchiveSize)
	e.write(m.ArchiveSHA256[:])
	e.u64(uint64(m.BackupTime))
	e.str(m.Source)
	e.str(m.VMID)
	e.u16(uint16(len(m.Devices)))
	for _, d := range m.Devices {
		e.str(d.Name)
		e.u64(d.Size)
	}
	e.u64(uint64(len(m.Chunks)))
	for _, c := range m.Chunks {
		e.write(c.Hash[:])
		e.u32(c.Length)
	}
	if e.err == nil {
		sum := e.h.Sum(nil)
		var n int
		n, e.err = e.w.Write(sum)
		e.n += int64(n)
	}
	if e.err == nil {
		e.err = e.w.Flush()
	}
	return e.n, e.err
}

// decoder reads big-endian fields through a hashing tee.
type decoder struct {
	r   io.Reader // tee of the buffered input into h
	b   [8]byte
	err error
}

func (d *decoder) read(p []byte) {
	if d.err != nil {
		return
	}
	if _, err := io.ReadFull(d.r, p); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			d.err = fmt.Errorf("%w: truncated", ErrCorruptManifest)
		} else {
			d.err = fmt.Errorf("chunkplan: reading manifest: %w", err)
		}
		clear(p)
	}
}
func (d *decoder) u16() uint16 { d.read(d.b[:2]); return binary.BigEndian.Uint16(d.b[:2]) }
func (d *decoder) u32() uint32 { d.read(d.b[:4]); return binary.BigEndian.Uint32(d.b[:4]) }
func (d *decoder) u64() uint64 { d.read(d.b[:8]); return binary.BigEndian.Uint64(d.b[:8]) }
func (d *decoder) str(what string) string {
	n := d.u16()
	if d.err != nil {
		return ""
	}
	if n > MaxStringLen {
		d.err = fmt.Errorf("%w: %s length %d exceeds %d", ErrCorruptManifest, what, n, MaxStringLen)
		return ""
	}
	p := make([]byte, n)
	d.read(p)
	return string(p)
}

// ReadManifest reads a manifest written by WriteTo. It reads r to its end:
// data after the manifest is an error. Truncated or damaged input gives an
// error wrapping ErrCorruptManifest, a newer format an error wrapping
// ErrUnsupportedVersion. Memory use is bounded by the input actually read,
// never by counts claimed in the input.
// Kept as one function: it follows the manifest format field by field (docs/manifest.md).
func ReadManifest(r io.Reader) (*Manifest, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	h := sha256.New()
	d := &decoder{r: io.TeeReader(br, h)}

	var magic [len(ManifestMagic)]byte
	d.read(magic[:])
	if d.err != nil {
		return nil, d.err
	}
	if string(magic[:]) != ManifestMagic {
		return nil, fmt.Errorf("%w: bad magic %q, not a vmasync manifest", ErrCorruptManifest, magic[:])
	}
	version := d.u32()
	if d.err != nil {
		return nil, d.err
	}
	if version == 0 || version > ManifestVersion {
		return nil, fmt.Errorf("%w: manifest format version %d, this vmasync reads up to version %d (upgrade vmasync)", ErrUnsupportedVersion, version, ManifestVersion)
	}

	m := &Manifest{Version: int(version)}
	m.Params.Polynomial = chunker.Pol(d.u64())
	m.Params.MinSize = uint(d.u32())
	m.Params.MaxSize = uint(d.u32())
	avg := d.u32()
	m.Params.AverageBits = int(min(avg, math.MaxInt32))
	m.ArchiveSize = d.u64()
	d.read(m.ArchiveSHA256[:])
	m.BackupTime = int64(d.u64())
	m.Source = d.str("source")
	m.VMID = d.str("vmid")
	nDev := d.u16()
	if d.err == nil && nDev > MaxDevices {
		return nil, fmt.Errorf("%w: %d devices exceeds %d", ErrCorruptManifest, nDev, MaxDevices)
	}
	for i := 0; i < int(nDev) && d.err == nil; i++ {
		var dev Device
		dev.Name = d.str("device name")
		dev.Size = d.u64()
		m.Devices = append(m.Devices, dev)
	}
	nChunks := d.u64()
	if d.err != nil {
		return nil, d.err
	}
	if err := m.Params.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorruptManifest, err)
	}
	if nChunks > m.ArchiveSize {
		return nil, fmt.Errorf("%w: %d chunks for %d bytes", ErrCorruptManifest, nChunks, m.ArchiveSize)
	}
	// Entries are appended one at a time: a huge claimed count only costs
	// memory as far as entries are really present.
	var entry [36]byte
	for i := uint64(0); i < nChunks; i++ {
		d.read(entry[:])
		if d.err != nil {
			return nil, d.err
		}
		var c ChunkRef
		copy(c.Hash[:], entry[:32])
		c.Length = binary.BigEndian.Uint32(entry[32:])
		m.Chunks = append(m.Chunks, c)
	}

	want := h.Sum(nil)
	var got [sha256.Size]byte
	if _, err := io.ReadFull(br, got[:]); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil, fmt.Errorf("%w: truncated (missing checksum)", ErrCorruptManifest)
		}
		return nil, fmt.Errorf("chunkplan: reading manifest: %w", err)
	}
	if !bytes.Equal(got[:], want) {
		return nil, fmt.Errorf("%w: checksum mismatch", ErrCorruptManifest)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		if err != nil {
			return nil, fmt.Errorf("chunkplan: reading manifest: %w", err)
		}
		return nil, fmt.Errorf("%w: trailing data after checksum", ErrCorruptManifest)
	}
	if err := m.check(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorruptManifest, err)
	}
	return m, nil
}

// ManifestSize parses the header at the start of a manifest (prefix holds
// its first bytes; 64 KiB hold any header but one with many long device
// names) and returns the size in bytes the whole manifest must have: a
// stored manifest of another size is damaged, which a reader can tell
// without downloading all of it. A prefix too short to hold the header
// gives io.ErrUnexpectedEOF; a header that does not parse, an error
// wrapping ErrCorruptManifest.
func ManifestSize(prefix []byte) (int64, error) {
	r := bytes.NewReader(prefix)
	d := &decoder{r: r}
	var magic [len(ManifestMagic)]byte
	d.read(magic[:])
	if d.err == nil && string(magic[:]) != ManifestMagic {
		return 0, fmt.Errorf("%w: bad magic %q, not a vmasync manifest", ErrCorruptManifest, magic[:])
	}
	version := d.u32()
	if d.err == nil && (version == 0 || version > ManifestVersion) {
		return 0, fmt.Errorf("%w: manifest format version %d, this vmasync reads up to version %d (upgrade vmasync)", ErrUnsupportedVersion, version, ManifestVersion)
	}
	var skip [8 + 4 + 4 + 4 + 8 + 32 + 8]byte
	d.read(skip[:])
	d.str("source")
	d.str("vmid")
	nDev := d.u16()
	if d.err == nil && nDev > MaxDevices {
		return 0, fmt.Errorf("%w: %d devices exceeds %d", ErrCorruptManifest, nDev, MaxDevices)
	}
	for i := 0; i < int(nDev) && d.err == nil; i++ {
		d.str("device name")
		d.u64()
	}
	n := d.u64()
	if d.err != nil {
		if errors.Is(d.err, ErrCorruptManifest) && strings.Contains(d.err.Error(), "truncated") {
			return 0, io.ErrUnexpectedEOF
		}
		return 0, d.err
	}
	archive := binary.BigEndian.Uint64(prefix[len(ManifestMagic)+4+20:])
	if n > archive || n > (1<<62)/36 {
		return 0, fmt.Errorf("%w: %d chunks for %d bytes", ErrCorruptManifest, n, archive)
	}
	head := int64(len(prefix) - r.Len())
	return head + 36*int64(n) + sha256.Size, nil
}
