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
	var pre chan struct{}
	startPrefetch := func(off int64) {
		if opt.Prefetch == nil || off >= size {
			pre = nil
			return
		}
		pre = make(chan struct{})
		go func(done chan struct{}) {
			defer close(done)
			if lo, hi, err := l.ArchiveSpan(ctx, dev, off, win); err == nil && lo < hi {
				opt.Prefetch(ctx, lo, hi-lo)
			}
		}(pre)
	}
	for off := int64(0); off < size; off += win {
		if pre != nil {
			select {
			case <-pre:
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		}
		startPrefetch(off + win)
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
	if pre != nil {
		<-pre
	}
	return nil
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
