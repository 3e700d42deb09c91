package vma

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
)

// writeDev is the writer's per-device state.
type writeDev struct {
	dev       Device
	clusters  uint64
	written   clusterSet
	vmstate   bool
	nextState uint32
}

// Writer writes a VMA archive. Clusters may be handed in any order; each
// cluster of each device must be written exactly once before Close. The
// output is laid out as Proxmox's writer lays it out: the header and blob
// buffer as vma-writer.c allocates them, at most 58 clusters per extent, a
// blockinfo for every cluster (mask 0 for an all-zero one), zero 4 KiB
// blocks left out, and nothing stored past the device end.
type Writer struct {
	w    io.Writer
	hdr  Header
	dev  [MaxDeviceID + 1]*writeDev
	head []byte // encoded header, written before the first extent

	buf     []byte // extent header + data of the extent being filled
	infos   []blockinfo
	perExt  int
	off     int64
	extents int
	closed  bool
	err     error
}

// NewWriter returns a Writer that writes an archive with header h to w.
// Devices with ID 0 get the next free id in order (as Proxmox registers
// streams); others keep their ids. h.Size is ignored. Nothing is written to
// w until the first extent is complete or Close is called.
func NewWriter(w io.Writer, h *Header) (*Writer, error) {
	vw := &Writer{w: w, perExt: ProxmoxClustersPerExtent}
	vw.hdr = Header{UUID: h.UUID, CTime: h.CTime}
	if len(h.Configs) > MaxConfigs {
		return nil, fmt.Errorf("vma: %d configs, at most %d fit in a header", len(h.Configs), MaxConfigs)
	}
	for _, c := range h.Configs {
		if c.Name == "" || len(c.Name)+1 > MaxBlobSize {
			return nil, fmt.Errorf("vma: config name %q: must be 1 to %d bytes", c.Name, MaxBlobSize-1)
		}
		if len(c.Data) > MaxBlobSize {
			return nil, fmt.Errorf("vma: config %q is %d bytes, at most %d fit in a header", c.Name, len(c.Data), MaxBlobSize)
		}
		vw.hdr.Configs = append(vw.hdr.Configs, Config{Name: c.Name, Data: c.Data})
	}
	if len(h.Devices) > MaxWriterDevices {
		return nil, fmt.Errorf("vma: %d devices, at most %d are allowed", len(h.Devices), MaxWriterDevices)
	}
	next := 1
	for _, d := range h.Devices {
		if d.ID == 0 {
			for next <= MaxWriterDevices && vw.dev[next] != nil {
				next++
			}
			d.ID = next
		}
		switch {
		case d.ID < 1 || d.ID > MaxWriterDevices:
			return nil, fmt.Errorf("vma: device %q: id %d out of range 1..%d", d.Name, d.ID, MaxWriterDevices)
		case vw.dev[d.ID] != nil:
			return nil, fmt.Errorf("vma: device %q: id %d is used twice", d.Name, d.ID)
		case d.Name == "" || len(d.Name)+1 > MaxBlobSize:
			return nil, fmt.Errorf("vma: device name %q: must be 1 to %d bytes", d.Name, MaxBlobSize-1)
		case d.Size == 0 || d.Size > MaxDeviceSize:
			return nil, fmt.Errorf("vma: device %q: size %d out of range 1..%d", d.Name, d.Size, uint64(MaxDeviceSize))
		}
		vw.dev[d.ID] = &writeDev{dev: d, clusters: d.Clusters(), vmstate: d.IsVMState()}
	}
	for _, d := range vw.dev {
		if d != nil {
			vw.hdr.Devices = append(vw.hdr.Devices, d.dev)
		}
	}
	vw.head = encodeHeader(&vw.hdr)
	vw.hdr.Size = int64(len(vw.head))
	return vw, nil
}

// Header returns the header as written (device ids assigned, Size set).
func (w *Writer) Header() *Header { return &w.hdr }

// SetClustersPerExtent changes how many clusters an extent holds, 1..59
// (default 58, as Proxmox writes). Call it before writing clusters.
func (w *Writer) SetClustersPerExtent(n int) error {
	if n < 1 || n > ExtentSlots || len(w.infos) > 0 || w.extents > 0 {
		return fmt.Errorf("vma: clusters per extent must be 1..%d and set before writing", ExtentSlots)
	}
	w.perExt = n
	return nil
}

// Offset returns the number of bytes written to the underlying writer.
func (w *Writer) Offset() int64 { return w.off }

// blobAlloc lays out the blob buffer as vma-writer.c's
// allocate_header_blob does: position 0 unused, u16 little-endian length,
// and the table grows by roundup(len+2, 512) whenever the blob does not fit.
type blobAlloc struct {
	table []byte
	pos   int
}

