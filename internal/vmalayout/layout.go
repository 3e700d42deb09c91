// Package vmalayout maps the bytes of a disk stored in a VMA archive to
// the archive's bytes, so that any range of a disk image can be read from
// an archive that is itself only readable by ranges (a backup in a
// repository, read through remote.ArchiveReader): `vmasync mount` and
// `vmasync pull --disk`.
//
// The map is derived from the archive alone: the header gives the devices
// and their sizes; each extent header says which clusters of which device
// follow and which of their 4 KiB blocks are stored (the mask); a block
// that is not stored is zero and is served without reading anything. The
// extent headers are read lazily, as far as a read needs: in an optimized
// archive (clusters in device order) the first bytes of a disk need only
// the first extent header, and reading a disk never touches the extents
// of the devices stored after it.
//
// Memory: one entry per run of consecutive clusters of one device inside
// an extent (at most 59 clusters, 3.7 MiB of disk), holding 2 bytes per
// cluster only when its clusters are neither all full nor all zero: about
// 2 MiB per TiB of full or empty disk, at most 34 MiB per TiB.
//
// The package is format code over a ReaderAt; it knows nothing of
// repositories, files or FUSE.
package vmalayout

import (
	"context"
	"fmt"
	"io"
	"math/bits"
	"slices"
	"sort"
	"sync"

	"github.com/vmasync/vmasync/vma"
)

// ReaderAt reads the archive by ranges under a context.
// remote.ArchiveReader is one.
type ReaderAt interface {
	ReadAtContext(ctx context.Context, p []byte, off int64) (int, error)
}

// run is a run of consecutive clusters of one device whose stored blocks
// follow each other in the archive (one extent, or part of one).
type run struct {
	first uint32   // first cluster number
	n     uint32   // number of clusters
	data  int64    // archive offset of the first stored block
	kind  uint8    // runMixed, runFull or runZero
	masks []uint16 // per cluster, only for runMixed
}

const (
	runMixed = iota
	runFull  // every block of every cluster stored
	runZero  // no block stored
)

func (r *run) mask(i uint32) uint16 {
	switch r.kind {
	case runFull:
		return 0xffff
	case runZero:
		return 0
	}
	return r.masks[i]
}

// blockOffset returns the archive offset of block b of cluster i of the
// run, or -1 if the block is not stored (zero).
func (r *run) blockOffset(i uint32, b int) int64 {
	switch r.kind {
	case runFull:
		return r.data + int64(i)*vma.ClusterSize + int64(b)*vma.BlockSize
	case runZero:
		return -1
	}
	m := r.masks[i]
	if m&(1<<b) == 0 {
		return -1
	}
	k := bits.OnesCount16(m & (1<<b - 1))
	for _, pm := range r.masks[:i] {
		k += bits.OnesCount16(pm)
	}
	return r.data + int64(k)*vma.BlockSize
}

// devMap is the map of one device: runs sorted by first cluster.
type devMap struct {
	dev  vma.Device
	runs []run
}

func (d *devMap) find(c uint32) *run {
	i := sort.Search(len(d.runs), func(i int) bool { return d.runs[i].first+d.runs[i].n > c })
	if i < len(d.runs) && d.runs[i].first <= c {
		return &d.runs[i]
	}
	return nil
}

func (d *devMap) insert(r run) {
	if n := len(d.runs); n == 0 || d.runs[n-1].first < r.first {
		d.runs = append(d.runs, r) // the optimized archive's order
		return
	}
	i := sort.Search(len(d.runs), func(i int) bool { return d.runs[i].first > r.first })
	d.runs = slices.Insert(d.runs, i, r)
}

// Layout is the disk map of one archive, filled in as reads need it. It
// is safe for concurrent use.
type Layout struct {
	src  ReaderAt
	size int64
	hdr  vma.Header

	mu   sync.RWMutex
	devs map[int]*devMap

	// Speculate, if positive, is how many extent headers the walk
	// fetches ahead where the extents are full (see speculate); the
	// ReaderAt must be a Prefetcher. Set it before the first read.
	Speculate int

	walkMu   sync.Mutex
	lastExt  int   // extent of the last cluster taken
	specTo   int64 // extent headers fetched ahead up to here
	walker   *walker
	consumed int64 // clusters taken from the archive so far
	done     bool  // every extent has been read
	failed   error // a format error: final
	cur      *builder
}

// Open reads and checks the archive header through src (an archive of
// size bytes).
func Open(ctx context.Context, src ReaderAt, size int64) (*Layout, error) {
	l := &Layout{src: src, size: size, devs: map[int]*devMap{}, lastExt: -1}
	w, err := l.newWalker(ctx)
	if err != nil {
		return nil, err
	}
	l.walker = w
	l.hdr = *w.vr.Header()
	for _, d := range l.hdr.Devices {
		l.devs[d.ID] = &devMap{dev: d}
	}
	return l, nil
}

// Header returns the archive header (configs and devices).
func (l *Layout) Header() *vma.Header { return &l.hdr }

// Device returns the device named name.
func (l *Layout) Device(name string) (vma.Device, bool) {
	for _, d := range l.hdr.Devices {
		if d.Name == name {
			return d, true
		}
	}
	return vma.Device{}, false
}

