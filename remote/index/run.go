package index

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/vmasync/vmasync/remote/pack"
)

// The run file, one sorted run of a DiskIndex's cache (big-endian):
//
//	"VMASYNC-IDXRUN\0\1"
//	records: hash 32 | pack number u32 | offset u32 | stored u32 | raw u32 | type u8
//	         (EntrySize bytes each), sorted by hash, then pack number, then offset
//	packs:   per pack: id 32 | records u32 | max end (offset+stored) u64
//	sources: per index object the run was built from: length u16 | name
//	fence:   per block of BlockRecords records: first 8 bytes of its first hash u64 |
//	         crc32c of the block's bytes u32
//	footer:  records u64 | distinct hashes u64 | packs u32 | sources u32 |
//	         source bytes u64 | SHA-256 of packs, sources, fence and these
//	         fields | "VMASYNC-IDXEND\0\1"
//
// The footer's SHA-256 is checked when a run is opened, every block's
// CRC-32C each time the block is read, so no byte of the file is used
// unchecked.
const (
	runMagic    = "VMASYNC-IDXRUN\x00\x01"
	runEndMagic = "VMASYNC-IDXEND\x00\x01"
	// BlockRecords is how many records one fence entry covers: a lookup
	// reads one block (BlockRecords*EntrySize = 3136 bytes), the fence
	// costs 12 bytes per block (0.19 bytes a chunk) in memory.
	BlockRecords = 64
	blockBytes   = BlockRecords * EntrySize
	packInfoLen  = 32 + 4 + 8
	fenceLen     = 8 + 4
	footerLen    = 8 + 8 + 4 + 4 + 8 + 32 + len(runEndMagic)
	runSuffix    = ".run"
	tmpPrefix    = "tmp-"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errDamaged marks a cache file that fails its checks.
var errDamaged = errors.New("index cache file damaged")

// rec is one record in memory; pack is a number into a table.
type rec struct {
	h                         ID
	pack, offset, stored, raw uint32
	typ                       uint8
}

func (r *rec) put(b []byte) {
	copy(b, r.h[:])
	binary.BigEndian.PutUint32(b[32:], r.pack)
	binary.BigEndian.PutUint32(b[36:], r.offset)
	binary.BigEndian.PutUint32(b[40:], r.stored)
	binary.BigEndian.PutUint32(b[44:], r.raw)
	b[48] = r.typ
}

func (r *rec) get(b []byte) {
	copy(r.h[:], b[:32])
	r.pack = binary.BigEndian.Uint32(b[32:])
	r.offset = binary.BigEndian.Uint32(b[36:])
	r.stored = binary.BigEndian.Uint32(b[40:])
	r.raw = binary.BigEndian.Uint32(b[44:])
	r.typ = b[48]
}

func compareRec(a, b *rec) int {
	if c := compareID(&a.h, &b.h); c != 0 {
		return c
	}
	if a.pack != b.pack {
		if a.pack < b.pack {
			return -1
		}
		return 1
	}
	if a.offset != b.offset {
		if a.offset < b.offset {
			return -1
		}
		return 1
	}
	return 0
}

// PackInfo describes one pack's records in the index cache.
type PackInfo struct {
	ID ID
	// Records is how many records (index entries) name the pack; MaxEnd
	// is the largest offset+stored among them.
	Records int
	MaxEnd  int64
}

// run is an open run file: its fence and tables in memory, its records
// read with ReadAt.
type run struct {
	ra      io.ReaderAt // f, or the bytes of a test
	f       *os.File
	path    string
	n       int64 // records
	blocks  int
	first8  []uint64
	crcs    []uint32
	packs   []PackInfo
	sources []string
	// distinct hashes among the records
	distinct int64
	// global maps the run's pack numbers to the DiskIndex's.
	global []uint32
	// temporary runs (LoadExtra's) are deleted at Close.
	temporary bool
	// bloom, if set (the temporary runs of added entries), answers "not
	// here" for most hashes the run does not hold without a read.
	bloom bloom
}

// openRun opens and checks a run file: its size against its footer, the
// footer's SHA-256 over the tables and fence. Records are checked block
// by block as they are read.
func openRun(path string) (*run, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	r, err := runOfFile(f, path)
	if err != nil {
		f.Close()
		return nil, err
	}
	return r, nil
}

// runOfFile checks and parses the run in the open file f, named path; the
// run reads its records through f. On error f is left open.
func runOfFile(f *os.File, path string) (*run, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	r, err := parseRun(f, st.Size())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Base(path), err)
	}
	r.f, r.ra, r.path = f, f, path
	return r, nil
}

