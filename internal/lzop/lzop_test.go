package lzop

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/adler32"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

// lzopPath returns the lzop binary. Tests need the real tool to produce
// fixtures, so a missing binary is a failure, not a skip (CI installs it).
func lzopPath(tb testing.TB) string {
	tb.Helper()
	p, err := exec.LookPath("lzop")
	if err != nil {
		tb.Fatalf("lzop binary not found on PATH (%v): run `apt-get install lzop`", err)
	}
	return p
}

// runLzop runs lzop with args, feeding stdin, and returns its standard output.
func runLzop(tb testing.TB, dir string, stdin []byte, args ...string) []byte {
	tb.Helper()
	cmd := exec.Command(lzopPath(tb), args...)
	cmd.Dir = dir
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("lzop %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// compress returns `lzop -c args... < data`.
func compress(tb testing.TB, data []byte, args ...string) []byte {
	tb.Helper()
	return runLzop(tb, "", data, append([]string{"-c"}, args...)...)
}

// genData returns n bytes of deterministic, semi-compressible data resembling
// a disk image: text-like runs, zero runs and random runs.
func genData(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 0x6c7a6f70))
	words := []string{"proxmox ", "vzdump ", "qemu ", "cluster ", "backup ", "\n", "disk ", "0000 ", "the ", "vma "}
	out := make([]byte, 0, n)
	for len(out) < n {
		switch k := rng.IntN(10); {
		case k < 6:
			for range 1 + rng.IntN(64) {
				out = append(out, words[rng.IntN(len(words))]...)
			}
		case k < 8:
			out = append(out, make([]byte, 1+rng.IntN(4096))...)
		default:
			for range 1 + rng.IntN(2048) {
				out = append(out, byte(rng.Uint32()))
			}
		}
	}
	return out[:n]
}

func randomData(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// decodeAll decompresses data, reading with the given buffer size so that
// both the copy-from-buffer path (small reads) and the decode-into-caller
// path (reads of a whole block or more) are exercised.
func decodeAll(data []byte, bufSize int) ([]byte, error) {
	out, _, err := decode(data, bufSize)
	return out, err
}

// decode is decodeAll that also returns the Reader (nil if NewReader failed).
func decode(data []byte, bufSize int) ([]byte, *Reader, error) {
	z, err := NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, nil, err
	}
	var out bytes.Buffer
	buf := make([]byte, bufSize)
	for {
		n, err := z.Read(buf)
		out.Write(buf[:n])
		if err == io.EOF {
			return out.Bytes(), z, nil
		}
		if err != nil {
			return out.Bytes(), z, err
		}
	}
}

func checkRoundTrip(t *testing.T, comp, want []byte) {
	t.Helper()
	wantSum := sha256.Sum256(want)
	for _, bs := range []int{1000, 32 << 10, 1 << 20} {
		got, err := decodeAll(comp, bs)
		if err != nil {
			t.Fatalf("read buffer %d: %v", bs, err)
		}
		if sha256.Sum256(got) != wantSum {
			t.Fatalf("read buffer %d: output differs: got %d bytes, want %d", bs, len(got), len(want))
		}
	}
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	lzopPath(t)
	semi := genData(1<<20+12345, 1) // several 256 KiB blocks, last one partial
	random := randomData(600<<10, 2)
	tests := []struct {
		name string
		data []byte
		args []string
		// stored: expect at least one stored block; compressed: at least one LZO block.
		stored, compressed bool
	}{
		{"level1", semi, []string{"-1"}, false, true},
		{"default", semi, nil, false, true},
		{"level3", semi, []string{"-3"}, false, true},
		{"level9", semi, []string{"-9"}, false, true},
		{"crc32", semi, []string{"--crc32"}, false, true},
		{"crc32-level9", semi, []string{"--crc32", "-9"}, false, true},
		{"no-checksum", semi, []string{"--no-checksum"}, false, true},
		{"random", random, nil, true, false},
		{"random-crc32", random, []string{"--crc32"}, true, false},
		{"empty", nil, nil, false, false},
		{"one-byte", []byte{'x'}, nil, true, false},
		{"zeros", make([]byte, 3<<20), []string{"-9"}, false, true},
		{"small-text", []byte(strings.Repeat("vzdump-qemu-100 ", 200)), nil, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			comp := compress(t, tc.data, tc.args...)
			checkRoundTrip(t, comp, tc.data)
			_, flags, blocks := splitLzop(t, comp)
			if flags&fStdin == 0 {
				t.Errorf("flags %#x: expected F_STDIN for stdin input", flags)
			}
			var nStored, nComp int
			for _, b := range blocks {
				if b.stored() {
					nStored++
				} else {
					nComp++
				}
			}
			if tc.stored && nStored == 0 {
				t.Errorf("expected a stored block, blocks: %d", len(blocks))
			}
			if tc.compressed && nComp == 0 {
				t.Errorf("expected a compressed block, blocks: %d", len(blocks))
			}
			if len(tc.data) > 256<<10 && len(blocks) < 2 {
				t.Errorf("expected several blocks, got %d", len(blocks))
			}
		})
	}
}

