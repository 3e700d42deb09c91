// Package asyncwrite overlaps writing with producing: a Writer copies what
// it is given into buffers that a goroutine of its own writes out, as
// zstd's asynchronous output does, so that a single-threaded producer
// (decoding, reordering) does not wait for each write system call.
package asyncwrite

import (
	"errors"
	"io"
	"sync"
)

// Writer buffers writes to an underlying io.Writer, which a goroutine of
// its own writes to in order. The first error of the underlying writer is
// returned by a later Write or by Close. Close must be called to flush and
// to stop the goroutine.
type Writer struct {
	w      io.Writer
	size   int
	cur    []byte
	free   chan []byte
	full   chan []byte
	done   chan struct{}
	mu     sync.Mutex
	err    error // the underlying writer's first error
	closed bool
}

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("asyncwrite: write after close")

// NewWriter returns a Writer with n buffers (at least 2) of size bytes.
func NewWriter(w io.Writer, size, n int) *Writer {
	n = max(n, 2)
	a := &Writer{w: w, size: max(size, 1), free: make(chan []byte, n), full: make(chan []byte, n), done: make(chan struct{})}
	for range n {
		a.free <- nil // allocated on first use
	}
	go a.run()
	return a
}

func (a *Writer) run() {
	defer close(a.done)
	for b := range a.full {
		if a.failed() == nil {
			if _, err := a.w.Write(b); err != nil {
				a.mu.Lock()
				a.err = err
				a.mu.Unlock()
			}
		}
		a.free <- b[:0]
	}
}

func (a *Writer) failed() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.err
}

// Write copies p into the buffers; it blocks only while every buffer is
// waiting to be written.
func (a *Writer) Write(p []byte) (int, error) {
	if a.closed {
		return 0, ErrClosed
	}
	if err := a.failed(); err != nil {
		return 0, err
	}
	n := 0
	for len(p) > 0 {
		if a.cur == nil {
			a.cur = <-a.free
			if a.cur == nil {
				a.cur = make([]byte, 0, a.size)
			}
		}
		k := copy(a.cur[len(a.cur):cap(a.cur)], p)
		a.cur = a.cur[:len(a.cur)+k]
		p, n = p[k:], n+k
		if len(a.cur) == cap(a.cur) {
			a.full <- a.cur
			a.cur = nil
		}
	}
	return n, nil
}

// Close writes what is buffered, waits for the goroutine and returns the
// underlying writer's first error.
func (a *Writer) Close() error {
	if !a.closed {
		a.closed = true
		if len(a.cur) > 0 {
			a.full <- a.cur
			a.cur = nil
		}
		close(a.full)
		<-a.done
	}
	return a.failed()
}
