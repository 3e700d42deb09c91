package vmalayout

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/vmasync/vmasync/vma"
)

// walker reads the archive's extent headers in order through a
// vma.Reader in index mode (data is seeked over).
type walker struct {
	vr *vma.Reader
	rs *ctxReadSeeker
}

func (l *Layout) newWalker(ctx context.Context) (*walker, error) {
	rs := &ctxReadSeeker{src: l.src, size: l.size, ctx: ctx}
	vr, err := vma.NewIndexReader(rs, l.size)
	if err != nil {
		return nil, err
	}
	vr.AllowIncomplete() // a missing cluster fails the read that needs it
	return &walker{vr: vr, rs: rs}, nil
}

// find returns the run holding cluster c of device dev, reading extent
// headers until it is known.
func (l *Layout) find(ctx context.Context, dm *devMap, c uint32) (*run, error) {
	l.mu.RLock()
	r := dm.find(c)
	l.mu.RUnlock()
	if r != nil {
		return r, nil
	}
	l.walkMu.Lock()
	defer l.walkMu.Unlock()
	l.mu.RLock()
	r = dm.find(c)
	l.mu.RUnlock()
	if r != nil {
		return r, nil
	}
	if err := l.walk(ctx, dm.dev.ID, c); err != nil {
		return nil, err
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if r = dm.find(c); r == nil {
		return nil, fmt.Errorf("vma: device %q: cluster %d is missing from the archive", dm.dev.Name, c)
	}
	return r, nil
}

// walk reads clusters from the archive until cluster c of device dev has
// been seen, or to the end. Called with walkMu held.
func (l *Layout) walk(ctx context.Context, dev int, c uint32) error {
	if l.failed != nil {
		return l.failed
	}
	if l.done {
		return nil
	}
	defer l.flush()
	if l.walker == nil {
		// An earlier walk failed on a read error (network, a damaged
		// chunk): start again and skip what was taken.
		w, err := l.newWalker(ctx)
		if err != nil {
			return l.readErr(err)
		}
		l.walker = w
		for range l.consumed {
			if _, err := w.vr.Next(); err != nil {
				return l.readErr(err)
			}
		}
	}
	l.walker.rs.ctx = ctx
	for {
		cl, err := l.walker.vr.Next()
		if err == io.EOF {
			l.done = true
			return nil
		}
		if err != nil {
			return l.readErr(err)
		}
		l.consumed++
		l.add(cl)
		if l.Speculate > 0 && cl.Extent != l.lastExt {
			l.lastExt = cl.Extent
			l.speculate(ctx, cl.Offset-vma.ExtentHeaderSize, l.walker.vr.Offset())
		}
		if cl.DevID == dev && cl.Num == c {
			return nil
		}
	}
}

// Prefetcher is a ReaderAt that can fetch a range ahead of a read
// (chunkcache.Archive).
type Prefetcher interface {
	Prefetch(ctx context.Context, off, n int64)
}

// fullExtent is the size of an extent of 58 clusters with every block
// stored, as the optimized archive has them where a disk is full.
const fullExtent = vma.ExtentHeaderSize + vma.ProxmoxClustersPerExtent*vma.ClusterSize

// speculate is called by the walk for each new extent (header at ext, the
// next one at next). Extent headers can only be found one after the
// other, one read each: over a slow link, reaching the middle of a large
// disk would cost one round trip per 3.7 MiB. Where the extents are full
// the next ones are most likely full too, so the headers that would then
// follow are fetched ahead, Speculate of them at once, in the
// background. A wrong guess costs one small chunk.
func (l *Layout) speculate(ctx context.Context, ext, next int64) {
	p, ok := l.src.(Prefetcher)
	if !ok || next-ext != fullExtent {
		return
	}
	ctx = context.WithoutCancel(ctx)
	for k := int64(1); k <= int64(l.Speculate); k++ {
		pos := next + k*fullExtent
		if pos+vma.ExtentHeaderSize > l.size {
			break
		}
		if pos <= l.specTo {
			continue
		}
		l.specTo = pos
		go p.Prefetch(ctx, pos, vma.ExtentHeaderSize)
	}
}

// readErr keeps a format error for good and drops the walker after any
// other error, so that the next read tries again.
func (l *Layout) readErr(err error) error {
	var fe *vma.FormatError
	if errors.As(err, &fe) && fe.Err == nil {
		l.failed = err
	} else {
		l.walker = nil
	}
	return err
}

// ctxReadSeeker reads the archive sequentially through a ReaderAt under
// the context of the walk in progress.
type ctxReadSeeker struct {
	src  ReaderAt
	size int64
	pos  int64
	ctx  context.Context
}

func (r *ctxReadSeeker) Read(p []byte) (int, error) {
	if r.pos >= r.size {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), r.size-r.pos)]
	n, err := r.src.ReadAtContext(r.ctx, p, r.pos)
	r.pos += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

func (r *ctxReadSeeker) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		off += r.pos
	case io.SeekEnd:
		off += r.size
	}
	if off < 0 {
		return 0, errors.New("vmalayout: negative seek")
	}
	r.pos = off
	return off, nil
}
