// Package lzop reads the lzop container format, as written by `lzop -c`
// (which is what vzdump produces for `--compress lzo`).
//
// The format is a file header followed by blocks of at most 64 MiB of
// uncompressed data, each compressed independently with LZO1X and protected
// by optional Adler-32 or CRC-32 checksums, terminated by a zero-length block.
// All integers are big-endian. The layout follows lzop 1.04 (lzop.c
// read_header, lzo.c lzo_decompress):
//
//	magic                      89 4C 5A 4F 00 0D 0A 1A 0A
//	version                    u16
//	lib_version                u16
//	version_needed_to_extract  u16   if version >= 0x0940
//	method                     u8    1, 2, 3 (all LZO1X)
//	level                      u8    if version >= 0x0940
//	flags                      u32
//	filter                     u32   if flags & F_H_FILTER
//	mode                       u32
//	mtime_low                  u32
//	mtime_high                 u32   if version >= 0x0940
//	name_len, name             u8, name_len bytes
//	header_checksum            u32   adler32 (crc32 if F_H_CRC32) of version..name
//	extra field                if F_H_EXTRA_FIELD: u32 len, len bytes, u32 checksum of len+bytes
//
//	blocks:
//	dst_len                    u32   uncompressed length; 0 ends the stream
//	src_len                    u32   compressed length; == dst_len means stored
//	d_adler32 / d_crc32        u32   if F_ADLER32_D / F_CRC32_D
//	c_adler32 / c_crc32        u32   if F_ADLER32_C / F_CRC32_C and src_len < dst_len
//	data                       src_len bytes
//
// Multi-part (concatenated) lzop files, filters and split files are not
// supported. Anything after the end-of-stream marker is ignored.
package lzop

// Over 500 lines on purpose: one container format, its header and block fields in the order lzop writes them.

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/adler32"
	"hash/crc32"
	"io"

	lzo "github.com/anchore/go-lzo"
)

// Magic is the 9-byte signature at the start of every lzop file.
var Magic = [9]byte{0x89, 0x4C, 0x5A, 0x4F, 0x00, 0x0D, 0x0A, 0x1A, 0x0A}

// MaxBlockSize is the largest uncompressed block lzop accepts (lzop's
// MAX_BLOCK_SIZE). Larger lengths are rejected before any buffer is sized.
const MaxBlockSize = 64 << 20

// maxRatio bounds dst_len/src_len for LZO1X-compressed blocks. The longest
// match an LZO1X instruction can encode grows by 255 per extra input byte (a
// run of zero length bytes), so every instruction yields fewer than 256 output
// bytes per input byte. A header claiming more is corrupt, and rejecting it
// early keeps memory use proportional to the bytes actually present.
const maxRatio = 256

// Sentinel errors, matched with errors.Is. Every error returned by NewReader
// and Read (other than io.EOF) is an *Error wrapping one of these,
// io.ErrUnexpectedEOF, or the underlying reader's error.
var (
	// ErrFormat means the input is not a valid lzop stream.
	ErrFormat = errors.New("lzop: invalid format")
	// ErrChecksum means a header or data checksum did not match.
	ErrChecksum = errors.New("lzop: checksum mismatch")
	// ErrUnsupported means a valid lzop feature this reader does not handle.
	ErrUnsupported = errors.New("lzop: unsupported feature")
)

// Error describes a failure at a given byte offset of the compressed stream.
type Error struct {
	// Offset in the compressed stream: for a bad block, where the block
	// starts; for truncation or a read error, where the input ended or failed;
	// for header problems, the offending field.
	Offset int64
	Msg    string // one-line description
	Err    error  // ErrFormat, ErrChecksum, ErrUnsupported, io.ErrUnexpectedEOF or a read error
}

