// Package decompress turns a vzdump dump's stream into its plain bytes,
// detecting the compression (zstd, gzip, lzop or none) from the leading
// magic bytes, never from the file name. Opening files and standard input
// is internal/input's job.
package decompress

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/vmasync/vmasync/internal/lzop"
)

// Format names a detected container.
type Format string

const (
	Plain Format = "plain"
	Zstd  Format = "zstd"
	Gzip  Format = "gzip"
	Lzop  Format = "lzop"
)

// Limits for zstd frames. The zstd CLI refuses windows above 128 MiB
// (windowLog 27) unless given --memory or --long; we allow twice that so
// streams made with --long=28 still open, while a hostile frame header
// cannot make us reserve gigabytes. vzdump's own zstd output (default level,
// --rsyncable, --threads) uses windows of a few MiB.
const (
	zstdMaxWindow = 256 << 20
	zstdMaxMemory = 256 << 20
)

// bufSize is the read-ahead buffer for compressed input and pipes. Reads at
// least this large bypass the buffer once it is drained.
const bufSize = 256 << 10

// headLen is the number of leading bytes Detect needs.
const headLen = 9

var (
	zstdMagic = []byte{0x28, 0xB5, 0x2F, 0xFD}
	gzipMagic = []byte{0x1F, 0x8B}
)

// Detect reports the format of the given leading bytes (needs up to 9 bytes).
// Input too short to hold a magic, or matching none, is Plain.
func Detect(head []byte) Format {
	switch {
	case bytes.HasPrefix(head, zstdMagic):
		return Zstd
	case len(head) >= 4 && head[0]&0xF0 == 0x50 && head[1] == 0x2A && head[2] == 0x4D && head[3] == 0x18:
		// zstd skippable frame (magic 0x184D2A5?, little-endian), which the
		// zstd decoder skips before the first real frame.
		return Zstd
	case bytes.HasPrefix(head, gzipMagic):
		return Gzip
	case bytes.HasPrefix(head, lzop.Magic[:]):
		return Lzop
	}
	return Plain
}

// CountingReader counts the bytes read through it from R, for progress
// displays: Count may be called from another goroutine.
type CountingReader struct {
	R io.Reader
	n atomic.Int64
}

func (c *CountingReader) Read(p []byte) (int, error) {
	n, err := c.R.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// Count returns the number of bytes read so far.
func (c *CountingReader) Count() int64 { return c.n.Load() }

// NewReader wraps an already open reader (e.g. a pipe), detecting the format.
// The returned ReadCloser's Close releases the decompressor but does not
// close r. It may read ahead of what it returns, so r should not be used
// afterwards.
func NewReader(r io.Reader) (io.ReadCloser, Format, error) {
	br := bufio.NewReaderSize(r, bufSize)
	head, err := br.Peek(headLen)
	if err != nil && err != io.EOF {
		return nil, "", fmt.Errorf("reading header: %w", err)
	}
	format := Detect(head)
	switch format {
	case Zstd:
		d, err := zstdDecoder(br)
		if err != nil {
			return nil, format, wrapErr(format, err)
		}
		zr := &reader{r: d, format: format}
		zr.close = func() error {
			// A decoder that read its stream to the end goes back to the
			// pool; one that stopped early or failed is closed.
			if zr.eof && d.Reset(nil) == nil {
				zstdDecoders.Put(d)
			} else {
				d.Close()
			}
			return nil
		}
		return zr, format, nil
	case Gzip:
		// Multistream (the default) reads pigz / concatenated members.
		z, err := gzip.NewReader(br)
		if err != nil {
			return nil, format, wrapErr(format, err)
		}
		return &reader{r: z, format: format, close: z.Close}, format, nil
	case Lzop:
		z, err := lzop.NewReader(br)
		if err != nil {
			return nil, format, err // already "lzop: offset N: ..."
		}
		return &reader{r: z, format: format}, format, nil
	}
	return io.NopCloser(br), Plain, nil
}

// zstdDecoders keeps the decoders of streams read to their end for the
// next (a decoder's history buffer is as large as the frame's window, a
// few MiB, allocated anew for each stream otherwise).
var zstdDecoders sync.Pool // *zstd.Decoder

// zstdDecoder returns a streaming decoder of r, from zstdDecoders if it
// holds one.
func zstdDecoder(r io.Reader) (*zstd.Decoder, error) {
	if d, ok := zstdDecoders.Get().(*zstd.Decoder); ok {
		if err := d.Reset(r); err == nil {
			return d, nil
		}
		d.Close()
	}
	return zstd.NewReader(r,
		zstd.WithDecoderConcurrency(1), // streaming, no goroutines
		zstd.WithDecoderMaxWindow(zstdMaxWindow),
		zstd.WithDecoderMaxMemory(zstdMaxMemory),
	)
}

// reader adapts a decompressor: it prefixes errors with the format name.
type reader struct {
	r      io.Reader
	format Format
	close  func() error
	eof    bool // r returned io.EOF
}

func (r *reader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err == io.EOF {
		r.eof = true
	} else if err != nil {
		err = wrapErr(r.format, err)
	}
	return n, err
}

func (r *reader) Close() error {
	if r.close == nil {
		return nil
	}
	c := r.close
	r.close = nil
	return wrapErr(r.format, c())
}

// formatError is a decompressor error prefixed with the format name.
type formatError struct {
	format Format
	err    error
}

func (e *formatError) Error() string { return string(e.format) + ": " + e.err.Error() }
func (e *formatError) Unwrap() error { return e.err }

// wrapErr prefixes err with "format: " unless it already starts that way.
func wrapErr(format Format, err error) error {
	if err == nil {
		return nil
	}
	var fe *formatError
	if errors.As(err, &fe) || strings.HasPrefix(err.Error(), string(format)+":") {
		return err
	}
	return &formatError{format: format, err: err}
}
