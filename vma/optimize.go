package vma

import (
	"cmp"
	"container/heap"
	"context"
	"fmt"
	"io"
	"io/fs"
	"math/bits"
	"os"
	"slices"
)

// OptimizeOptions tunes Optimize.
type OptimizeOptions struct {
	// Window bounds the cluster data the streaming reorder keeps in memory
	// before it spills out-of-order clusters to a temporary file. Default
	// 32 MiB.
	Window int64
	// TempDir is where the spill file goes (default os.TempDir()). The file
	// is unlinked as soon as it is created, so nothing is left behind.
	TempDir string
	// Progress, if set, is called now and then with the archive bytes
	// read so far (uncompressed: a caller that shows a percentage of a
	// compressed file must take its position from where it reads the
	// file, not from this count).
	Progress func(read int64)
}

// canceled returns the context's error, if any.
func canceled(ctx context.Context) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return nil
}

// File is an archive that Optimize can read twice: indexed first, then
// read back in output order with positioned reads. *os.File is one.
type File interface {
	io.Reader
	io.ReaderAt
	io.Seeker
	Stat() (fs.FileInfo, error)
}

// OptimizeResult reports what Optimize did.
type OptimizeResult struct {
	// Header is the header written (fixed uuid, devices renumbered 1..n).
	Header Header
	// InputBytes and OutputBytes are the archive sizes read and written.
	InputBytes, OutputBytes int64
	// TwoPass is true when the input was a seekable file, indexed first.
	TwoPass bool
	// SpilledBytes is the data the streaming reorder wrote to its spill
	// file; PeakWindow the most data it held in memory.
	SpilledBytes, PeakWindow int64
	// WasInOrder reports that the input already stored its clusters in
	// device order.
	WasInOrder bool
}

// Optimize rewrites the archive read from src into dst in the canonical,
// deduplication-friendly form: the header with OptimizedUUID (ctime,
// configs and device names and sizes kept, device ids renumbered 1..n in
// their order), then every cluster of device 1 in ascending order, then
// device 2, and so on, 58 clusters per extent, zero 4 KiB blocks left out.
// The output depends only on the archive's content, not on the order or
// the writer that stored it. The input is checked as it is read (every
// check of Reader, including completeness); on error the output is
// incomplete and must be discarded.
//
// If src is a File (such as an *os.File) of a regular file positioned at
// its start, it is indexed first and read back in output order with
// positioned reads (memory: 16 bytes per stored non-zero cluster).
// Otherwise clusters that arrive early are held in a bounded window and
// spilled to a temporary file beyond it. Optimize stops with ctx's cause
// when ctx is done.
func Optimize(ctx context.Context, dst io.Writer, src io.Reader, opt OptimizeOptions) (*OptimizeResult, error) {
	if opt.Window <= 0 {
		opt.Window = 32 << 20
	}
	if ctx == nil {
		ctx = context.Background()
	}
	if f, ok := src.(File); ok {
		if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
			if pos, err := f.Seek(0, io.SeekCurrent); err == nil && pos == 0 {
				return optimizeFile(ctx, dst, f, st.Size(), opt)
			}
		}
	}
	return optimizeStream(ctx, dst, src, opt)
}

// canonicalHeader returns the optimized header and the map from input
// device ids to output ids.
func canonicalHeader(h *Header) (Header, map[int]int) {
	out := Header{UUID: OptimizedUUID, CTime: h.CTime, Configs: h.Configs}
	ids := map[int]int{}
	for i, d := range h.Devices {
		ids[d.ID] = i + 1
		out.Devices = append(out.Devices, Device{ID: i + 1, Name: d.Name, Size: d.Size})
	}
	return out, ids
}

// storedCluster locates the data of a stored cluster in the input.
type storedCluster struct {
	dev, num uint32
	loc      uint64 // offset<<16 | mask
}