func (a *blobAlloc) add(data []byte) uint32 {
	if len(a.table) < a.pos+len(data)+2 {
		grow := (len(data) + 2 + 511) / 512 * 512
		a.table = append(a.table, make([]byte, grow)...)
	}
	if len(a.table) < a.pos+len(data)+2 {
		// Proxmox's writer overflows its table by one byte here (a first
		// blob with len+2 a multiple of 512, since pos starts at 1); grow
		// once more instead.
		a.table = append(a.table, make([]byte, 512)...)
	}
	p := a.pos
	binary.LittleEndian.PutUint16(a.table[p:], uint16(len(data)))
	copy(a.table[p+2:], data)
	a.pos += len(data) + 2
	return uint32(p)
}

func cstring(s string) []byte { return append([]byte(s), 0) }

// encodeHeader builds the full header (fixed part and blob buffer) with
// its checksum.
func encodeHeader(h *Header) []byte {
	a := blobAlloc{pos: 1}
	type ptrs struct{ name, data uint32 }
	cfg := make([]ptrs, len(h.Configs))
	for i, c := range h.Configs {
		cfg[i].name = a.add(cstring(c.Name))
		cfg[i].data = a.add(c.Data)
	}
	devPtr := make([]uint32, len(h.Devices))
	for i, d := range h.Devices {
		devPtr[i] = a.add(cstring(d.Name))
	}
	if len(a.table) == 0 {
		// No blobs at all: keep header_size above 12288 as every reader
		// requires.
		a.table = make([]byte, 512)
	}
	b := make([]byte, HeaderFixedSize+len(a.table))
	copy(b[0:4], headerMagic[:])
	binary.BigEndian.PutUint32(b[4:8], 1)
	copy(b[8:24], h.UUID[:])
	binary.BigEndian.PutUint64(b[24:32], uint64(h.CTime))
	binary.BigEndian.PutUint32(b[48:52], HeaderFixedSize)
	binary.BigEndian.PutUint32(b[52:56], uint32(a.pos))
	binary.BigEndian.PutUint32(b[56:60], uint32(len(b)))
	for i, p := range cfg {
		binary.BigEndian.PutUint32(b[2044+4*i:], p.name)
		binary.BigEndian.PutUint32(b[3068+4*i:], p.data)
	}
	for i, d := range h.Devices {
		di := b[4096+32*d.ID:]
		binary.BigEndian.PutUint32(di[0:4], devPtr[i])
		binary.BigEndian.PutUint64(di[8:16], d.Size)
	}
	copy(b[HeaderFixedSize:], a.table)
	sum := headerMD5(b)
	copy(b[32:48], sum[:])
	return b
}

// WriteCluster writes cluster num of device id from its contents: data
// holds the cluster's bytes from its start, up to ClusterSize; bytes beyond
// len(data), and bytes past the device end, count as zero. A nil data
// writes an all-zero cluster.
func (w *Writer) WriteCluster(id int, num uint32, data []byte) error {
	if len(data) > ClusterSize {
		return fmt.Errorf("vma: cluster data of %d bytes exceeds %d", len(data), ClusterSize)
	}
	var mask uint16
	for i := 0; i*BlockSize < len(data); i++ {
		mask |= 1 << i
	}
	return w.write(id, num, mask, data, true)
}

// WriteBlocks writes cluster num of device id from stored blocks, as a
// Reader yields them: bit i of mask set means block i is present in blocks
// (popcount(mask) blocks of BlockSize bytes in increasing order). Blocks that
// are all zero are left out of the output, as Proxmox's writer does.
func (w *Writer) WriteBlocks(id int, num uint32, mask uint16, blocks []byte) error {
	if len(blocks) != bits.OnesCount16(mask)*BlockSize {
		return fmt.Errorf("vma: cluster %d: %d bytes of blocks for mask %#04x", num, len(blocks), mask)
	}
	return w.write(id, num, mask, blocks, false)
}

// ReadBlocks is WriteBlocks for blocks that read fetches straight into
// the Writer's extent buffer (for instance with a positioned read of the
// input file), saving a copy. read gets popcount(mask)*BlockSize bytes to
// fill completely.
func (w *Writer) ReadBlocks(id int, num uint32, mask uint16, read func(dst []byte) error) error {
	if w.err != nil {
		return w.err
	}
	n := bits.OnesCount16(mask) * BlockSize
	if len(w.infos) >= w.perExt {
		// write would flush the full extent first: do it before the
		// read, so that the blocks fit the buffer instead of doubling it.
		if err := w.flush(); err != nil {
			return err
		}
	}
	if w.buf == nil {
		w.buf = w.newBuf()
	}
	if cap(w.buf)-len(w.buf) < n {
		w.buf = append(make([]byte, 0, len(w.buf)+max(n, w.perExt*ClusterSize)), w.buf...)
	}
	// The blocks land just past the data of the extent being filled. write
	// then appends the blocks it keeps at or before where they lie (a
	// flush only moves that point back), so the copies never overrun data
	// not yet consumed.
	region := w.buf[len(w.buf) : len(w.buf)+n]
	if err := read(region); err != nil {
		return err
	}
	return w.write(id, num, mask, region, false)
}

