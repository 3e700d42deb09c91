package report

import (
	"context"
	"io"
	"sync/atomic"
)

// fanout copies one byte stream to several readers, each read on its own
// goroutine, without holding more than a fixed number of blocks: Write
// copies into a free block and queues it for every reader; the block is
// free again when the last reader has consumed it. A slow reader slows the
// writer down (back-pressure), it never makes the fanout buffer more.
type fanout struct {
	ctx  context.Context
	free chan *block
	outs []*fanReader
}

type block struct {
	buf  []byte
	n    int
	refs atomic.Int32
}

const (
	fanBlockSize = 1 << 20
	fanBlocks    = 12 // per fanout: 12 MiB in flight
)

// newFanout returns a fanout to n readers. Writes and reads fail with the
// context's cause once ctx is done.
func newFanout(ctx context.Context, n int) *fanout {
	f := &fanout{ctx: ctx, free: make(chan *block, fanBlocks)}
	for range fanBlocks {
		f.free <- &block{buf: make([]byte, fanBlockSize)}
	}
	for range n {
		f.outs = append(f.outs, &fanReader{ctx: ctx, in: make(chan *block, fanBlocks), free: f.free})
	}
	return f
}

// reader returns the i-th reader.
func (f *fanout) reader(i int) *fanReader { return f.outs[i] }

func (f *fanout) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		var b *block
		select {
		case b = <-f.free:
		case <-f.ctx.Done():
			return written, context.Cause(f.ctx)
		}
		b.n = copy(b.buf, p)
		b.refs.Store(int32(len(f.outs)))
		for _, o := range f.outs {
			select {
			case o.in <- b:
			case <-f.ctx.Done():
				return written, context.Cause(f.ctx)
			}
		}
		p = p[b.n:]
		written += b.n
	}
	return written, nil
}

// ReadFrom fills blocks straight from r (no intermediate copy) until EOF.
func (f *fanout) ReadFrom(r io.Reader) (int64, error) {
	var total int64
	for {
		var b *block
		select {
		case b = <-f.free:
		case <-f.ctx.Done():
			return total, context.Cause(f.ctx)
		}
		n, err := io.ReadFull(r, b.buf)
		if n > 0 {
			b.n = n
			b.refs.Store(int32(len(f.outs)))
			for _, o := range f.outs {
				select {
				case o.in <- b:
				case <-f.ctx.Done():
					return total, context.Cause(f.ctx)
				}
			}
			total += int64(n)
		} else {
			f.free <- b
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// Close ends the stream: readers see io.EOF after the queued blocks.
func (f *fanout) Close() error {
	for _, o := range f.outs {
		close(o.in)
	}
	return nil
}

// fanReader is one reader of a fanout.
type fanReader struct {
	ctx  context.Context
	in   chan *block
	free chan *block
	cur  *block
	off  int
	eof  bool
}

func (r *fanReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for r.cur == nil {
		if r.eof {
			return 0, io.EOF
		}
		select {
		case b, ok := <-r.in:
			if !ok {
				r.eof = true
				return 0, io.EOF
			}
			r.cur, r.off = b, 0
		case <-r.ctx.Done():
			return 0, context.Cause(r.ctx)
		}
	}
	n := copy(p, r.cur.buf[r.off:r.cur.n])
	r.off += n
	if r.off == r.cur.n {
		r.release()
	}
	return n, nil
}

func (r *fanReader) release() {
	if r.cur.refs.Add(-1) == 0 {
		r.free <- r.cur // never blocks: only fanBlocks blocks exist
	}
	r.cur = nil
}

// drain consumes the rest of the stream, so that a reader that stopped
// early (its consumer is done) does not hold the writer up.
func (r *fanReader) drain() {
	if r.cur != nil {
		r.release()
	}
	for {
		select {
		case b, ok := <-r.in:
			if !ok {
				r.eof = true
				return
			}
			r.cur = b
			r.release()
		case <-r.ctx.Done():
			return
		}
	}
}
