package vmatest

import (
	"crypto/md5"
	"encoding/binary"
	"io"
	"math/bits"
	"slices"

	"github.com/vmasync/vmasync/vma"
)

// Blockinfo is one slot of an extent header: a cluster of a device and the
// mask of its stored 4 KiB blocks (bit i = block i).
type Blockinfo struct {
	Mask    uint16
	DevID   uint8
	Cluster uint32
}

// Uint64 returns the slot as stored (big-endian): mask in bits 63..48,
// dev_id in 39..32, cluster in 31..0.
func (b Blockinfo) Uint64() uint64 {
	return uint64(b.Mask)<<48 | uint64(b.DevID)<<32 | uint64(b.Cluster)
}

func parseBlockinfo(v uint64) Blockinfo {
	return Blockinfo{Mask: uint16(v >> 48), DevID: uint8(v >> 32), Cluster: uint32(v)}
}

// blobs lays out the header blob buffer as vma-writer.c's
// allocate_header_blob does: position 0 unused, a u16 little-endian length
// then the bytes, and the table grown by roundup(len+2, 512) whenever a blob
// does not fit.
type blobs struct {
	table []byte
	pos   int
}

func (a *blobs) add(data []byte) uint32 {
	if len(a.table) < a.pos+len(data)+2 {
		grow := (len(data) + 2 + 511) / 512 * 512
		a.table = append(a.table, make([]byte, grow)...)
		// vma-writer.c overflows its table by one byte when the first
		// blob's len+2 is a multiple of 512 (pos starts at 1). Grow once
		// more instead, so that the header stays consistent.
		if len(a.table) < a.pos+len(data)+2 {
			a.table = append(a.table, make([]byte, 512)...)
		}
	}
	p := a.pos
	binary.LittleEndian.PutUint16(a.table[p:], uint16(len(data)))
	copy(a.table[p+2:], data)
	a.pos += len(data) + 2
	return uint32(p)
}

// layout allocates the blobs of h: per config its name (with NUL) and data,
// then device names (with NUL) in id order.
func layout(h *vma.Header) (a blobs, cfg [][2]uint32, devs []vma.Device, devPtr []uint32) {
	a.pos = 1
	for _, c := range h.Configs {
		n := a.add(append([]byte(c.Name), 0))
		cfg = append(cfg, [2]uint32{n, a.add(c.Data)})
	}
	devs = slices.Clone(h.Devices)
	slices.SortStableFunc(devs, func(x, y vma.Device) int { return x.ID - y.ID })
	for _, d := range devs {
		devPtr = append(devPtr, a.add(append([]byte(d.Name), 0)))
	}
	if len(a.table) == 0 {
		// No blobs: Proxmox's reader needs header_size > 12288.
		a.table = make([]byte, 512)
	}
	return
}

func headerSize(h *vma.Header) int {
	a, _, _, _ := layout(h)
	return vma.HeaderFixedSize + len(a.table)
}

// EncodeHeader encodes h as Proxmox's writer does: the 12288-byte fixed
// part, then the blob buffer at offset 12288 (blob_buffer_size the used
// size including the unused byte 0), header_size = 12288 + the allocated
// table (a multiple of 512), and the header MD5. h.Size is ignored. Device
// ids are taken from h.Devices (1..255), names and sizes are not checked,
// so hostile headers can be made.
func EncodeHeader(h *vma.Header) []byte {
	a, cfg, devs, devPtr := layout(h)
	b := make([]byte, vma.HeaderFixedSize+len(a.table))
	copy(b[0:4], "VMA\x00")
	binary.BigEndian.PutUint32(b[4:], 1)
	copy(b[8:24], h.UUID[:])
	binary.BigEndian.PutUint64(b[24:], uint64(h.CTime))
	binary.BigEndian.PutUint32(b[48:], vma.HeaderFixedSize)
	binary.BigEndian.PutUint32(b[52:], uint32(a.pos))
	binary.BigEndian.PutUint32(b[56:], uint32(len(b)))
	for i, p := range cfg {
		binary.BigEndian.PutUint32(b[2044+4*i:], p[0])
		binary.BigEndian.PutUint32(b[3068+4*i:], p[1])
	}
	for i, d := range devs {
		o := 4096 + 32*d.ID
		binary.BigEndian.PutUint32(b[o:], devPtr[i])
		binary.BigEndian.PutUint64(b[o+8:], d.Size)
	}
	copy(b[vma.HeaderFixedSize:], a.table)
	fixHeaderMD5(b, len(b))
	return b
}

// fixHeaderMD5 stores the MD5 of b[:size] (md5 field zeroed) at 32..47.
func fixHeaderMD5(b []byte, size int) {
	clear(b[32:48])
	sum := md5.Sum(b[:size])
	copy(b[32:48], sum[:])
}