// TestNamedFile covers headers written for a named file (name, mode, mtime
// set, no F_STDIN), both to stdout and to a .lzo file.
func TestNamedFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	data := genData(700<<10, 3)
	name := "vzdump-qemu-100-2024_01_01-00_00_00.vma"
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o640); err != nil {
		t.Fatal(err)
	}
	comp := runLzop(t, dir, nil, "-c", name)
	checkRoundTrip(t, comp, data)
	hdrLen, flags, _ := splitLzop(t, comp)
	if flags&fStdin != 0 || !bytes.Contains(comp[:hdrLen], []byte(name)) {
		t.Errorf("expected a named-file header, flags %#x, header % x", flags, comp[:hdrLen])
	}

	runLzop(t, dir, nil, "-9", "--crc32", "-o", "out.lzo", name)
	comp, err := os.ReadFile(filepath.Join(dir, "out.lzo"))
	if err != nil {
		t.Fatal(err)
	}
	checkRoundTrip(t, comp, data)
	// Path stored with -P (F_H_PATH, version needed 0x1001).
	runLzop(t, dir, nil, "-P", "-o", "out2.lzo", name)
	comp, err = os.ReadFile(filepath.Join(dir, "out2.lzo"))
	if err != nil {
		t.Fatal(err)
	}
	checkRoundTrip(t, comp, data)
}

// rawBlock is one block as stored in a stream.
type rawBlock struct {
	off      int    // offset of the block header
	dataOff  int    // offset of the block data
	dst, src uint32 // uncompressed and compressed length
	data     []byte // the src bytes (compressed or stored)
}

func (b rawBlock) stored() bool { return b.src == b.dst }

// splitLzop is an independent, minimal parser of lzop 1.04 output (version
// >= 0x0940, no filter, no extra field) used to locate fields in fixtures.
func splitLzop(tb testing.TB, c []byte) (hdrLen int, flags uint32, blocks []rawBlock) {
	tb.Helper()
	if !bytes.HasPrefix(c, Magic[:]) {
		tb.Fatalf("fixture has no lzop magic")
	}
	p := 9 + 2 + 2 + 2 + 1 + 1
	flags = binary.BigEndian.Uint32(c[p:])
	p += 4 + 4 + 4 + 4 // flags, mode, mtime_low, mtime_high
	p += 1 + int(c[p]) + 4
	hdrLen = p
	for {
		dst := binary.BigEndian.Uint32(c[p:])
		if dst == 0 {
			if p+4 != len(c) {
				tb.Fatalf("fixture: %d bytes after end marker", len(c)-p-4)
			}
			return
		}
		b := rawBlock{off: p, dst: dst, src: binary.BigEndian.Uint32(c[p+4:])}
		p += 8
		for _, f := range []uint32{fAdler32D, fCRC32D} {
			if flags&f != 0 {
				p += 4
			}
		}
		if b.src < b.dst {
			for _, f := range []uint32{fAdler32C, fCRC32C} {
				if flags&f != 0 {
					p += 4
				}
			}
		}
		b.dataOff = p
		b.data = c[p : p+int(b.src)]
		p += int(b.src)
		blocks = append(blocks, b)
	}
}

