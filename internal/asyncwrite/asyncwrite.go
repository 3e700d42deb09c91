// Package asyncwrite overlaps writing with producing: a Writer copies what
// it is given into the buffers of an internal/pipe that a goroutine of its
// own writes out, as zstd's asynchronous output does, so that a
// single-threaded producer (decoding, reordering) does not wait for each
// write system call.
package asyncwrite

import (
	"errors"
	"io"

	"golang.org/x/sync/errgroup"

	"github.com/vmasync/vmasync/internal/pipe"
)

// Writer buffers writes to an underlying io.Writer, which a goroutine of
// its own writes to in order. The first error of the underlying writer is
// returned by a later Write or by Close. Close must be called to flush and
// to stop the goroutine.
type Writer struct {
	pw     *pipe.Writer
	g      errgroup.Group // the goroutine that writes out
	closed bool
}

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("asyncwrite: write after close")

// NewWriter returns a Writer with n buffers (at least 2) of size bytes.
func NewWriter(w io.Writer, size, n int) *Writer {
	pr, pw := pipe.New(size, max(n, 2))
	a := &Writer{pw: pw}
	a.g.Go(func() error {
		_, err := pr.WriteTo(w)
		if err != nil {
			pr.CloseWithError(err) // later Writes fail with err
		}
		return err
	})
	return a
}

// Write copies p into the buffers; it blocks only while every buffer is
// waiting to be written.
func (a *Writer) Write(p []byte) (int, error) {
	if a.closed {
		return 0, ErrClosed
	}
	return a.pw.Write(p)
}

// Close writes what is buffered, waits for the goroutine and returns the
// underlying writer's first error.
func (a *Writer) Close() error {
	if !a.closed {
		a.closed = true
		a.pw.Close()
	}
	return a.g.Wait()
}