func (e *Error) Error() string {
	if e.Err == io.ErrUnexpectedEOF {
		return fmt.Sprintf("lzop: offset %d: %s: unexpected EOF", e.Offset, e.Msg)
	}
	if e.Err != ErrFormat && e.Err != ErrChecksum && e.Err != ErrUnsupported && e.Err != nil {
		return fmt.Sprintf("lzop: offset %d: %s: %v", e.Offset, e.Msg, e.Err)
	}
	return fmt.Sprintf("lzop: offset %d: %s", e.Offset, e.Msg)
}

func (e *Error) Unwrap() error { return e.Err }

// Header flags (lzop conf.h).
const (
	fAdler32D    = 0x00000001
	fAdler32C    = 0x00000002
	fStdin       = 0x00000004
	fStdout      = 0x00000008
	fNameDefault = 0x00000010
	fDosish      = 0x00000020
	fHExtraField = 0x00000040
	fHGMTDiff    = 0x00000080
	fCRC32D      = 0x00000100
	fCRC32C      = 0x00000200
	fMultipart   = 0x00000400
	fHFilter     = 0x00000800
	fHCRC32      = 0x00001000
	fHPath       = 0x00002000
	fMask        = 0x00003FFF
	fOSMask      = 0xFF000000
	fCSMask      = 0x00F00000
	fReserved    = ^uint32(fMask | fOSMask | fCSMask)
)

// lzopVersion is the newest format version this reader understands
// (that of lzop 1.04); files needing a newer one are rejected, as lzop does.
const lzopVersion = 0x1040

// Reader decompresses an lzop stream. It is not safe for concurrent use.
type Reader struct {
	r     io.Reader
	off   int64 // bytes consumed from r
	flags uint32
	block int // number of the block being or last decoded, from 1

	cbuf []byte // compressed block data, reused
	dbuf []byte // decompressed block data, reused
	out  []byte // unread part of dbuf
	err  error  // sticky error or io.EOF
	tmp  [16]byte
}

// NewReader returns a reader that decompresses the lzop stream in r.
// It reads and checks the file header before returning. Reads from r are
// buffered unless r is already a *bufio.Reader, so the Reader may consume
// bytes past the end of the lzop stream.
func NewReader(r io.Reader) (*Reader, error) {
	if _, ok := r.(*bufio.Reader); !ok {
		r = bufio.NewReaderSize(r, 64<<10)
	}
	z := &Reader{r: r}
	if err := z.readHeader(); err != nil {
		return nil, err
	}
	return z, nil
}

func (z *Reader) errorf(off int64, err error, format string, args ...any) error {
	return &Error{Offset: off, Msg: fmt.Sprintf(format, args...), Err: err}
}

// readFull fills p from the stream. what names the field for errors; for
// block fields, block is the block number (0 for the file header).
func (z *Reader) readFull(p []byte, what string, block int) error {
	n, err := io.ReadFull(z.r, p)
	z.off += int64(n)
	if err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			err = io.ErrUnexpectedEOF
		}
		if block > 0 {
			return z.errorf(z.off, err, "reading block %d %s", block, what)
		}
		return z.errorf(z.off, err, "reading %s", what)
	}
	return nil
}

