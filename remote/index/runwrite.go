package index

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
)

// runWriter writes a run file under a temporary name, records in order.
type runWriter struct {
	dir, tmp string
	f        *os.File
	w        *bufio.Writer
	block    []byte // the block being filled
	inBlock  int
	first8   []uint64
	crcs     []uint32
	stats    []PackInfo
	n, dist  int64
	last     ID
	err      error
}

// newRunWriter starts a run in dir; records, when known (> 0), is how
// many it will hold, so that a small run does not get a 1 MiB buffer.
func newRunWriter(dir string, records int) (*runWriter, error) {
	tmp, err := tempName(dir)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	w := &runWriter{dir: dir, tmp: tmp, f: f, w: bufio.NewWriterSize(f, runBuffer(records)), block: make([]byte, 0, blockBytes)}
	_, w.err = w.w.WriteString(runMagic)
	return w, nil
}

func tempName(dir string) (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return filepath.Join(dir, tmpPrefix+hex.EncodeToString(b[:])), nil
}

// add appends r; records must come in compareRec order.
func (w *runWriter) add(r *rec) {
	if w.err != nil {
		return
	}
	if w.n == 0 || r.h != w.last {
		w.dist++
		w.last = r.h
	}
	for int(r.pack) >= len(w.stats) {
		w.stats = append(w.stats, PackInfo{})
	}
	s := &w.stats[r.pack]
	s.Records++
	s.MaxEnd = max(s.MaxEnd, int64(r.offset)+int64(r.stored))
	if w.inBlock == 0 {
		w.first8 = append(w.first8, binary.BigEndian.Uint64(r.h[:8]))
	}
	w.block = w.block[:len(w.block)+EntrySize]
	r.put(w.block[len(w.block)-EntrySize:])
	w.inBlock++
	w.n++
	if w.inBlock == BlockRecords {
		w.endBlock()
	}
}

func (w *runWriter) endBlock() {
	if w.inBlock == 0 {
		return
	}
	w.crcs = append(w.crcs, crc32.Checksum(w.block, castagnoli))
	_, err := w.w.Write(w.block)
	if w.err == nil {
		w.err = err
	}
	w.block, w.inBlock = w.block[:0], 0
}

// finish writes the tables and footer, renames the file into place as
// run-<SHA-256 of its tables>.run (a temporary run keeps its temporary
// name) and returns the run opened through the descriptor it was written
// with; packs names the run's pack numbers. Another process may delete
// the file as soon as it has its final name (a run of index objects it
// does not know yet is stale to it, one overlapping its own build is
// dropped): the run stays readable here all the same.
func (w *runWriter) finish(packs []ID, sources []string, temporary bool) (*run, error) {
	w.endBlock()
	defer func() {
		if w.f != nil {
			w.f.Close()
			os.Remove(w.tmp)
		}
	}()
	if w.err != nil {
		return nil, w.err
	}
	if len(w.stats) > len(packs) {
		return nil, fmt.Errorf("index cache: record names pack %d of %d", len(w.stats)-1, len(packs))
	}
	sum := sha256.New()
	out := io.MultiWriter(w.w, sum)
	var b []byte
	for i, id := range packs {
		var s PackInfo
		if i < len(w.stats) {
			s = w.stats[i]
		}
		b = append(b[:0], id[:]...)
		b = binary.BigEndian.AppendUint32(b, uint32(s.Records))
		b = binary.BigEndian.AppendUint64(b, uint64(s.MaxEnd))
		out.Write(b)
	}
	srcBytes := 0
	for _, s := range sources {
		if len(s) > math.MaxUint16 {
			return nil, fmt.Errorf("index cache: source name of %d bytes", len(s))
		}
		b = binary.BigEndian.AppendUint16(b[:0], uint16(len(s)))
		b = append(b, s...)
		out.Write(b)
		srcBytes += len(b)
	}
	for i := range w.first8 {
		b = binary.BigEndian.AppendUint64(b[:0], w.first8[i])
		b = binary.BigEndian.AppendUint32(b, w.crcs[i])
		out.Write(b)
	}
	b = binary.BigEndian.AppendUint64(b[:0], uint64(w.n))
	b = binary.BigEndian.AppendUint64(b, uint64(w.dist))
	b = binary.BigEndian.AppendUint32(b, uint32(len(packs)))
	b = binary.BigEndian.AppendUint32(b, uint32(len(sources)))
	b = binary.BigEndian.AppendUint64(b, uint64(srcBytes))
	sum.Write(b)
	digest := sum.Sum(nil)
	b = append(b, digest...)
	b = append(b, runEndMagic...)
	if _, err := w.w.Write(b); err != nil {
		return nil, err
	}
	if err := w.w.Flush(); err != nil {
		return nil, err
	}
	r, err := runOfFile(w.f, w.tmp)
	if err != nil {
		return nil, err
	}
	if !temporary {
		// No fsync: a run left half written by a crash fails its checks
		// and is built again.
		final := filepath.Join(w.dir, "run-"+hex.EncodeToString(digest[:16])+runSuffix)
		if err := os.Rename(w.tmp, final); err != nil {
			return nil, err
		}
		r.path = final
	}
	w.f = nil
	return r, nil
}

// abort drops a run being written.
func (w *runWriter) abort() {
	if w.f != nil {
		w.f.Close()
		os.Remove(w.tmp)
		w.f = nil
	}
}

// runBuffer is the write buffer of a run of the given records (0:
// unknown): 1 MiB at most, a few KiB beyond the records' bytes for the
// tables and footer.
func runBuffer(records int) int {
	if records <= 0 {
		return 1 << 20
	}
	return min(1<<20, records*EntrySize+16<<10)
}
