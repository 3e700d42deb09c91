// Package pipe is the project's one buffered pipe: io.Pipe with a few
// large buffers between the writer and the reader, so that a producer
// (a decoder, the optimizer, a blocking read of standard input) runs ahead
// of its consumer by up to the buffered bytes instead of waiting for each
// write to be taken.
package pipe

import (
	"io"
	"sync"
)

// New returns the two ends of a pipe with n buffers (at least 1) of size
// bytes, allocated as they are first needed.
func New(size, n int) (*Reader, *Writer) {
	n = max(n, 1)
	size = max(size, 1)
	p := &pipe{full: make(chan []byte, n), free: make(chan []byte, n), done: make(chan struct{}), size: size, pool: poolOf(size)}
	for range n {
		p.free <- nil
	}
	return &Reader{p: p}, &Writer{p: p}
}

type pipe struct {
	full, free chan []byte
	size       int
	pool       *sync.Pool    // of buffers of size bytes
	done       chan struct{} // closed by the reader's CloseWithError
	once       sync.Once
	rerr       error // the reader's close error, for both ends
	werr       error // the writer's close error (io.EOF if nil); set before full is closed
}

// Writer is the writing end. Its methods must be called from one
// goroutine at a time.
type Writer struct {
	p   *pipe
	cur []byte
}

// Write copies b into the pipe's buffers. It blocks only while every
// buffer waits for the reader, and fails once the reader has stopped.
func (w *Writer) Write(b []byte) (int, error) {
	n := 0
	for len(b) > 0 {
		if w.cur == nil || len(w.cur) == cap(w.cur) {
			if w.cur != nil {
				if err := w.send(w.cur); err != nil {
					return n, err
				}
				w.cur = nil
			}
			buf, err := w.spare()
			if err != nil {
				return n, err
			}
			if buf == nil {
				buf = w.p.newBuf()
			}
			w.cur = buf
		}
		k := min(len(b), cap(w.cur)-len(w.cur))
		w.cur = append(w.cur, b[:k]...)
		b = b[k:]
		n += k
	}
	return n, nil
}

// stopped returns the reader's close error once it has stopped: checked
// first, so that a writer with buffers to spare notices a stop at once.
func (w *Writer) stopped() error {
	select {
	case <-w.p.done:
		return w.p.rerr
	default:
		return nil
	}
}

func (w *Writer) send(b []byte) error {
	if err := w.stopped(); err != nil {
		return err
	}
	select {
	case w.p.full <- b:
		return nil
	case <-w.p.done:
		return w.p.rerr
	}
}

func (w *Writer) spare() ([]byte, error) {
	if err := w.stopped(); err != nil {
		return nil, err
	}
	select {
	case buf := <-w.p.free:
		return buf[:0], nil
	case <-w.p.done:
		return nil, w.p.rerr
	}
}

// ReadFrom reads r into the pipe's buffers until r's end (nil) or error,
// without a copy: each read goes straight into a buffer, which is handed
// to the reader as soon as the read returns.
func (w *Writer) ReadFrom(r io.Reader) (int64, error) {
	var total int64
	for {
		if w.cur == nil {
			buf, err := w.spare()
			if err != nil {
				return total, err
			}
			if buf == nil {
				buf = w.p.newBuf()
			}
			w.cur = buf
		}
		n, err := r.Read(w.cur[len(w.cur):cap(w.cur)])
		w.cur = w.cur[:len(w.cur)+n]
		total += int64(n)
		if len(w.cur) > 0 {
			if serr := w.send(w.cur); serr != nil {
				return total, serr
			}
			w.cur = nil
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// CloseWithError ends the stream after what was written: the reader gets
// err, or io.EOF if err is nil, after the data. It must be called once.
func (w *Writer) CloseWithError(err error) error {
	if err == nil {
		err = io.EOF
	}
	w.p.werr = err
	if len(w.cur) > 0 {
		w.send(w.cur) // fails only if the reader stopped and wants no more
	}
	w.cur = nil
	close(w.p.full)
	return nil
}

// Close is CloseWithError(nil).
func (w *Writer) Close() error { return w.CloseWithError(nil) }

// Reader is the reading end. Its methods other than CloseWithError must be
// called from one goroutine at a time.
type Reader struct {
	p   *pipe
	cur []byte // unread part of the block being read
	blk []byte // that block, to give back
	eof bool
}

// next makes cur hold unread bytes; it returns the stream's end or the
// reader's close error.
func (r *Reader) next() error {
	for len(r.cur) == 0 {
		if r.blk != nil {
			r.p.free <- r.blk // never blocks: only n blocks exist
			r.blk = nil
		}
		if r.eof {
			r.recycle()
			return r.p.werr
		}
		select {
		case <-r.p.done:
			return r.p.rerr
		default:
		}
		select {
		case blk, ok := <-r.p.full:
			if !ok {
				r.eof = true
				continue
			}
			r.blk, r.cur = blk, blk
		case <-r.p.done:
			return r.p.rerr
		}
	}
	return nil
}

// Read reads what the writer wrote; at the end it returns the writer's
// close error (io.EOF after Close), and after CloseWithError on this end
// that error.
func (r *Reader) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	if err := r.next(); err != nil {
		return 0, err
	}
	n := copy(b, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

// WriteTo writes the stream to dst block by block, without a copy, until
// the writer closes the pipe (nil for io.EOF) or dst fails.
func (r *Reader) WriteTo(dst io.Writer) (int64, error) {
	var total int64
	for {
		if err := r.next(); err != nil {
			if err == io.EOF {
				err = nil
			}
			return total, err
		}
		n, err := dst.Write(r.cur)
		total += int64(n)
		r.cur = r.cur[n:]
		if err != nil {
			return total, err
		}
	}
}

// CloseWithError stops the stream: later and blocked Writes and Reads
// fail with err (io.ErrClosedPipe if nil). It may be called from any
// goroutine, more than once; the first error stays.
func (r *Reader) CloseWithError(err error) error {
	if err == nil {
		err = io.ErrClosedPipe
	}
	r.p.once.Do(func() {
		r.p.rerr = err
		close(r.p.done)
	})
	return nil
}

// The buffers of pipes read to their end are kept for the next pipes of
// their size (a push makes a pipe of 8 MiB of buffers for every dump).
var (
	poolsMu sync.Mutex
	pools   = map[int]*sync.Pool{}
)

func poolOf(size int) *sync.Pool {
	poolsMu.Lock()
	defer poolsMu.Unlock()
	p := pools[size]
	if p == nil {
		p = &sync.Pool{}
		pools[size] = p
	}
	return p
}

// newBuf returns an empty buffer of the pipe's size.
func (p *pipe) newBuf() []byte {
	if b, ok := p.pool.Get().(*[]byte); ok {
		return (*b)[:0]
	}
	return make([]byte, 0, p.size)
}

// recycle gives the pipe's buffers to the pool of their size once the
// reader has taken all the writer wrote: the writer has closed its end
// and uses none, the reader holds none (what Read and WriteTo handed
// out is not to be kept).
func (r *Reader) recycle() {
	for {
		select {
		case b := <-r.p.free:
			if cap(b) == r.p.size {
				r.p.pool.Put(&b)
			}
		default:
			return
		}
	}
}