// Kept as one function: it follows lzop's header field by field, in the order of the format.
func (z *Reader) readHeader() error {
	var magic [9]byte
	n, err := io.ReadFull(z.r, magic[:])
	z.off += int64(n)
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		return z.errorf(z.off, err, "reading magic")
	}
	if magic != Magic {
		if n == len(magic) || !isPrefix(magic[:n], Magic[:]) {
			return z.errorf(0, ErrFormat, "not an lzop file (bad magic % x)", magic[:n])
		}
		return z.errorf(z.off, io.ErrUnexpectedEOF, "reading magic")
	}

	// Everything from version to the end of the name is covered by the
	// header checksum; collect it in one buffer (at most 39+255 bytes).
	var hb [64 + 255]byte
	h := hb[:0]
	read := func(n int, what string) ([]byte, error) {
		start := len(h)
		h = h[:start+n]
		if err := z.readFull(h[start:], what, 0); err != nil {
			return nil, err
		}
		return h[start:], nil
	}

	b, err := read(4, "header")
	if err != nil {
		return err
	}
	version := binary.BigEndian.Uint16(b)
	if version < 0x0900 {
		return z.errorf(9, ErrFormat, "invalid header: version %#04x too old", version)
	}
	needed := uint16(0x0900)
	if version >= 0x0940 {
		b, err = read(2, "header")
		if err != nil {
			return err
		}
		needed = binary.BigEndian.Uint16(b)
		if needed > lzopVersion {
			return z.errorf(13, ErrUnsupported, "file needs lzop version %#04x to extract (newer than %#04x)", needed, lzopVersion)
		}
		if needed < 0x0900 {
			return z.errorf(13, ErrFormat, "invalid header: version needed to extract %#04x", needed)
		}
	}
	methodOff := z.off
	b, err = read(1, "header")
	if err != nil {
		return err
	}
	method := b[0]
	if version >= 0x0940 {
		if _, err = read(1, "header"); err != nil { // level: irrelevant for decompression
			return err
		}
	}
	flagsOff := z.off
	b, err = read(4, "header")
	if err != nil {
		return err
	}
	flags := binary.BigEndian.Uint32(b)
	if flags&fHFilter != 0 {
		if _, err = read(4, "header"); err != nil {
			return err
		}
	}
	if version >= 0x0940 {
		_, err = read(12, "header") // mode, mtime_low, mtime_high
	} else {
		_, err = read(8, "header") // mode, mtime_low
	}
	if err != nil {
		return err
	}
	b, err = read(1, "header")
	if err != nil {
		return err
	}
	if nameLen := int(b[0]); nameLen > 0 {
		if _, err = read(nameLen, "header file name"); err != nil {
			return err
		}
	}

	sumOff := z.off
	if err := z.readFull(z.tmp[:4], "header checksum", 0); err != nil {
		return err
	}
	want := binary.BigEndian.Uint32(z.tmp[:4])
	if got, kind := headerSum(flags, h); got != want {
		return z.errorf(sumOff, ErrChecksum, "header %s mismatch (stored %08x, computed %08x)", kind, want, got)
	}

	// Checked after the checksum, as lzop does, so a damaged header is
	// reported as damaged rather than as using odd features.
	switch method {
	case 1, 2, 3: // LZO1X-1, LZO1X-1(15), LZO1X-999: one decompressor
	default:
		return z.errorf(methodOff, ErrUnsupported, "unsupported compression method %d (only LZO1X methods 1-3)", method)
	}
	if flags&fReserved != 0 {
		return z.errorf(flagsOff, ErrUnsupported, "unknown header flags %#08x", flags&fReserved)
	}
	if flags&fHFilter != 0 {
		return z.errorf(flagsOff, ErrUnsupported, "lzop filters are not supported")
	}
	if flags&fMultipart != 0 {
		return z.errorf(flagsOff, ErrUnsupported, "multipart lzop files are not supported")
	}

	if flags&fHExtraField != 0 {
		// The extra field (unused by lzop) is skipped without buffering;
		// its checksum covers the length and the data.
		extraOff := z.off
		if err := z.readFull(z.tmp[:4], "header extra field length", 0); err != nil {
			return err
		}
		n := binary.BigEndian.Uint32(z.tmp[:4])
		var hs hash.Hash32
		if flags&fHCRC32 != 0 {
			hs = crc32.NewIEEE()
		} else {
			hs = adler32.New()
		}
		hs.Write(z.tmp[:4])
		c, err := io.CopyN(hs, z.r, int64(n))
		z.off += c
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return z.errorf(z.off, err, "reading header extra field")
		}
		if err := z.readFull(z.tmp[:4], "header extra field checksum", 0); err != nil {
			return err
		}
		if want, got := binary.BigEndian.Uint32(z.tmp[:4]), hs.Sum32(); want != got {
			return z.errorf(extraOff, ErrChecksum, "header extra field checksum mismatch (stored %08x, computed %08x)", want, got)
		}
	}
	z.flags = flags
	return nil
}