// parseRun reads a run's footer, tables and fence from ra (size bytes),
// allocating no more than the file's size allows.
func parseRun(ra io.ReaderAt, size int64) (*run, error) {
	if size < int64(len(runMagic)+footerLen) {
		return nil, badRun("%d bytes", size)
	}
	head := make([]byte, len(runMagic))
	if _, err := ra.ReadAt(head, 0); err != nil {
		return nil, err
	}
	if string(head) != runMagic {
		return nil, badRun("no run magic")
	}
	foot := make([]byte, footerLen)
	if _, err := ra.ReadAt(foot, size-int64(footerLen)); err != nil {
		return nil, err
	}
	if string(foot[footerLen-len(runEndMagic):]) != runEndMagic {
		return nil, badRun("no end magic")
	}
	n := binary.BigEndian.Uint64(foot)
	dist := binary.BigEndian.Uint64(foot[8:])
	np := uint64(binary.BigEndian.Uint32(foot[16:]))
	ns := uint64(binary.BigEndian.Uint32(foot[20:]))
	sb := binary.BigEndian.Uint64(foot[24:])
	// Every count is bounded by the file's size before anything is
	// allocated from it.
	body := uint64(size) - uint64(len(runMagic)+footerLen)
	if n > body/EntrySize || np > body/packInfoLen || sb > body || ns > sb/2 || dist > n || (n > 0) != (dist > 0) {
		return nil, badRun("counts do not fit %d bytes", size)
	}
	blocks := (n + BlockRecords - 1) / BlockRecords
	if n*EntrySize+np*packInfoLen+sb+blocks*fenceLen != body {
		return nil, badRun("counts do not add up to %d bytes", size)
	}
	metaOff := int64(len(runMagic)) + int64(n*EntrySize)
	meta := make([]byte, int(body-n*EntrySize))
	if _, err := ra.ReadAt(meta, metaOff); err != nil {
		return nil, err
	}
	sum := sha256.New()
	sum.Write(meta)
	sum.Write(foot[:32])
	if !bytes.Equal(sum.Sum(nil), foot[32:64]) {
		return nil, badRun("checksum of its tables does not match")
	}
	r := &run{n: int64(n), blocks: int(blocks), distinct: int64(dist)}
	if err := r.parseTables(meta, np, ns, sb); err != nil {
		return nil, err
	}
	return r, nil
}

// badRun is the error of a run file that fails a check.
func badRun(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errDamaged, fmt.Sprintf(format, args...))
}

// parseTables decodes the tables and fence that follow the records (meta,
// checked against the footer's SHA-256 already): np packs, ns sources in
// sb bytes, then the fence of r.blocks blocks.
func (r *run) parseTables(meta []byte, np, ns, sb uint64) error {
	r.packs = make([]PackInfo, np)
	for i := range r.packs {
		p := &r.packs[i]
		copy(p.ID[:], meta)
		p.Records = int(binary.BigEndian.Uint32(meta[32:]))
		p.MaxEnd = int64(binary.BigEndian.Uint64(meta[36:]))
		if p.MaxEnd < 0 || uint64(p.Records) > uint64(r.n) {
			return badRun("pack %d: %d records, end %d", i, p.Records, p.MaxEnd)
		}
		meta = meta[packInfoLen:]
	}
	src := meta[:sb]
	meta = meta[sb:]
	r.sources = make([]string, 0, ns)
	for range ns {
		if len(src) < 2 || len(src) < 2+int(binary.BigEndian.Uint16(src)) {
			return badRun("sources truncated")
		}
		l := int(binary.BigEndian.Uint16(src))
		r.sources = append(r.sources, string(src[2:2+l]))
		src = src[2+l:]
	}
	if len(src) != 0 {
		return badRun("%d bytes after the sources", len(src))
	}
	r.first8 = make([]uint64, r.blocks)
	r.crcs = make([]uint32, r.blocks)
	for i := range r.first8 {
		r.first8[i] = binary.BigEndian.Uint64(meta)
		r.crcs[i] = binary.BigEndian.Uint32(meta[8:])
		if i > 0 && r.first8[i] < r.first8[i-1] {
			return badRun("fence not sorted at block %d", i)
		}
		meta = meta[fenceLen:]
	}
	return nil
}