// hdrOpts describes a synthetic lzop header.
type hdrOpts struct {
	version, libVersion, needed uint16
	method, level               byte
	flags                       uint32
	filter                      uint32
	name                        string
	extra                       []byte // written when flags has F_H_EXTRA_FIELD
	badHeaderSum, badExtraSum   bool
}

func defaultHdr() hdrOpts {
	return hdrOpts{version: 0x1040, libVersion: 0x20a0, needed: 0x0940, method: 1, level: 5, flags: 0x03000000 | fAdler32D | fStdin | fStdout}
}

func buildHeader(o hdrOpts) []byte {
	var h []byte
	be16 := func(v uint16) { h = binary.BigEndian.AppendUint16(h, v) }
	be32 := func(v uint32) { h = binary.BigEndian.AppendUint32(h, v) }
	be16(o.version)
	be16(o.libVersion)
	if o.version >= 0x0940 {
		be16(o.needed)
	}
	h = append(h, o.method)
	if o.version >= 0x0940 {
		h = append(h, o.level)
	}
	be32(o.flags)
	if o.flags&fHFilter != 0 {
		be32(o.filter)
	}
	be32(0o100644)   // mode
	be32(1700000000) // mtime_low
	if o.version >= 0x0940 {
		be32(0) // mtime_high
	}
	h = append(h, byte(len(o.name)))
	h = append(h, o.name...)
	sum := adler32.Checksum(h)
	if o.flags&fHCRC32 != 0 {
		sum = crc32.ChecksumIEEE(h)
	}
	if o.badHeaderSum {
		sum++
	}
	be32(sum)
	if o.flags&fHExtraField != 0 {
		start := len(h)
		be32(uint32(len(o.extra)))
		h = append(h, o.extra...)
		sum := adler32.Checksum(h[start:])
		if o.flags&fHCRC32 != 0 {
			sum = crc32.ChecksumIEEE(h[start:])
		}
		if o.badExtraSum {
			sum ^= 0x100
		}
		be32(sum)
	}
	return append(Magic[:], h...)
}

// appendBlock appends a block with uncompressed content d, stored as src
// (compressed bytes, or d itself for a stored block) with checksums per flags.
func appendBlock(c []byte, flags uint32, d, src []byte) []byte {
	be32 := func(v uint32) { c = binary.BigEndian.AppendUint32(c, v) }
	be32(uint32(len(d)))
	be32(uint32(len(src)))
	if flags&fAdler32D != 0 {
		be32(adler32.Checksum(d))
	}
	if flags&fCRC32D != 0 {
		be32(crc32.ChecksumIEEE(d))
	}
	if len(src) < len(d) {
		if flags&fAdler32C != 0 {
			be32(adler32.Checksum(src))
		}
		if flags&fCRC32C != 0 {
			be32(crc32.ChecksumIEEE(src))
		}
	}
	return append(c, src...)
}

var endMarker = []byte{0, 0, 0, 0}

// realBlocks returns the blocks of `lzop -c` applied to data, with their
// uncompressed contents.
func realBlocks(t *testing.T, data []byte) []rawBlock {
	t.Helper()
	_, _, blocks := splitLzop(t, compress(t, data))
	return blocks
}