// newBuf returns an empty extent buffer with room for an extent of
// perExt clusters, or for all the clusters of the archive's devices when
// they are fewer (a small archive needs no buffer of 3.7 MB). The size of
// a vmstate device does not bound its clusters: with one, perExt it is.
func (w *Writer) newBuf() []byte {
	var clusters uint64
	for _, d := range w.dev {
		if d != nil {
			if d.vmstate {
				clusters = uint64(w.perExt)
				break
			}
			clusters += d.clusters
		}
	}
	n := int(min(clusters, uint64(w.perExt)))
	return make([]byte, ExtentHeaderSize, ExtentHeaderSize+n*ClusterSize)
}

// write adds one cluster. In cluster mode src is the (possibly short)
// cluster; otherwise src holds the blocks set in mask.
func (w *Writer) write(id int, num uint32, mask uint16, src []byte, cluster bool) error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return errors.New("vma: write after Close")
	}
	if id < 1 || id > MaxDeviceID || w.dev[id] == nil {
		return fmt.Errorf("vma: write to unknown device id %d", id)
	}
	d := w.dev[id]
	if d.vmstate {
		if num != d.nextState {
			return fmt.Errorf("vma: %s: vmstate cluster %d written out of order (expected %d)", devLabel(id, d.dev.Name), num, d.nextState)
		}
	} else if uint64(num) >= d.clusters {
		return fmt.Errorf("vma: %s: cluster %d beyond the device end (%d clusters)", devLabel(id, d.dev.Name), num, d.clusters)
	}
	if d.written.has(num) {
		return fmt.Errorf("vma: %s: cluster %d written twice", devLabel(id, d.dev.Name), num)
	}
	if len(w.infos) >= w.perExt {
		if err := w.flush(); err != nil {
			return err
		}
	}
	if w.buf == nil {
		w.buf = w.newBuf()
	}
	// Bytes of this cluster that lie inside the device.
	inDev := uint64(ClusterSize)
	if !d.vmstate {
		inDev = min(d.dev.Size-uint64(num)*ClusterSize, ClusterSize)
	}
	var out uint16
	k := 0
	for i := range BlocksPerCluster {
		bit := uint16(1) << i
		if mask&bit == 0 {
			continue
		}
		var blk []byte
		if cluster {
			blk = src[i*BlockSize : min((i+1)*BlockSize, len(src))]
		} else {
			blk = src[k*BlockSize : (k+1)*BlockSize]
			k++
		}
		start := uint64(i) * BlockSize
		if start >= inDev {
			continue // never store past the device end
		}
		if n := inDev - start; n < uint64(len(blk)) {
			blk = blk[:n] // the straddling block: tail past the end is zero
		}
		if isZero(blk) {
			continue
		}
		out |= bit
		w.buf = append(w.buf, blk...)
		if len(blk) < BlockSize {
			w.buf = append(w.buf, zeroBlock[:BlockSize-len(blk)]...)
		}
	}
	d.written.add(num)
	if d.vmstate {
		d.nextState++
	}
	w.infos = append(w.infos, makeBlockinfo(out, uint8(id), num))
	return nil
}

// flush writes the pending extent (and the header before the first one).
func (w *Writer) flush() error {
	if w.extents == 0 {
		if err := w.emit(w.head); err != nil {
			return err
		}
	}
	if w.buf == nil {
		w.buf = make([]byte, ExtentHeaderSize)
	}
	encodeExtentHeader(w.buf, w.hdr.UUID, w.infos)
	if err := w.emit(w.buf); err != nil {
		return err
	}
	w.extents++
	w.infos = w.infos[:0]
	w.buf = w.buf[:ExtentHeaderSize]
	return nil
}

func (w *Writer) emit(b []byte) error {
	n, err := w.w.Write(b)
	w.off += int64(n)
	if err == nil && n < len(b) {
		err = io.ErrShortWrite
	}
	if err != nil {
		w.err = fmt.Errorf("vma: writing archive: %w", err)
	}
	return w.err
}

// Close writes the last extent. It fails if a cluster of a device was
// never written (the archive would not restore). It does not close the
// underlying writer.
func (w *Writer) Close() error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return nil
	}
	for id, d := range w.dev {
		if d == nil {
			continue
		}
		if c := d.written.firstMissing(d.clusters); c >= 0 {
			w.err = fmt.Errorf("vma: incomplete stream: %s: cluster %d was never written", devLabel(id, d.dev.Name), c)
			return w.err
		}
	}
	w.closed = true
	if len(w.infos) > 0 || w.extents == 0 {
		return w.flush()
	}
	return nil
}
