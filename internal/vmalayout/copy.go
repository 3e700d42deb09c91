package vmalayout

import (
	"context"
	"fmt"
	"io"

	"github.com/vmasync/vmasync/vma"
)

// CopyOptions tunes WriteDisk.
type CopyOptions struct {
	// Window is how many disk bytes are read at a time (default 4 MiB).
	Window int64
	// Prefetch, if set, is called in the background with the archive
	// range the next window needs, while the current one is written.
	Prefetch func(ctx context.Context, off, n int64)
	// Progress, if set, is called with the disk bytes done so far.
	Progress func(done int64)
}

// WriteDisk writes device dev's image, the bytes `vmasync unpack` writes
// into disk-NAME.raw. With a WriterAt, blocks of zeros are not written
// (the file stays sparse; the caller sets its size); otherwise every byte
// goes to w in order.
func (l *Layout) WriteDisk(ctx context.Context, dev int, w io.Writer, wa io.WriterAt, opt CopyOptions) error {
	dm := l.devs[dev]
	if dm == nil {
		return fmt.Errorf("vma: no device id %d", dev)
	}
	win := opt.Window
	if win <= 0 {
		win = 4 << 20
	}
	win = (win + vma.BlockSize - 1) / vma.BlockSize * vma.BlockSize
	size := int64(dm.dev.Size)
	buf := make([]byte, win)
	ahead := newAhead(ctx, l, dev, size, win, opt.Prefetch)
	defer ahead.wait()
	for off := int64(0); off < size; off += win {
		if err := ahead.next(off); err != nil {
			return err
		}
		n, err := l.ReadDisk(ctx, dev, buf, off)
		if err != nil && err != io.EOF {
			return err
		}
		p := buf[:n]
		if wa == nil {
			if _, err := w.Write(p); err != nil {
				return err
			}
		} else if err := writeSparse(wa, p, off); err != nil {
			return err
		}
		if opt.Progress != nil {
			opt.Progress(off + int64(n))
		}
	}
	return nil
}

// aheadWindows is how many windows WriteDisk fetches ahead of the one it
// writes: mapping a window walks its extent headers one after another,
// so two in flight overlap one window's walk with another's data.
const aheadWindows = 2

// ahead fetches the windows after the one being written.
type ahead struct {
	ctx      context.Context
	l        *Layout
	dev      int
	size     int64
	win      int64
	prefetch func(ctx context.Context, off, n int64)
	started  int64                   // windows from here on are not started
	done     map[int64]chan struct{} // by window offset
}

func newAhead(ctx context.Context, l *Layout, dev int, size, win int64, prefetch func(context.Context, int64, int64)) *ahead {
	return &ahead{ctx: ctx, l: l, dev: dev, size: size, win: win, prefetch: prefetch, started: win, done: map[int64]chan struct{}{}}
}

// next waits for the window at off to be fetched and starts fetching the
// ones after it.
func (a *ahead) next(off int64) error {
	if a.prefetch == nil {
		return nil
	}
	for ; a.started <= off+aheadWindows*a.win && a.started < a.size; a.started += a.win {
		ch := make(chan struct{})
		a.done[a.started] = ch
		go func(off int64) {
			defer close(ch)
			if lo, hi, err := a.l.ArchiveSpan(a.ctx, a.dev, off, a.win); err == nil && lo < hi {
				a.prefetch(a.ctx, lo, hi-lo)
			}
		}(a.started)
	}
	if ch, ok := a.done[off]; ok {
		delete(a.done, off)
		select {
		case <-ch:
		case <-a.ctx.Done():
			return context.Cause(a.ctx)
		}
	}
	return nil
}

// wait waits for the fetches still running.
func (a *ahead) wait() {
	for _, ch := range a.done {
		<-ch
	}
}

var zeroBlock [vma.BlockSize]byte

// writeSparse writes the blocks of p that are not all zero at off+i.
func writeSparse(wa io.WriterAt, p []byte, off int64) error {
	start := -1
	flush := func(end int) error {
		if start < 0 {
			return nil
		}
		_, err := wa.WriteAt(p[start:end], off+int64(start))
		start = -1
		return err
	}
	for i := 0; i < len(p); i += vma.BlockSize {
		b := p[i:min(i+vma.BlockSize, len(p))]
		if string(b) == string(zeroBlock[:len(b)]) {
			if err := flush(i); err != nil {
				return err
			}
			continue
		}
		if start < 0 {
			start = i
		}
	}
	return flush(len(p))
}

// ArchiveSpan returns the archive range [lo, hi) from the first to the
// last stored byte of device dev's range [off, off+n), for reading it
// ahead (lo == hi when the range holds only zeros). In the optimized
// archive that is the range's data and the extent headers between.
func (l *Layout) ArchiveSpan(ctx context.Context, dev int, off, n int64) (lo, hi int64, err error) {
	lo, hi = -1, -1
	err = l.Map(ctx, dev, off, n, func(e Extent) error {
		if e.Archive >= 0 {
			if lo < 0 {
				lo = e.Archive
			}
			hi = e.Archive + e.Len
		}
		return nil
	})
	if lo < 0 {
		lo, hi = 0, 0
	}
	return lo, hi, err
}
