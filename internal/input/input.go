// Package input opens the archive a command reads, the one way every
// command does it: a path or "-" for standard input, decompressed by its
// magic bytes (internal/decompress), with reads that fail once a context
// is done, and the position and size of the stored (possibly compressed)
// stream, so that a progress display compares like with like.
package input

import (
	"bufio"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"sync/atomic"

	"github.com/vmasync/vmasync/internal/decompress"
	"github.com/vmasync/vmasync/internal/pipe"
)

// Options tunes Open.
type Options struct {
	// Stdin is read for "-" (default os.Stdin). A terminal is refused.
	Stdin io.Reader
}

// Progress is how far a reader has come through an input: Read counts the
// archive bytes (uncompressed) for a byte count and a rate; Pos against
// Size, both in bytes of the stored stream, gives the percentage.
type Progress struct {
	Read int64
	Pos  int64
	Size int64 // 0 when unknown (a pipe)
}

// Input is an opened archive. Its Read returns the decompressed archive
// bytes; Source gives what a codec should read.
type Input struct {
	// Name is the path as given ("-" for standard input).
	Name string
	// Format is the compression the stream is stored with.
	Format decompress.Format

	ctx    context.Context
	r      io.Reader // decompressed bytes
	file   *File     // the plain regular file, for positioned reads
	read   bool      // Read was called: the file is no longer at its start
	stored *decompress.CountingReader
	size   int64
	closer []func() error
}

// ErrTerminal is returned for "-" when standard input is a terminal.
var ErrTerminal = errors.New("refusing to read an archive from a terminal (pipe or redirect it into stdin)")

// bufSize is the read-ahead of plain files read as a stream.
const bufSize = 256 << 10

// Open opens path ("-" for standard input) and detects its compression.
// Reads fail with ctx's cause once ctx is done, at once even while a read
// of a pipe blocks.
func Open(ctx context.Context, path string, opt Options) (*Input, error) {
	in := &Input{Name: path, ctx: ctx}
	var raw io.Reader
	if path == "-" {
		stdin := opt.Stdin
		if stdin == nil {
			stdin = os.Stdin
		}
		raw = stdin
		f, _ := stdin.(*os.File)
		if f != nil {
			if st, err := f.Stat(); err == nil {
				if st.Mode()&fs.ModeCharDevice != 0 {
					return nil, ErrTerminal
				}
				if st.Mode().IsRegular() {
					// A redirected file: its reads do not block.
					in.size = st.Size()
					raw = &ctxReader{ctx: ctx, r: f}
				}
			}
		}
		if in.size == 0 {
			raw = pump(ctx, stdin, in)
		}
	} else {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		in.closer = append(in.closer, f.Close)
		st, err := f.Stat()
		if err != nil {
			in.Close()
			return nil, err
		}
		if st.Mode().IsRegular() {
			in.size = st.Size()
			// Sniff with ReadAt so that a plain file stays at offset 0
			// for positioned reads.
			head := make([]byte, 16)
			n, err := f.ReadAt(head, 0)
			if err != nil && err != io.EOF {
				in.Close()
				return nil, err
			}
			if decompress.Detect(head[:n]) == decompress.Plain {
				in.Format = decompress.Plain
				in.file = &File{f: f}
				in.r = &ctxReader{ctx: ctx, r: bufio.NewReaderSize(in.file, bufSize)}
				return in, nil
			}
		}
		raw = &ctxReader{ctx: ctx, r: f}
		if !st.Mode().IsRegular() {
			raw = pump(ctx, f, in) // a FIFO or device: reads may block
		}
	}
	in.stored = &decompress.CountingReader{R: raw}
	rc, format, err := decompress.NewReader(in.stored)
	if err != nil {
		in.Close()
		return nil, err
	}
	in.closer = append([]func() error{rc.Close}, in.closer...)
	in.Format = format
	in.r = &ctxReader{ctx: ctx, r: rc}
	return in, nil
}

// pump reads r in a goroutine through a buffered pipe, so that a Read
// returns as soon as ctx is done even while the read of r blocks.
func pump(ctx context.Context, r io.Reader, in *Input) io.Reader {
	pr, pw := pipe.New(1<<20, 2)
	go func() {
		_, err := pw.ReadFrom(r)
		pw.CloseWithError(err)
	}()
	stop := context.AfterFunc(ctx, func() { pr.CloseWithError(context.Cause(ctx)) })
	in.closer = append(in.closer, func() error {
		stop()
		pr.CloseWithError(nil) // ends the goroutine after its current read
		return nil
	})
	return pr
}

// Read reads decompressed archive bytes.
func (in *Input) Read(p []byte) (int, error) {
	in.read = true
	return in.r.Read(p)
}

// Source returns what a codec should read: the plain regular file itself
// when it has not been read through Read yet (vma.Optimize then reads it
// with positioned reads), else the Input.
func (in *Input) Source() io.Reader {
	if in.file != nil && !in.read {
		return in.file
	}
	return in
}

// File returns the plain regular file, or nil for compressed input or a
// pipe.
func (in *Input) File() *File { return in.file }

// Pos returns how many bytes of the stored stream have been read so far:
// compressed bytes for a compressed input. It may be called from another
// goroutine.
func (in *Input) Pos() int64 {
	var n int64
	if in.file != nil {
		n = in.file.n.Load()
	} else if in.stored != nil {
		n = in.stored.Count()
	}
	if in.size > 0 {
		n = min(n, in.size)
	}
	return n
}

// Size returns the size of the stored stream, 0 when it is unknown.
func (in *Input) Size() int64 { return in.size }

// Progress returns how far the input has been read, read being the
// archive bytes a codec reports.
func (in *Input) Progress(read int64) Progress {
	return Progress{Read: read, Pos: in.Pos(), Size: in.size}
}

// Track returns a progress callback for a codec (which reports archive
// bytes) that calls f with the input's Progress, or nil when f is nil.
func (in *Input) Track(f func(Progress)) func(read int64) {
	if f == nil {
		return nil
	}
	return func(read int64) { f(in.Progress(read)) }
}

// Close releases the input (standard input is left open).
func (in *Input) Close() error {
	var first error
	for _, c := range in.closer {
		if err := c(); err != nil && first == nil {
			first = err
		}
	}
	in.closer = nil
	return first
}

// DisplayName is how an input path is named in messages: "stdin" for "-".
func DisplayName(path string) string {
	if path == "-" {
		return "stdin"
	}
	return path
}

// File is a plain archive file read in place; it counts the bytes read
// through it for Pos. It satisfies vma.File.
type File struct {
	f *os.File
	n atomic.Int64
}

func (f *File) Read(p []byte) (int, error) {
	n, err := f.f.Read(p)
	f.n.Add(int64(n))
	return n, err
}

// ReadAt reads at off, counting the bytes.
func (f *File) ReadAt(p []byte, off int64) (int, error) {
	n, err := f.f.ReadAt(p, off)
	f.n.Add(int64(n))
	return n, err
}

// Seek sets the offset of the next Read.
func (f *File) Seek(off int64, whence int) (int64, error) { return f.f.Seek(off, whence) }

// Stat describes the file.
func (f *File) Stat() (fs.FileInfo, error) { return f.f.Stat() }

// Name is the file's path.
func (f *File) Name() string { return f.f.Name() }

// ctxReader fails reads once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if c.ctx.Err() != nil {
		return 0, context.Cause(c.ctx)
	}
	return c.r.Read(p)
}