func TestSyntheticStreams(t *testing.T) {
	t.Parallel()
	data := genData(600<<10, 4)
	blocks := realBlocks(t, data) // 256K, 256K, 88K compressed blocks
	if len(blocks) != 3 || blocks[0].stored() {
		t.Fatalf("unexpected fixture: %d blocks", len(blocks))
	}
	stored := []byte("a short stored block")
	// body builds the blocks of data followed by a stored block.
	body := func(c []byte, flags uint32) []byte {
		off := 0
		for _, b := range blocks {
			c = appendBlock(c, flags, data[off:off+int(b.dst)], b.data)
			off += int(b.dst)
		}
		c = appendBlock(c, flags, stored, stored)
		return append(c, endMarker...)
	}
	want := append(bytes.Clone(data), stored...)

	ok := map[string]hdrOpts{}
	for _, f := range []uint32{
		0,
		fAdler32D | fAdler32C,
		fCRC32D | fCRC32C,
		fAdler32D | fAdler32C | fCRC32D | fCRC32C,
		fAdler32C,
		fCRC32C | fHCRC32,
	} {
		o := defaultHdr()
		o.flags = 0x03000000 | f
		ok[fmt.Sprintf("flags-%#x", f)] = o
	}
	o := defaultHdr()
	o.flags |= fHExtraField
	o.extra = []byte("extra field data")
	ok["extra-adler32"] = o
	o.flags |= fHCRC32
	ok["extra-crc32"] = o
	o.extra = nil
	ok["extra-empty"] = o
	o = defaultHdr()
	o.version, o.libVersion = 0x0930, 0x0930 // pre-0.94 layout
	ok["old-version"] = o
	o = defaultHdr()
	o.method, o.level = 3, 9
	o.name = strings.Repeat("n", 255)
	ok["method3-longname"] = o
	o = defaultHdr()
	o.method, o.level = 2, 1
	ok["method2"] = o
	for name, o := range ok {
		t.Run(name, func(t *testing.T) {
			checkRoundTrip(t, body(buildHeader(o), o.flags), want)
		})
	}

	bad := map[string]struct {
		o       hdrOpts
		target  error
		message string
	}{}
	add := func(name string, mod func(*hdrOpts), target error, msg string) {
		o := defaultHdr()
		mod(&o)
		bad[name] = struct {
			o       hdrOpts
			target  error
			message string
		}{o, target, msg}
	}
	add("header-sum", func(o *hdrOpts) { o.badHeaderSum = true }, ErrChecksum, "header adler32 mismatch")
	add("header-crc", func(o *hdrOpts) { o.badHeaderSum = true; o.flags |= fHCRC32 }, ErrChecksum, "header crc32 mismatch")
	add("extra-sum", func(o *hdrOpts) { o.flags |= fHExtraField; o.extra = []byte("x"); o.badExtraSum = true }, ErrChecksum, "extra field checksum mismatch")
	add("method0", func(o *hdrOpts) { o.method = 0 }, ErrUnsupported, "unsupported compression method 0")
	add("method4", func(o *hdrOpts) { o.method = 4 }, ErrUnsupported, "unsupported compression method 4")
	add("filter", func(o *hdrOpts) { o.flags |= fHFilter; o.filter = 1 }, ErrUnsupported, "filters are not supported")
	add("multipart", func(o *hdrOpts) { o.flags |= fMultipart }, ErrUnsupported, "multipart")
	add("reserved", func(o *hdrOpts) { o.flags |= 0x4000 }, ErrUnsupported, "unknown header flags")
	add("too-new", func(o *hdrOpts) { o.needed = 0x2000 }, ErrUnsupported, "needs lzop version")
	add("ancient", func(o *hdrOpts) { o.version = 0x0800 }, ErrFormat, "too old")
	add("needed-low", func(o *hdrOpts) { o.needed = 0x0100 }, ErrFormat, "version needed")
	for name, tc := range bad {
		t.Run(name, func(t *testing.T) {
			_, err := NewReader(bytes.NewReader(body(buildHeader(tc.o), tc.o.flags)))
			checkErr(t, err, tc.target, tc.message)
		})
	}

	// Compressed-data checksums catch damage before decompression.
	t.Run("compressed-checksum", func(t *testing.T) {
		for _, f := range []uint32{fAdler32C, fCRC32C} {
			o := defaultHdr()
			o.flags = 0x03000000 | f | fAdler32D
			c := body(buildHeader(o), o.flags)
			_, _, bl := splitLzopFlags(t, c, len(buildHeader(o)), o.flags)
			c[bl[1].dataOff+100] ^= 0x40
			_, err := decodeAll(c, 4096)
			kind := map[uint32]string{fAdler32C: "adler32", fCRC32C: "crc32"}[f]
			checkErr(t, err, ErrChecksum, fmt.Sprintf("offset %d: compressed %s mismatch in block 2", bl[1].off, kind))
		}
	})
}