// fixExtentMD5 stores the MD5 of the 512-byte extent header eh (md5 field
// zeroed) at 24..39.
func fixExtentMD5(eh []byte) {
	clear(eh[24:40])
	sum := md5.Sum(eh[:vma.ExtentHeaderSize])
	copy(eh[24:40], sum[:])
}

// putExtentHeader fills eh (512 bytes) with magic, block_count, uuid, the
// blockinfos and the MD5.
func putExtentHeader(eh []byte, uuid vma.UUID, infos []Blockinfo, count int) {
	clear(eh[:vma.ExtentHeaderSize])
	copy(eh[0:4], "VMAE")
	binary.BigEndian.PutUint16(eh[6:], uint16(count))
	copy(eh[8:24], uuid[:])
	for i, bi := range infos {
		binary.BigEndian.PutUint64(eh[40+8*i:], bi.Uint64())
	}
	fixExtentMD5(eh)
}

// EncodeExtent returns an extent: the header with the given blockinfos
// (at most 59; block_count = the sum of their popcounts) followed by data,
// which should hold the stored blocks in slot order. Nothing is checked.
func EncodeExtent(uuid vma.UUID, infos []Blockinfo, data []byte) []byte {
	n := 0
	for _, bi := range infos {
		n += bits.OnesCount16(bi.Mask)
	}
	b := make([]byte, vma.ExtentHeaderSize, vma.ExtentHeaderSize+len(data))
	putExtentHeader(b, uuid, infos, n)
	return append(b, data...)
}

// Mask returns the mask of a cluster's contents (at most ClusterSize
// bytes): bit i is set when 4 KiB block i exists and is not all zero.
func Mask(cluster []byte) uint16 {
	var m uint16
	for i := 0; i*vma.BlockSize < len(cluster); i++ {
		if !allZero(cluster[i*vma.BlockSize : min((i+1)*vma.BlockSize, len(cluster))]) {
			m |= 1 << i
		}
	}
	return m
}

var zeros [vma.BlockSize]byte

func allZero(b []byte) bool { return string(b) == string(zeros[:len(b)]) }

// extentWriter packs clusters into extents as vma-writer.c does: flush when
// the extent holds per clusters before adding one, and at the end.
type extentWriter struct {
	w       io.Writer
	uuid    vma.UUID
	per     int
	infos   []Blockinfo
	buf     []byte // header + data
	extents int
}

func newExtentWriter(w io.Writer, uuid vma.UUID, per int) *extentWriter {
	return &extentWriter{w: w, uuid: uuid, per: per,
		buf: make([]byte, vma.ExtentHeaderSize, vma.ExtentHeaderSize+per*vma.ClusterSize)}
}

// add appends a cluster; data is its contents (short for the last cluster
// of a device, nil for a zero cluster).
func (e *extentWriter) add(dev uint8, num uint32, data []byte) error {
	if len(e.infos) >= e.per {
		if err := e.flush(); err != nil {
			return err
		}
	}
	var mask uint16
	for i := 0; i*vma.BlockSize < len(data); i++ {
		blk := data[i*vma.BlockSize : min((i+1)*vma.BlockSize, len(data))]
		if allZero(blk) {
			continue
		}
		mask |= 1 << i
		e.buf = append(e.buf, blk...)
		e.buf = append(e.buf, zeros[:vma.BlockSize-len(blk)]...)
	}
	e.infos = append(e.infos, Blockinfo{Mask: mask, DevID: dev, Cluster: num})
	return nil
}

func (e *extentWriter) flush() error {
	putExtentHeader(e.buf, e.uuid, e.infos, (len(e.buf)-vma.ExtentHeaderSize)/vma.BlockSize)
	if _, err := e.w.Write(e.buf); err != nil {
		return err
	}
	e.extents++
	e.infos = e.infos[:0]
	e.buf = e.buf[:vma.ExtentHeaderSize]
	return nil
}

// close writes the last extent; an archive without clusters gets one empty
// extent, as Proxmox's writer does.
func (e *extentWriter) close() error {
	if len(e.infos) > 0 || e.extents == 0 {
		return e.flush()
	}
	return nil
}

// FixChecksums returns a copy of data, any bytes, with the header MD5 and
// the MD5 of every extent header recomputed as far as the claimed sizes
// allow: header_size from bytes 56..59 (if it lies inside data), then
// extents walked by their block_count. Fuzzers use it to get past the
// checksums.
func FixChecksums(data []byte) []byte {
	b := slices.Clone(data)
	if len(b) < vma.HeaderFixedSize {
		return b
	}
	hs := int64(binary.BigEndian.Uint32(b[56:]))
	if hs <= vma.HeaderFixedSize || hs > int64(len(b)) {
		return b
	}
	fixHeaderMD5(b, int(hs))
	for off := hs; off+vma.ExtentHeaderSize <= int64(len(b)); {
		fixExtentMD5(b[off:])
		off += vma.ExtentHeaderSize + int64(binary.BigEndian.Uint16(b[off+6:]))*vma.BlockSize
	}
	return b
}