func headerSum(flags uint32, b []byte) (uint32, string) {
	if flags&fHCRC32 != 0 {
		return crc32.ChecksumIEEE(b), "crc32"
	}
	return adler32.Checksum(b), "adler32"
}

func isPrefix(p, of []byte) bool {
	return len(p) <= len(of) && string(p) == string(of[:len(p)])
}

// Read reads decompressed data into p. It returns io.EOF after the
// end-of-stream marker; any other error is sticky and includes the offset in
// the compressed stream where it was found.
func (z *Reader) Read(p []byte) (int, error) {
	for len(z.out) == 0 {
		if z.err != nil {
			return 0, z.err
		}
		if len(p) == 0 {
			return 0, nil
		}
		n, direct, err := z.nextBlock(p)
		if err != nil {
			z.err = err
			return 0, err
		}
		if direct {
			return n, nil
		}
	}
	n := copy(p, z.out)
	z.out = z.out[n:]
	return n, nil
}

// nextBlock decodes the next block. If it fits in p it is decoded straight
// into p and (n, true) is returned; otherwise it goes to z.out.
// At the end of the stream it returns io.EOF.
// Kept as one function: it follows one lzop block's fields and checks in the order of the format.
func (z *Reader) nextBlock(p []byte) (int, bool, error) {
	blockOff := z.off
	block := z.block + 1

	n, err := io.ReadFull(z.r, z.tmp[:4])
	z.off += int64(n)
	if err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			// A missing end marker is truncation too: lzop always writes one.
			return 0, false, z.errorf(z.off, io.ErrUnexpectedEOF, "reading block %d header", block)
		}
		return 0, false, z.errorf(z.off, err, "reading block %d header", block)
	}
	dstLen := binary.BigEndian.Uint32(z.tmp[:4])
	if dstLen == 0 {
		return 0, false, io.EOF
	}
	z.block = block
	if err := z.readFull(z.tmp[:4], "header", block); err != nil {
		return 0, false, err
	}
	srcLen := binary.BigEndian.Uint32(z.tmp[:4])
	if dstLen == 0xFFFFFFFF {
		return 0, false, z.errorf(blockOff, ErrUnsupported, "block %d: split lzop files are not supported", block)
	}
	if dstLen > MaxBlockSize {
		return 0, false, z.errorf(blockOff, ErrFormat, "block %d: uncompressed size %d exceeds maximum %d", block, dstLen, MaxBlockSize)
	}
	if srcLen == 0 || srcLen > dstLen {
		return 0, false, z.errorf(blockOff, ErrFormat, "block %d: invalid compressed size %d for uncompressed size %d", block, srcLen, dstLen)
	}
	stored := srcLen == dstLen
	if !stored && uint64(dstLen) > uint64(srcLen)*maxRatio {
		return 0, false, z.errorf(blockOff, ErrFormat, "block %d: impossible compression ratio (%d bytes from %d)", block, dstLen, srcLen)
	}

	// Checksums, in lzop's order.
	var dAdler, dCRC, cAdler, cCRC uint32
	nsum := 0
	f := z.flags
	if f&fAdler32D != 0 {
		nsum++
	}
	if f&fCRC32D != 0 {
		nsum++
	}
	if !stored {
		if f&fAdler32C != 0 {
			nsum++
		}
		if f&fCRC32C != 0 {
			nsum++
		}
	}
	if nsum > 0 {
		sums := z.tmp[:4*nsum]
		if err := z.readFull(sums, "checksums", block); err != nil {
			return 0, false, err
		}
		next := func() uint32 {
			v := binary.BigEndian.Uint32(sums)
			sums = sums[4:]
			return v
		}
		if f&fAdler32D != 0 {
			dAdler = next()
		}
		if f&fCRC32D != 0 {
			dCRC = next()
		}
		if !stored {
			if f&fAdler32C != 0 {
				cAdler = next()
			}
			if f&fCRC32C != 0 {
				cCRC = next()
			}
		}
	}

	// Destination: p itself when the whole block fits, else the reused buffer.
	direct := len(p) >= int(dstLen)
	var dst []byte
	if direct {
		dst = p[:dstLen]
	}

	if stored {
		if dst == nil {
			// Grow only as data actually arrives (see readGrow).
			z.dbuf, err = z.readGrow(z.dbuf, int(srcLen), int(dstLen), block)
			if err != nil {
				return 0, false, err
			}
			dst = z.dbuf[:dstLen]
		} else if err := z.readFull(dst, "data", block); err != nil {
			return 0, false, err
		}
	} else {
		z.cbuf, err = z.readGrow(z.cbuf, int(srcLen), int(dstLen), block)
		if err != nil {
			return 0, false, err
		}
		src := z.cbuf[:srcLen]
		if f&fAdler32C != 0 {
			if got := adler32.Checksum(src); got != cAdler {
				return 0, false, z.errorf(blockOff, ErrChecksum, "compressed adler32 mismatch in block %d (stored %08x, computed %08x)", block, cAdler, got)
			}
		}
		if f&fCRC32C != 0 {
			if got := crc32.ChecksumIEEE(src); got != cCRC {
				return 0, false, z.errorf(blockOff, ErrChecksum, "compressed crc32 mismatch in block %d (stored %08x, computed %08x)", block, cCRC, got)
			}
		}
		if dst == nil {
			if cap(z.dbuf) < int(dstLen) {
				z.dbuf = make([]byte, dstLen)
			}
			dst = z.dbuf[:dstLen]
		}
		got, err := decompress(src, dst)
		if err != nil {
			return 0, false, z.errorf(blockOff, ErrFormat, "block %d: corrupt LZO data: %v", block, err)
		}
		if got != int(dstLen) {
			return 0, false, z.errorf(blockOff, ErrFormat, "block %d: decompressed to %d bytes, header says %d", block, got, dstLen)
		}
	}

	if f&fAdler32D != 0 {
		if got := adler32.Checksum(dst); got != dAdler {
			return 0, false, z.errorf(blockOff, ErrChecksum, "uncompressed adler32 mismatch in block %d (stored %08x, computed %08x)", block, dAdler, got)
		}
	}
	if f&fCRC32D != 0 {
		if got := crc32.ChecksumIEEE(dst); got != dCRC {
			return 0, false, z.errorf(blockOff, ErrChecksum, "uncompressed crc32 mismatch in block %d (stored %08x, computed %08x)", block, dCRC, got)
		}
	}
	if direct {
		return int(dstLen), true, nil
	}
	z.out = dst
	return 0, false, nil
}