// splitLzopFlags is splitLzop for a synthetic stream with a known header length.
func splitLzopFlags(tb testing.TB, c []byte, hdrLen int, flags uint32) (int, uint32, []rawBlock) {
	tb.Helper()
	var blocks []rawBlock
	p := hdrLen
	for binary.BigEndian.Uint32(c[p:]) != 0 {
		b := rawBlock{off: p, dst: binary.BigEndian.Uint32(c[p:]), src: binary.BigEndian.Uint32(c[p+4:])}
		p += 8
		n := 0
		for _, f := range []uint32{fAdler32D, fCRC32D} {
			if flags&f != 0 {
				n++
			}
		}
		if b.src < b.dst {
			for _, f := range []uint32{fAdler32C, fCRC32C} {
				if flags&f != 0 {
					n++
				}
			}
		}
		p += 4 * n
		b.dataOff = p
		p += int(b.src)
		blocks = append(blocks, b)
	}
	return hdrLen, flags, blocks
}

func checkErr(t *testing.T, err, target error, substr string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v (%q)", target, substr)
	}
	if !errors.Is(err, target) {
		t.Errorf("error %q does not wrap %v", err, target)
	}
	if !strings.Contains(err.Error(), substr) {
		t.Errorf("error %q does not contain %q", err, substr)
	}
	if !regexp.MustCompile(`^lzop: offset \d+: `).MatchString(err.Error()) || strings.Contains(err.Error(), "\n") {
		t.Errorf("error %q is not a one-line `lzop: offset N: ...` message", err)
	}
}

func TestBadBlocks(t *testing.T) {
	t.Parallel()
	o := defaultHdr()
	hdr := buildHeader(o)
	data := genData(100<<10, 5)
	blocks := realBlocks(t, data)
	b := blocks[0]
	if b.stored() {
		t.Fatal("fixture block is stored")
	}
	block := func(dst, src uint32, rest ...[]byte) []byte {
		c := binary.BigEndian.AppendUint32(bytes.Clone(hdr), dst)
		c = binary.BigEndian.AppendUint32(c, src)
		for _, r := range rest {
			c = append(c, r...)
		}
		return c
	}
	sum := func(d []byte) []byte { return binary.BigEndian.AppendUint32(nil, adler32.Checksum(d)) }
	blockOff := fmt.Sprintf("offset %d: ", len(hdr))
	tests := []struct {
		name   string
		c      []byte
		target error
		msg    string
	}{
		{"split", block(0xFFFFFFFF, 10), ErrUnsupported, blockOff + "block 1: split lzop files"},
		{"too-big", block(MaxBlockSize+1, 1000), ErrFormat, blockOff + "block 1: uncompressed size 67108865 exceeds maximum"},
		{"src-zero", block(100, 0), ErrFormat, "invalid compressed size 0"},
		{"src-gt-dst", block(100, 101), ErrFormat, "invalid compressed size 101"},
		{"ratio", block(MaxBlockSize, 1000), ErrFormat, "impossible compression ratio"},
		{"dst-short", block(b.dst-1, b.src, sum(data[:b.dst-1]), b.data, endMarker), ErrFormat, "block 1: corrupt LZO data"},
		{"dst-long", block(b.dst+1, b.src, sum(append(bytes.Clone(data[:b.dst]), 0)), b.data, endMarker), ErrFormat, "block 1: decompressed to"},
		{"garbage-lzo", block(1000, 20, sum(make([]byte, 1000)), bytes.Repeat([]byte{0xff}, 20), endMarker), ErrFormat, "block 1: corrupt LZO data"},
		{"data-sum", block(b.dst, b.src, sum([]byte("x")), b.data, endMarker), ErrChecksum, blockOff + "uncompressed adler32 mismatch in block 1"},
		{"stored-sum", block(5, 5, sum([]byte("x")), []byte("hello"), endMarker), ErrChecksum, blockOff + "uncompressed adler32 mismatch in block 1"},
		{"no-end-marker", block(5, 5, sum([]byte("hello")), []byte("hello")), io.ErrUnexpectedEOF, "reading block 2 header: unexpected EOF"},
		{"partial-end-marker", block(5, 5, sum([]byte("hello")), []byte("hello"), []byte{0, 0}), io.ErrUnexpectedEOF, "reading block 2 header: unexpected EOF"},
		{"huge-claim-truncated", block(MaxBlockSize, MaxBlockSize-1, sum(nil), []byte("short")), io.ErrUnexpectedEOF, "reading block 1 data"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, bs := range []int{100, 1 << 20} {
				_, err := decodeAll(tc.c, bs)
				checkErr(t, err, tc.target, tc.msg)
			}
		})
	}

	// Trailing data after the end marker is not read as part of the stream.
	c := append(block(5, 5, sum([]byte("hello")), []byte("hello"), endMarker), "trailing"...)
	if got, err := decodeAll(c, 10); err != nil || string(got) != "hello" {
		t.Errorf("with trailing data: %q, %v", got, err)
	}
}