// locIndex maps the cluster numbers of one device to a 64-bit location
// (offset<<16 | mask, never 0 for a stored cluster). Pages of 512 entries
// (4 KiB) are allocated only where clusters with data are stored, so the
// index never costs more than the data blocks that fill it (each at least
// 4 KiB of input), however the clusters are scattered.
type locIndex struct {
	pages map[uint32]*[locPage]uint64
}

const locPage = 512

func (x *locIndex) set(c uint32, v uint64) {
	if x.pages == nil {
		x.pages = make(map[uint32]*[locPage]uint64)
	}
	p := x.pages[c/locPage]
	if p == nil {
		p = new([locPage]uint64)
		x.pages[c/locPage] = p
	}
	p[c%locPage] = v
}

func (x *locIndex) get(c uint32) uint64 {
	if p := x.pages[c/locPage]; p != nil {
		return p[c%locPage]
	}
	return 0
}

const maxLocOffset = 1<<48 - 1

// optimizeFile is the exact two-pass reorder of a seekable archive.
func optimizeFile(ctx context.Context, dst io.Writer, f File, size int64, opt OptimizeOptions) (*OptimizeResult, error) {
	vr, err := NewIndexReader(f, size)
	if err != nil {
		return nil, err
	}
	hdr, ids := canonicalHeader(vr.Header())
	// The index holds the stored (non-zero) clusters only, 16 bytes each,
	// in stored order; sorted into output order below.
	var idx []storedCluster
	res := &OptimizeResult{TwoPass: true}
	var order orderCheck
	for {
		c, err := vr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		id := ids[c.DevID]
		order.see(id, c.Num)
		if c.Mask != 0 {
			if c.Offset > maxLocOffset {
				return nil, fmt.Errorf("vma: archive larger than %d bytes is not supported", int64(maxLocOffset))
			}
			idx = append(idx, storedCluster{dev: uint32(id), num: c.Num, loc: uint64(c.Offset)<<16 | uint64(c.Mask)})
		}
	}
	res.InputBytes = vr.Offset()
	res.WasInOrder = order.inOrder()
	if !res.WasInOrder {
		slices.SortFunc(idx, func(a, b storedCluster) int {
			return cmp.Or(cmp.Compare(a.dev, b.dev), cmp.Compare(a.num, b.num))
		})
	}

	vw, err := NewWriter(dst, &hdr)
	if err != nil {
		return nil, err
	}
	var read int64
	for _, d := range hdr.Devices {
		for num := uint64(0); num < d.Clusters(); num++ {
			var loc uint64
			if len(idx) > 0 && idx[0].dev == uint32(d.ID) && uint64(idx[0].num) == num {
				loc, idx = idx[0].loc, idx[1:]
			}
			mask, off := uint16(loc), int64(loc>>16)
			n := bits.OnesCount16(mask) * BlockSize
			if n == 0 {
				if err := vw.WriteBlocks(d.ID, uint32(num), 0, nil); err != nil {
					return nil, err
				}
				continue
			}
			read += int64(n)
			if num%256 == 0 {
				if err := canceled(ctx); err != nil {
					return nil, err
				}
				if opt.Progress != nil {
					opt.Progress(read)
				}
			}
			err := vw.ReadBlocks(d.ID, uint32(num), mask, func(dst []byte) error {
				if _, err := f.ReadAt(dst, off); err != nil {
					return fmt.Errorf("vma: byte offset %d: reading cluster %d of %s: %w (did the file change?)", off, num, devLabel(d.ID, d.Name), err)
				}
				return nil
			})
			if err != nil {
				return nil, err
			}
		}
	}
	if err := vw.Close(); err != nil {
		return nil, err
	}
	res.Header = *vw.Header()
	res.OutputBytes = vw.Offset()
	return res, nil
}

// streamDev is the streaming reorder's per-device state.
type streamDev struct {
	id       int // output id
	clusters uint64
	arrived  clusterSet // clusters received but not yet written
	spill    locIndex   // spilled data clusters
}

