// Package readahead reads from a slow source (a decompressor) in a
// goroutine of its own, so that producing the bytes and consuming them run
// on two cores.
package readahead

import (
	"io"
	"sync"
)

type chunk struct {
	buf []byte
	n   int
	err error
}

// Reader is an io.ReadCloser that returns what a background goroutine
// has read ahead from the source.
type Reader struct {
	full  chan chunk
	free  chan []byte
	cur   chunk
	off   int
	done  chan struct{}
	once  sync.Once
	final error
}

// NewReader starts reading r in the background into n buffers of size
// bytes each. Close stops the goroutine (it does not close r).
func NewReader(r io.Reader, size, n int) *Reader {
	ra := &Reader{full: make(chan chunk, n), free: make(chan []byte, n), done: make(chan struct{})}
	for range n {
		ra.free <- make([]byte, size)
	}
	go func() {
		defer close(ra.full)
		for {
			var buf []byte
			select {
			case buf = <-ra.free:
			case <-ra.done:
				return
			}
			m, err := io.ReadFull(r, buf)
			if err == io.ErrUnexpectedEOF {
				err = io.EOF
			}
			select {
			case ra.full <- chunk{buf: buf, n: m, err: err}:
			case <-ra.done:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return ra
}

// Read copies read-ahead bytes into p.
func (ra *Reader) Read(p []byte) (int, error) {
	for ra.off >= ra.cur.n {
		if ra.final != nil {
			return 0, ra.final
		}
		if ra.cur.buf != nil {
			ra.free <- ra.cur.buf
			ra.cur.buf = nil
		}
		c, ok := <-ra.full
		if !ok {
			ra.final = io.ErrClosedPipe
			return 0, ra.final
		}
		ra.cur, ra.off = c, 0
		if c.err != nil && c.n == 0 {
			ra.final = c.err
			return 0, c.err
		}
		if c.err != nil {
			ra.final = c.err // delivered after this chunk's bytes
		}
	}
	n := copy(p, ra.cur.buf[ra.off:ra.cur.n])
	ra.off += n
	return n, nil
}

// Close stops the background reader.
func (ra *Reader) Close() error {
	ra.once.Do(func() { close(ra.done) })
	return nil
}