// TestHostileSizesDoNotAllocate checks that headers claiming huge blocks do
// not make the reader allocate memory for data that is not there.
func TestHostileSizesDoNotAllocate(t *testing.T) {
	// Not parallel: it measures the allocations of the whole process, as
	// TestSteadyStateAllocs does.
	hdr := buildHeader(defaultHdr())
	for _, c := range [][]byte{
		append(binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(bytes.Clone(hdr), MaxBlockSize), MaxBlockSize), make([]byte, 100)...),
		append(binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(bytes.Clone(hdr), MaxBlockSize), MaxBlockSize-1), make([]byte, 100)...),
		append(binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(bytes.Clone(hdr), MaxBlockSize), 1<<18), make([]byte, 100)...),
	} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := decodeAll(c, 4096)
		runtime.ReadMemStats(&after)
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("got %v, want unexpected EOF", err)
		}
		if d := after.TotalAlloc - before.TotalAlloc; d > 2<<20 {
			t.Errorf("allocated %d bytes for a %d-byte hostile stream", d, len(c))
		}
	}
}

// corruptionFixture returns a 3-block lzop stream (default flags: adler32 of
// uncompressed data) and its content.
func corruptionFixture(t *testing.T, args ...string) (comp, data []byte) {
	data = genData(600<<10, 6)
	return compress(t, data, args...), data
}

// expectFailure decodes c and requires an error, with everything returned
// before it a prefix of want (no silent wrong output).
func expectFailure(t *testing.T, c, want []byte, what string) (first error) {
	t.Helper()
	for _, bs := range []int{64 << 10, 1 << 20} {
		got, err := decodeAll(c, bs)
		if first == nil {
			first = err
		}
		if err == nil {
			t.Fatalf("%s: no error (read %d bytes)", what, len(got))
		}
		if !bytes.HasPrefix(want, got) {
			t.Fatalf("%s: output before error %q is not a prefix of the original", what, err)
		}
		if !strings.HasPrefix(err.Error(), "lzop: ") || strings.Contains(err.Error(), "\n") {
			t.Fatalf("%s: badly formatted error %q", what, err)
		}
	}
	return first
}

func TestCorruptHeader(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{nil, {"--crc32"}} {
		comp, data := corruptionFixture(t, args...)
		hdrLen, _, _ := splitLzop(t, comp)
		for i := range hdrLen {
			for _, x := range []byte{0x01, 0x80, 0xff} {
				c := bytes.Clone(comp)
				c[i] ^= x
				expectFailure(t, c, data, fmt.Sprintf("%v: header byte %d ^ %#x", args, i, x))
			}
		}
	}
}