// blockRecords is the number of records in block b.
func (r *run) blockRecords(b int) int {
	return int(min(int64(BlockRecords), r.n-int64(b)*BlockRecords))
}

// readBlocks reads blocks [lo, hi) into buf (grown as needed) and checks
// each against its CRC and each record's pack number and type.
func (r *run) readBlocks(lo, hi int, buf []byte) ([]byte, error) {
	start := int64(lo) * BlockRecords
	end := min(int64(hi)*BlockRecords, r.n)
	need := int((end - start) * EntrySize)
	if cap(buf) < need {
		buf = make([]byte, need)
	}
	buf = buf[:need]
	if _, err := r.ra.ReadAt(buf, int64(len(runMagic))+start*EntrySize); err != nil {
		return nil, fmt.Errorf("index cache %s: %w", filepath.Base(r.path), err)
	}
	for b := lo; b < hi; b++ {
		blk := buf[(b-lo)*blockBytes:]
		blk = blk[:r.blockRecords(b)*EntrySize]
		if crc32.Checksum(blk, castagnoli) != r.crcs[b] {
			return nil, fmt.Errorf("%w: %s: block %d does not match its checksum", errDamaged, filepath.Base(r.path), b)
		}
		for i := 0; i < len(blk); i += EntrySize {
			if binary.BigEndian.Uint32(blk[i+32:]) >= uint32(len(r.packs)) || blk[i+48] > pack.BlobZstd {
				return nil, fmt.Errorf("%w: %s: block %d: bad record", errDamaged, filepath.Base(r.path), b)
			}
		}
	}
	return buf, nil
}

// search returns the records of hash h (in the run's order) and the
// position of the first, reading the one or few blocks the fence points
// to.
func (r *run) search(h *ID, buf []byte) (recs []byte, pos int64, _ []byte, err error) {
	k := binary.BigEndian.Uint64(h[:8])
	j := sort.Search(r.blocks, func(i int) bool { return r.first8[i] >= k })
	lo := max(j-1, 0)
	hi := j
	for hi < r.blocks && r.first8[hi] == k {
		hi++
	}
	if hi <= lo {
		return nil, 0, buf, nil
	}
	buf, err = r.readBlocks(lo, hi, buf)
	if err != nil {
		return nil, 0, buf, err
	}
	cnt := len(buf) / EntrySize
	i := sort.Search(cnt, func(i int) bool { return bytes.Compare(buf[i*EntrySize:i*EntrySize+32], h[:]) >= 0 })
	e := i
	for e < cnt && bytes.Equal(buf[e*EntrySize:e*EntrySize+32], h[:]) {
		e++
	}
	return buf[i*EntrySize : e*EntrySize], int64(lo)*BlockRecords + int64(i), buf, nil
}

func (r *run) close() {
	if r.f != nil {
		r.f.Close()
	}
	r.f, r.ra = nil, nil
}

// verify reads the run through and checks every block.
func (r *run) verify() error {
	var buf []byte
	for b := 0; b < r.blocks; b += 256 {
		var err error
		if buf, err = r.readBlocks(b, min(b+256, r.blocks), buf); err != nil {
			return err
		}
	}
	return nil
}

// cursor yields records in order.
type cursor interface {
	next(*rec) (bool, error)
}

// runCursor reads a run sequentially, a few hundred KiB at a time, every
// block checked.
type runCursor struct {
	r        *run
	buf      []byte
	i        int // next record in buf
	nextBlk  int
	pos      int64 // position of the next record
	remap    []uint32
	atBlocks int
}

func newRunCursor(r *run, remap []uint32) *runCursor {
	return &runCursor{r: r, remap: remap, atBlocks: 64}
}

func (c *runCursor) next(out *rec) (bool, error) {
	if c.i*EntrySize >= len(c.buf) {
		if c.nextBlk >= c.r.blocks {
			return false, nil
		}
		hi := min(c.nextBlk+c.atBlocks, c.r.blocks)
		b, err := c.r.readBlocks(c.nextBlk, hi, c.buf)
		if err != nil {
			return false, err
		}
		c.buf, c.i, c.nextBlk = b, 0, hi
	}
	out.get(c.buf[c.i*EntrySize:])
	if c.remap != nil {
		out.pack = c.remap[out.pack]
	}
	c.i++
	c.pos++
	return true, nil
}
