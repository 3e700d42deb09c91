package main

import (
	"context"
	"errors"
	"io"
	"os"

	"github.com/vmasync/vmasync/internal/decompress"
)

// input is an opened archive: decompressed, interruptible.
type input struct {
	name   string // as given on the command line ("-" for stdin)
	format decompress.Format
	r      io.Reader // decompressed archive bytes
	// total and pos give the progress percentage: the position in the
	// (possibly compressed) input file against its size. total is 0 when
	// the size is unknown (a pipe).
	total   int64
	pos     func() int64
	closers []func() error
}

// displayName is how an input is named in messages.
func displayName(path string) string {
	if path == "-" {
		return "stdin"
	}
	return path
}

// openInput opens path ("-" for stdin) and detects its compression with
// internal/decompress. The compressed bytes are counted on their way in,
// which gives the progress percentage for compressed files too.
func openInput(e *env, path string) (*input, error) {
	in := &input{name: path}
	var raw io.Reader
	var f *os.File
	if path == "-" {
		if isTerminal(e.stdin) {
			return nil, errors.New("refusing to read an archive from a terminal (pipe or redirect it into stdin)")
		}
		f, _ = e.stdin.(*os.File)
		// A pipe read can block for ever; read it in a goroutine so that
		// an interrupt is noticed at once.
		pr := newPumpReader(e.ctx, e.stdin)
		in.closers = append(in.closers, func() error { pr.stop(); return nil })
		raw = pr
	} else {
		var err error
		f, err = os.Open(path)
		if err != nil {
			return nil, err
		}
		in.closers = append(in.closers, f.Close)
		raw = &ctxReader{ctx: e.ctx, r: f}
	}
	cr := &decompress.CountingReader{R: raw}
	if f != nil {
		if st, err := f.Stat(); err == nil && st.Mode().IsRegular() && st.Size() > 0 {
			in.total = st.Size()
			in.pos = cr.Count
		}
	}
	rc, format, err := decompress.NewReader(cr)
	if err != nil {
		in.Close()
		return nil, err
	}
	in.closers = append([]func() error{rc.Close}, in.closers...)
	in.format = format
	in.r = &ctxReader{ctx: e.ctx, r: rc}
	return in, nil
}

// Close releases the input.
func (in *input) Close() error {
	var first error
	for _, c := range in.closers {
		if err := c(); err != nil && first == nil {
			first = err
		}
	}
	in.closers = nil
	return first
}

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

// ctxWriter fails writes once ctx is done.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c *ctxWriter) Write(p []byte) (int, error) {
	if c.ctx.Err() != nil {
		return 0, context.Cause(c.ctx)
	}
	return c.w.Write(p)
}

// pumpReader reads r in a goroutine into its own buffers, so that Read
// returns as soon as ctx is done even while the underlying read blocks.
type pumpReader struct {
	ctx  context.Context
	data chan chunk
	free chan []byte
	quit chan struct{}
	cur  chunk
	off  int
	err  error
}

type chunk struct {
	buf []byte
	n   int
	err error
}

const pumpBufSize = 1 << 20

func newPumpReader(ctx context.Context, r io.Reader) *pumpReader {
	p := &pumpReader{ctx: ctx, data: make(chan chunk, 1), free: make(chan []byte, 2), quit: make(chan struct{})}
	p.free <- make([]byte, pumpBufSize)
	p.free <- make([]byte, pumpBufSize)
	go func() {
		for {
			var buf []byte
			select {
			case buf = <-p.free:
			case <-p.quit:
				return
			}
			n, err := r.Read(buf)
			select {
			case p.data <- chunk{buf, n, err}:
			case <-p.quit:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return p
}

func (p *pumpReader) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	for p.off >= p.cur.n {
		if p.err != nil {
			return 0, p.err
		}
		if p.cur.buf != nil {
			p.free <- p.cur.buf
			p.cur = chunk{}
		}
		select {
		case c := <-p.data:
			p.cur, p.off = c, 0
			if c.err != nil {
				p.err = c.err
			}
		case <-p.ctx.Done():
			return 0, context.Cause(p.ctx)
		}
	}
	n := copy(b, p.cur.buf[p.off:p.cur.n])
	p.off += n
	return n, nil
}

// stop ends the goroutine (it may stay blocked in a read until that
// returns).
func (p *pumpReader) stop() {
	select {
	case <-p.quit:
	default:
		close(p.quit)
	}
}