func TestCorruptBlocks(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{nil, {"--crc32"}, {"-9"}} {
		comp, data := corruptionFixture(t, args...)
		hdrLen, _, blocks := splitLzop(t, comp)
		// Every byte of every block header and checksum, plus the end marker.
		var pos []int
		for _, b := range blocks {
			for p := b.off; p < b.dataOff; p++ {
				pos = append(pos, p)
			}
		}
		for p := len(comp) - 4; p < len(comp); p++ {
			pos = append(pos, p)
		}
		// A sample of data bytes, including each block's first and last.
		rng := rand.New(rand.NewPCG(7, 7))
		for _, b := range blocks {
			pos = append(pos, b.dataOff, b.dataOff+int(b.src)-1)
			for range 40 {
				pos = append(pos, b.dataOff+rng.IntN(int(b.src)))
			}
		}
		for _, p := range pos {
			c := bytes.Clone(comp)
			c[p] ^= 0x10
			expectFailure(t, c, data, fmt.Sprintf("%v: byte %d (header %d)", args, p, hdrLen))
		}
	}

	// The error names the block and its offset.
	comp, data := corruptionFixture(t)
	_, _, blocks := splitLzop(t, comp)
	c := bytes.Clone(comp)
	c[blocks[1].dataOff-1] ^= 1 // low byte of block 2's adler32
	err := expectFailure(t, c, data, "block 2 checksum")
	want := fmt.Sprintf(`^lzop: offset %d: uncompressed adler32 mismatch in block 2 \(stored [0-9a-f]{8}, computed [0-9a-f]{8}\)$`, blocks[1].off)
	if !regexp.MustCompile(want).MatchString(err.Error()) {
		t.Errorf("error %q does not match %s", err, want)
	}
	if !errors.Is(err, ErrChecksum) {
		t.Errorf("error %v is not ErrChecksum", err)
	}
}

func TestTruncated(t *testing.T) {
	t.Parallel()
	comp, data := corruptionFixture(t)
	hdrLen, _, blocks := splitLzop(t, comp)
	var cuts []int
	for i := 0; i < hdrLen+16; i++ {
		cuts = append(cuts, i)
	}
	for _, b := range blocks {
		for d := -2; d <= 14; d++ {
			cuts = append(cuts, b.off+d)
		}
		cuts = append(cuts, b.dataOff+int(b.src)/2, b.dataOff+int(b.src)-1)
	}
	cuts = append(cuts, len(comp)-3, len(comp)-2, len(comp)-1)
	for _, n := range cuts {
		err := expectFailure(t, comp[:n], data, fmt.Sprintf("truncated to %d", n))
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("truncated to %d: %v does not wrap io.ErrUnexpectedEOF", n, err)
		}
		if !strings.Contains(err.Error(), fmt.Sprintf("offset %d: ", n)) {
			t.Errorf("truncated to %d: error %q does not give the offset", n, err)
		}
	}
}

