package vma

import (
	"cmp"
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
// Kept as one function: the two passes over a plain file share their state.
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

// streamReorder is the state of optimizeStream: the clusters that
// arrived before their turn, in memory (the window) or in the spill file.
type streamReorder struct {
	vw       *Writer
	opt      OptimizeOptions
	res      *OptimizeResult
	devs     []*streamDev      // by output id
	window   map[uint64][]byte // key(dev, num) → stored blocks
	winMask  map[uint64]uint16 // key(dev, num) → their mask
	winBytes int64             // bytes in window
	byNeed   keyHeap           // window keys, the one needed last on top
	free     [][]byte          // buffers of drained window clusters
	spill    *os.File          // nil until the window first overflows
	spillEnd int64
	cur      int    // output device being written
	next     uint64 // next cluster of cur to write
	tmp      []byte // a cluster's worth, for spilled data
}

// key orders clusters as the output does.
func key(id int, num uint32) uint64 { return uint64(id)<<32 | uint64(num) }

// optimizeStream reorders a non-seekable archive with a bounded memory
// window and a spill file.
func optimizeStream(ctx context.Context, dst io.Writer, src io.Reader, opt OptimizeOptions) (*OptimizeResult, error) {
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
	s := &streamReorder{
		vw: vw, opt: opt, res: &OptimizeResult{},
		devs:   make([]*streamDev, len(hdr.Devices)+1),
		window: map[uint64][]byte{}, winMask: map[uint64]uint16{},
		cur: 1, tmp: make([]byte, ClusterSize),
	}
	for _, d := range hdr.Devices {
		s.devs[d.ID] = &streamDev{id: d.ID, clusters: d.Clusters()}
	}
	defer func() {
		if s.spill != nil {
			s.spill.Close()
		}
	}()
	var order orderCheck
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
		if id == s.cur && uint64(c.Num) == s.next {
			if err := vw.ReadBlocks(id, c.Num, c.Mask, vr.ReadData); err != nil {
				return nil, err
			}
			s.next++
			if err := s.drain(); err != nil {
				return nil, err
			}
			continue
		}
		if err := s.early(vr, id, c); err != nil {
			return nil, err
		}
	}
	if err := s.drain(); err != nil {
		return nil, err
	}
	if err := vw.Close(); err != nil {
		return nil, err
	}
	res := s.res
	res.InputBytes = vr.Offset()
	res.WasInOrder = order.inOrder()
	res.Header = *vw.Header()
	res.OutputBytes = vw.Offset()
	return res, nil
}

// early keeps cluster c of output device id, which arrived before its
// turn, until then: in the window, spilling the clusters needed last to
// make room, or in the spill file if it is needed later than all of them.
func (s *streamReorder) early(vr *Reader, id int, c *Cluster) error {
	d := s.devs[id]
	d.arrived.add(c.Num)
	if c.Mask == 0 {
		return nil
	}
	size := int64(bits.OnesCount16(c.Mask) * BlockSize)
	k := key(id, c.Num)
	for s.winBytes+size > s.opt.Window {
		far, ok := s.byNeed.max(s.window)
		if !ok || far < k {
			break
		}
		data := s.window[far]
		if err := s.spillOut(int(far>>32), uint32(far), s.winMask[far], data); err != nil {
			return err
		}
		s.forget(far)
	}
	if s.winBytes+size > s.opt.Window {
		if err := vr.ReadData(s.tmp[:size]); err != nil {
			return err
		}
		return s.spillOut(id, c.Num, c.Mask, s.tmp[:size])
	}
	var b []byte
	if n := len(s.free); n > 0 {
		b, s.free = s.free[n-1][:size], s.free[:n-1]
	} else {
		b = make([]byte, size, ClusterSize)
	}
	if err := vr.ReadData(b); err != nil {
		return err
	}
	s.window[k], s.winMask[k] = b, c.Mask
	s.byNeed.push(k, s.window)
	s.winBytes += int64(len(b))
	s.res.PeakWindow = max(s.res.PeakWindow, s.winBytes)
	return nil
}

// forget drops window cluster k, keeping its buffer for reuse.
func (s *streamReorder) forget(k uint64) {
	data := s.window[k]
	delete(s.window, k)
	delete(s.winMask, k)
	s.winBytes -= int64(len(data))
	s.free = append(s.free, data[:cap(data)])
}

// drain writes every cluster that is now next in output order.
func (s *streamReorder) drain() error {
	for s.cur < len(s.devs) {
		d := s.devs[s.cur]
		if s.next >= d.clusters {
			s.cur, s.next = s.cur+1, 0
			continue
		}
		num := uint32(s.next)
		if !d.arrived.has(num) {
			return nil
		}
		k := key(s.cur, num)
		if data, ok := s.window[k]; ok {
			if err := s.vw.WriteBlocks(s.cur, num, s.winMask[k], data); err != nil {
				return err
			}
			s.forget(k)
		} else if loc := d.spill.get(num); loc != 0 {
			mask := uint16(loc)
			n := bits.OnesCount16(mask) * BlockSize
			if _, err := s.spill.ReadAt(s.tmp[:n], int64(loc>>16)); err != nil {
				return fmt.Errorf("vma: reading spill file: %w", err)
			}
			if err := s.vw.WriteBlocks(s.cur, num, mask, s.tmp[:n]); err != nil {
				return err
			}
			d.spill.set(num, 0)
		} else if err := s.vw.WriteBlocks(s.cur, num, 0, nil); err != nil {
			return err
		}
		s.next++
	}
	return nil
}

// spillOut writes a cluster's blocks to the spill file.
func (s *streamReorder) spillOut(id int, num uint32, mask uint16, data []byte) error {
	if s.spill == nil {
		var err error
		s.spill, err = os.CreateTemp(s.opt.TempDir, "vmasync-spill-*")
		if err != nil {
			return fmt.Errorf("vma: creating spill file: %w", err)
		}
		os.Remove(s.spill.Name()) // unlinked: vanishes with the process
	}
	if _, err := s.spill.WriteAt(data, s.spillEnd); err != nil {
		return fmt.Errorf("vma: writing spill file: %w", err)
	}
	s.devs[id].spill.set(num, uint64(s.spillEnd)<<16|uint64(mask))
	s.spillEnd += int64(len(data))
	s.res.SpilledBytes += int64(len(data))
	return nil
}