// Runs returns how many runs are mapped so far (for tests and memory
// estimates).
func (l *Layout) Runs() int {
	l.mu.RLock()
	defer l.mu.RUnlock()
	n := 0
	for _, d := range l.devs {
		n += len(d.runs)
	}
	return n
}

// builder collects the run being read.
type builder struct {
	dev    int
	first  uint32
	extent int
	data   int64 // archive offset of the first cluster's data
	end    int64 // archive offset after the last cluster's data
	masks  []uint16
}

func (b *builder) finish() run {
	r := run{first: b.first, n: uint32(len(b.masks)), data: b.data}
	full, zero := true, true
	for _, m := range b.masks {
		full = full && m == 0xffff
		zero = zero && m == 0
	}
	switch {
	case full:
		r.kind = runFull
	case zero:
		r.kind, r.data = runZero, 0
	default:
		r.kind, r.masks = runMixed, slices.Clone(b.masks)
	}
	return r
}

// flush stores the run being built. Called with walkMu held.
func (l *Layout) flush() {
	if l.cur == nil || len(l.cur.masks) == 0 {
		return
	}
	r := l.cur.finish()
	l.mu.Lock()
	l.devs[l.cur.dev].insert(r)
	l.mu.Unlock()
	l.cur.masks = l.cur.masks[:0]
}

// add records a cluster. Called with walkMu held.
func (l *Layout) add(cl *vma.Cluster) {
	n := int64(bits.OnesCount16(cl.Mask)) * vma.BlockSize
	b := l.cur
	if b == nil {
		b = &builder{}
		l.cur = b
	}
	if len(b.masks) > 0 && (b.dev != cl.DevID || b.extent != cl.Extent || b.first+uint32(len(b.masks)) != cl.Num || b.end != cl.Offset) {
		l.flush()
	}
	if len(b.masks) == 0 {
		b.dev, b.first, b.extent, b.data, b.end = cl.DevID, cl.Num, cl.Extent, cl.Offset, cl.Offset
	}
	b.masks = append(b.masks, cl.Mask)
	b.end += n
}

// Extent is a piece of a disk range: Len bytes at disk offset Disk, stored
// at archive offset Archive, or zero (Archive -1).
type Extent struct {
	Disk    int64
	Len     int64
	Archive int64
}

// Map calls fn for the pieces of device dev's range [off, off+n), in
// order, merging adjacent pieces (consecutive archive bytes, or zeros).
// The range is clipped at the device's size.
func (l *Layout) Map(ctx context.Context, dev int, off, n int64, fn func(Extent) error) error {
	dm := l.devs[dev]
	if dm == nil {
		return fmt.Errorf("vma: no device id %d", dev)
	}
	end := min(off+n, int64(dm.dev.Size))
	var pend Extent
	have := false
	emit := func(e Extent) error {
		if have && pend.Disk+pend.Len == e.Disk && ((pend.Archive < 0 && e.Archive < 0) || (pend.Archive >= 0 && pend.Archive+pend.Len == e.Archive)) {
			pend.Len += e.Len
			return nil
		}
		if have {
			if err := fn(pend); err != nil {
				return err
			}
		}
		pend, have = e, true
		return nil
	}
	for pos := off; pos < end; {
		c := uint32(pos / vma.ClusterSize)
		r, err := l.find(ctx, dm, c)
		if err != nil {
			return err
		}
		// Within the run, block by block.
		for pos < end && uint32(pos/vma.ClusterSize) < r.first+r.n {
			ci := uint32(pos/vma.ClusterSize) - r.first
			b := int(pos % vma.ClusterSize / vma.BlockSize)
			in := pos % vma.BlockSize
			k := min(vma.BlockSize-in, end-pos)
			a := r.blockOffset(ci, b)
			if a >= 0 {
				a += in
			}
			if err := emit(Extent{Disk: pos, Len: k, Archive: a}); err != nil {
				return err
			}
			pos += k
		}
	}
	if have {
		return fn(pend)
	}
	return nil
}

// ReadDisk reads device dev's bytes at off into p, as `vmasync unpack`'s
// image holds them: stored blocks from the archive, zeros elsewhere. It
// returns io.EOF at the end of the device.
func (l *Layout) ReadDisk(ctx context.Context, dev int, p []byte, off int64) (int, error) {
	dm := l.devs[dev]
	if dm == nil {
		return 0, fmt.Errorf("vma: no device id %d", dev)
	}
	size := int64(dm.dev.Size)
	if off >= size {
		return 0, io.EOF
	}
	want := min(int64(len(p)), size-off)
	err := l.Map(ctx, dev, off, want, func(e Extent) error {
		dst := p[e.Disk-off : e.Disk-off+e.Len]
		if e.Archive < 0 {
			clear(dst)
			return nil
		}
		n, err := l.src.ReadAtContext(ctx, dst, e.Archive)
		if err == io.EOF && n == len(dst) {
			err = nil
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return err
	})
	if err != nil {
		return 0, err
	}
	if want < int64(len(p)) {
		return int(want), io.EOF
	}
	return int(want), nil
}