func TestNotLzop(t *testing.T) {
	t.Parallel()
	for _, in := range [][]byte{
		[]byte("VMA\x00\x00\x00\x00\x01"),
		[]byte("\x89LZO\x00\r\n\x1a\x0b more bytes"),
		bytes.Repeat([]byte{0}, 100),
	} {
		_, err := NewReader(bytes.NewReader(in))
		checkErr(t, err, ErrFormat, "not an lzop file")
	}
	_, err := NewReader(bytes.NewReader(nil))
	checkErr(t, err, io.ErrUnexpectedEOF, "offset 0: reading magic")
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func TestReadErrorPropagates(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	comp := compress(t, []byte("hello hello hello"))
	_, err := NewReader(io.MultiReader(bytes.NewReader(comp[:20]), errReader{boom}))
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "offset 20") {
		t.Errorf("got %v", err)
	}
	z, err := NewReader(io.MultiReader(bytes.NewReader(comp[:len(comp)-4]), errReader{boom}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(z); !errors.Is(err, boom) {
		t.Errorf("got %v", err)
	}
	// Errors are sticky.
	if _, err2 := z.Read(make([]byte, 10)); !errors.Is(err2, boom) {
		t.Errorf("second read: %v", err2)
	}
}

// TestSteadyStateAllocs checks that buffers are reused between blocks.
func TestSteadyStateAllocs(t *testing.T) {
	const block = 256 << 10
	data := genData(24*block, 8)
	comp := compress(t, data)
	for _, bs := range []int{32 << 10, block} { // copy path and direct path
		z, err := NewReader(bytes.NewReader(comp))
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, bs)
		readBlock := func() {
			for range block / bs {
				if _, err := io.ReadFull(z, buf); err != nil {
					t.Fatal(err)
				}
			}
		}
		readBlock()
		if a := testing.AllocsPerRun(10, readBlock); a != 0 {
			t.Errorf("buffer %d: %v allocations per block, want 0", bs, a)
		}
	}
}

func FuzzReader(f *testing.F) {
	// Small hand-made seeds; more (real lzop output) are in testdata/fuzz.
	hdr := buildHeader(defaultHdr())
	f.Add(append(bytes.Clone(hdr), endMarker...))
	f.Add(append(appendBlock(bytes.Clone(hdr), defaultHdr().flags, []byte("hello"), []byte("hello")), endMarker...))
	o := defaultHdr()
	o.flags = 0x03000000 | fAdler32D | fAdler32C | fCRC32D | fCRC32C | fHExtraField | fHCRC32
	o.extra = []byte("xx")
	f.Add(append(buildHeader(o), endMarker...))
	o = defaultHdr()
	o.version = 0x0930
	f.Add(append(buildHeader(o), endMarker...))

	f.Fuzz(func(t *testing.T, in []byte) {
		// Decode with a small and a large read buffer (the buffered and the
		// direct path); both must agree.
		a, _, errA := decode(in, 1000)
		b, z, errB := decode(in, 64<<10)
		if (errA == nil) != (errB == nil) || !bytes.Equal(a, b) {
			t.Fatalf("read paths disagree: %d bytes, %v / %d bytes, %v", len(a), errA, len(b), errB)
		}
		if errA != nil {
			var e *Error
			if !errors.As(errA, &e) || e.Offset < 0 || e.Offset > int64(len(in)) {
				t.Fatalf("error %v is not an *Error with a valid offset", errA)
			}
			if strings.Contains(errA.Error(), "decoder panic") {
				t.Fatalf("LZO decoder panicked: %v", errA)
			}
		}
		// Output can only come from bytes present: at most maxRatio per byte.
		if len(a) > maxRatio*len(in) {
			t.Fatalf("%d bytes of output from %d bytes of input", len(a), len(in))
		}
		// Buffers stay proportional to the input.
		if z == nil {
			return
		}
		if c := cap(z.cbuf); c > max(256<<10, 2*len(in)) {
			t.Fatalf("compressed buffer %d bytes for %d bytes of input", c, len(in))
		}
		if c := cap(z.dbuf); c > max(256<<10, maxRatio*len(in)) {
			t.Fatalf("data buffer %d bytes for %d bytes of input", c, len(in))
		}
	})
}

func BenchmarkReader(b *testing.B) {
	data := genData(64<<20, 9)
	comp := compress(b, data)
	b.Logf("%d bytes -> %d bytes lzop (%.1f%%)", len(data), len(comp), 100*float64(len(comp))/float64(len(data)))
	// 64 KiB reads go through the block buffer; 1 MiB reads decode
	// straight into the caller's buffer.
	for _, bs := range []int{64 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("read%dK", bs>>10), func(b *testing.B) {
			buf := make([]byte, bs)
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				z, err := NewReader(bytes.NewReader(comp))
				if err != nil {
					b.Fatal(err)
				}
				// Hide io.Discard's ReadFrom so buf is used.
				n, err := io.CopyBuffer(struct{ io.Writer }{io.Discard}, z, buf)
				if err != nil || n != int64(len(data)) {
					b.Fatalf("%d bytes, %v", n, err)
				}
			}
		})
	}
}