// optimizeStream reorders a non-seekable archive with a bounded memory
// window and a spill file.
func optimizeStream(ctx context.Context, dst io.Writer, src io.Reader, opt OptimizeOptions) (res *OptimizeResult, err error) {
	vr, err := NewReader(src)
	if err != nil {
		return nil, err
	}
	vr.DeferData() // read each cluster's data straight to where it goes
	hdr, ids := canonicalHeader(vr.Header())
	vw, err := NewWriter(dst, &hdr)
	if err != nil {
		return nil, err
	}
	res = &OptimizeResult{}
	var order orderCheck
	devs := make([]*streamDev, len(hdr.Devices)+1)
	for _, d := range hdr.Devices {
		devs[d.ID] = &streamDev{id: d.ID, clusters: d.Clusters()}
	}
	var (
		window   = map[uint64][]byte{} // key dev<<32|num → stored blocks (mask in key map below)
		winMask  = map[uint64]uint16{}
		winBytes int64
		free     [][]byte
		spill    *os.File
		spillEnd int64
		cur      = 1    // output device being written
		next     uint64 // next cluster of cur to write
		tmp      = make([]byte, ClusterSize)
	)
	defer func() {
		if spill != nil {
			spill.Close()
		}
	}()
	key := func(id int, num uint32) uint64 { return uint64(id)<<32 | uint64(num) }

	// drain writes every cluster that is now next in output order.
	drain := func() error {
		for cur < len(devs) {
			d := devs[cur]
			if next >= d.clusters {
				cur, next = cur+1, 0
				continue
			}
			num := uint32(next)
			if !d.arrived.has(num) {
				return nil
			}
			k := key(cur, num)
			if data, ok := window[k]; ok {
				if err := vw.WriteBlocks(cur, num, winMask[k], data); err != nil {
					return err
				}
				delete(window, k)
				delete(winMask, k)
				winBytes -= int64(len(data))
				free = append(free, data[:cap(data)])
			} else if loc := d.spill.get(num); loc != 0 {
				mask := uint16(loc)
				n := bits.OnesCount16(mask) * BlockSize
				if _, err := spill.ReadAt(tmp[:n], int64(loc>>16)); err != nil {
					return fmt.Errorf("vma: reading spill file: %w", err)
				}
				if err := vw.WriteBlocks(cur, num, mask, tmp[:n]); err != nil {
					return err
				}
				d.spill.set(num, 0)
			} else if err := vw.WriteBlocks(cur, num, 0, nil); err != nil {
				return err
			}
			next++
		}
		return nil
	}

	// spillOut writes a cluster's blocks to the spill file.
	spillOut := func(id int, num uint32, mask uint16, data []byte) error {
		if spill == nil {
			var err error
			spill, err = os.CreateTemp(opt.TempDir, "vmasync-spill-*")
			if err != nil {
				return fmt.Errorf("vma: creating spill file: %w", err)
			}
			os.Remove(spill.Name()) // unlinked: vanishes with the process
		}
		if _, err := spill.WriteAt(data, spillEnd); err != nil {
			return fmt.Errorf("vma: writing spill file: %w", err)
		}
		devs[id].spill.set(num, uint64(spillEnd)<<16|uint64(mask))
		spillEnd += int64(len(data))
		res.SpilledBytes += int64(len(data))
		return nil
	}
	var byNeed keyHeap

	lastExt := -1
	for {
		c, err := vr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if c.Extent != lastExt {
			lastExt = c.Extent
			if err := canceled(ctx); err != nil {
				return nil, err
			}
			if opt.Progress != nil {
				opt.Progress(c.Offset)
			}
		}
		id := ids[c.DevID]
		order.see(id, c.Num)
		if id == cur && uint64(c.Num) == next {
			if err := vw.ReadBlocks(id, c.Num, c.Mask, vr.ReadData); err != nil {
				return nil, err
			}
			next++
			if err := drain(); err != nil {
				return nil, err
			}
			continue
		}
		// Early: keep it until its turn.
		d := devs[id]
		d.arrived.add(c.Num)
		if c.Mask == 0 {
			continue
		}
		size := int64(bits.OnesCount16(c.Mask) * BlockSize)
		k := key(id, c.Num)
		// Make room by spilling the clusters needed last (the largest
		// keys), unless this one is needed later than all of them.
		for winBytes+size > opt.Window {
			far, ok := byNeed.max(window)
			if !ok || far < k {
				break
			}
			data := window[far]
			if err := spillOut(int(far>>32), uint32(far), winMask[far], data); err != nil {
				return nil, err
			}
			delete(window, far)
			delete(winMask, far)
			winBytes -= int64(len(data))
			free = append(free, data[:cap(data)])
		}
		if winBytes+size > opt.Window {
			if err := vr.ReadData(tmp[:size]); err != nil {
				return nil, err
			}
			if err := spillOut(id, c.Num, c.Mask, tmp[:size]); err != nil {
				return nil, err
			}
			continue
		}
		var b []byte
		if n := len(free); n > 0 {
			b, free = free[n-1][:size], free[:n-1]
		} else {
			b = make([]byte, size, ClusterSize)
		}
		if err := vr.ReadData(b); err != nil {
			return nil, err
		}
		window[k], winMask[k] = b, c.Mask
		byNeed.push(k, window)
		winBytes += int64(len(b))
		res.PeakWindow = max(res.PeakWindow, winBytes)
	}
	if err := drain(); err != nil {
		return nil, err
	}
	if err := vw.Close(); err != nil {
		return nil, err
	}
	res.InputBytes = vr.Offset()
	res.WasInOrder = order.inOrder()
	res.Header = *vw.Header()
	res.OutputBytes = vw.Offset()
	return res, nil
}