// readGrow reads exactly n bytes into buf, reusing its capacity, and returns
// the filled buffer. When buf is too small it grows geometrically towards
// limit (n <= limit; the block's uncompressed size, so that one allocation
// fits all later blocks of that size), but never to more than twice the bytes
// read so far, or 256 KiB: a header claiming a huge block in a short stream
// cannot make us allocate much more than the stream's actual size.
func (z *Reader) readGrow(buf []byte, n, limit, block int) ([]byte, error) {
	if cap(buf) >= n {
		buf = buf[:n]
		return buf, z.readFull(buf, "data", block)
	}
	buf = buf[:0]
	for len(buf) < n {
		if len(buf) == cap(buf) {
			nb := make([]byte, len(buf), min(limit, max(2*cap(buf), 256<<10)))
			copy(nb, buf)
			buf = nb
		}
		start := len(buf)
		buf = buf[:min(n, cap(buf))]
		if err := z.readFull(buf[start:], "data", block); err != nil {
			return buf, err
		}
	}
	return buf, nil
}

// decompress runs the LZO1X decoder, turning a decoder panic on hostile
// input into an error.
func decompress(src, dst []byte) (n int, err error) {
	defer func() {
		if r := recover(); r != nil {
			n, err = 0, fmt.Errorf("decoder panic: %v", r)
		}
	}()
	return lzo.Decompress(src, dst)
}