// keyHeap is a max-heap of window keys (output order), so the streaming
// reorder can spill the cluster needed last. Keys drained from the window
// stay in the heap until they surface (skipped then) or the heap is
// rebuilt when stale keys outnumber live ones.
type keyHeap []uint64

func (h keyHeap) Len() int           { return len(h) }
func (h keyHeap) Less(i, j int) bool { return h[i] > h[j] }
func (h keyHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *keyHeap) Push(x any)        { *h = append(*h, x.(uint64)) }
func (h *keyHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// push adds k; window is the live set, used to drop stale keys.
func (h *keyHeap) push(k uint64, window map[uint64][]byte) {
	if len(*h) > 2*len(window)+64 {
		*h = (*h)[:0]
		for wk := range window {
			*h = append(*h, wk)
		}
		heap.Init(h)
		return // window already holds k
	}
	heap.Push(h, k)
}

// max returns the largest key still in window.
func (h *keyHeap) max(window map[uint64][]byte) (uint64, bool) {
	for len(*h) > 0 {
		if _, live := window[(*h)[0]]; live {
			return (*h)[0], true
		}
		heap.Pop(h)
	}
	return 0, false
}

// orderCheck tracks whether clusters arrive in device order: every cluster
// of the lowest device ascending, then the next device, and so on.
type orderCheck struct {
	dev      int
	num      uint32
	started  bool
	disorder bool
}

func (o *orderCheck) see(dev int, num uint32) {
	if o.started && (dev < o.dev || (dev == o.dev && num <= o.num)) {
		o.disorder = true
	}
	o.dev, o.num, o.started = dev, num, true
}

func (o *orderCheck) inOrder() bool { return !o.disorder }

// IsOptimized reads the index of the archive in f (headers only, seeking
// over the data) and reports whether it is in Optimize's form: it carries
// OptimizedUUID and stores its clusters in device order. f is left at
// its start.
func IsOptimized(f io.ReadSeeker, size int64) (bool, error) {
	defer f.Seek(0, io.SeekStart)
	vr, err := NewIndexReader(f, size)
	if err != nil {
		return false, err
	}
	if vr.Header().UUID != OptimizedUUID {
		return false, nil
	}
	var order orderCheck
	for {
		c, err := vr.Next()
		if err == io.EOF {
			return order.inOrder(), nil
		}
		if err != nil {
			return false, err
		}
		if order.see(c.DevID, c.Num); !order.inOrder() {
			return false, nil
		}
	}
}
