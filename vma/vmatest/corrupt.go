package vmatest

// Over 500 lines on purpose: the catalogue of damage, one short case per corruption kind.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"slices"

	"github.com/vmasync/vmasync/vma"
)

// Corruption is a kind of damage Corrupt does to an archive. Each breaks
// exactly one thing: checksums are recomputed where needed so that only
// the intended check fails.
type Corruption int

// The corruptions. "Offset" is Damage.Offset, where a reader should
// report the problem.
const (
	// HeaderChecksum flips a byte of the header MD5. Offset 32.
	HeaderChecksum Corruption = iota + 1
	// HeaderMagic changes the magic to "VMX\0". Offset 0.
	HeaderMagic
	// HeaderVersion sets version 2. Offset 4.
	HeaderVersion
	// HeaderSizeSmall sets header_size to 12288 (it must be larger).
	// Offset 56.
	HeaderSizeSmall
	// HeaderSizeHuge sets header_size to 0xFFFFFFF0, which a reader must
	// neither allocate nor read. Offset 56.
	HeaderSizeHuge
	// HeaderSizePastEnd sets header_size to 48 MiB, more than the archive
	// holds: the header is truncated. Offset: the end of the archive.
	HeaderSizePastEnd
	// BlobOffsetLow sets blob_buffer_offset to 12287. Offset 48.
	BlobOffsetLow
	// BlobOffsetHigh sets blob_buffer_offset to header_size, so that the
	// blob buffer ends past the header. Offset 52 (the check is on
	// offset+size, which Proxmox calls a wrong blob buffer size).
	BlobOffsetHigh
	// BlobOffsetWrap sets blob_buffer_offset to 0xFFFFFFFF, so that
	// offset+size wraps around in 32 bits (and passes Proxmox's check).
	// Offset 52.
	BlobOffsetWrap
	// BlobSizeHigh makes blob_buffer_size one larger than the header's
	// blob area. Offset 52.
	BlobSizeHigh
	// ConfigNamePointer points config slot 0's name one byte past its
	// blob start. Offset 2044.
	ConfigNamePointer
	// ConfigDataPointer points config slot 0's data past the blob buffer.
	// Offset 3068.
	ConfigDataPointer
	// DeviceSizeAbsurd gives device 1 a size of 2^60 bytes, beyond the
	// 2^48 that 32-bit cluster numbers can address. Offset: its size field
	// (4136); DevID 1.
	DeviceSizeAbsurd
	// DeviceSizeMax gives device 1 the largest legal size, 2^48 bytes:
	// the archive is well-formed but incomplete. Offset: the end.
	DeviceSizeMax
	// ExtentChecksum flips a byte of extent 0's MD5. Offset: the field.
	ExtentChecksum
	// ExtentUUID changes extent 0's uuid. Offset: the field.
	ExtentUUID
	// ExtentMagic changes extent 0's magic to "VMAF". Offset: the extent.
	ExtentMagic
	// ExtentReserved sets extent 0's reserved1 field to 1. Offset: the
	// field (extent + 4).
	ExtentReserved
	// BlockCountHigh makes extent 0's block_count one larger than its
	// masks account for (adding a block of data so that sizes stay
	// consistent). Offset: the block_count field (extent + 6).
	BlockCountHigh
	// BlockCountLow makes extent 0's block_count one smaller than its masks
	// need (removing its last data block). Offset: the blockinfo whose
	// mask overruns the count.
	BlockCountLow
	// BlockCountMax sets extent 0's block_count to 945, more than 59
	// clusters can hold. Offset: the block_count field.
	BlockCountMax
	// UnknownDevice gives extent 0's first blockinfo a device id that the
	// header does not define (255 if free). Offset: the blockinfo.
	UnknownDevice
	// ClusterBeyondEnd gives a blockinfo in extent 0 the first cluster
	// number past its device's end. Offset: the blockinfo.
	ClusterBeyondEnd
	// BlockBeyondEnd sets mask bit 15 (adding a data block) in the last
	// cluster of a device whose block 15 lies past the end. Offset: the
	// blockinfo.
	BlockBeyondEnd
	// DuplicateInExtent gives a blockinfo the cluster of an earlier one of
	// the same device in extent 0. Offset: the later blockinfo.
	DuplicateInExtent
	// DuplicateAcrossExtents gives a blockinfo in extent 1 a cluster
	// stored in extent 0. Offset: the blockinfo in extent 1.
	DuplicateAcrossExtents
	// MissingZeroCluster removes the first all-zero (mask 0) cluster of a
	// disk. The archive is well-formed but incomplete. Offset: the end.
	MissingZeroCluster
	// MissingDataCluster removes the first cluster with data of a disk and
	// its blocks. Incomplete. Offset: the end.
	MissingDataCluster
	// VMStateOrder swaps the cluster numbers of the first two vmstate
	// blockinfos. Offset: the first of them.
	VMStateOrder
	// TruncEmpty cuts the archive to nothing. Offset 0.
	TruncEmpty
	// TruncHeader cuts the archive inside the fixed header, at 6000.
	// Offset: the end.
	TruncHeader
	// TruncHeaderBlob cuts the archive inside the blob area of the header.
	// Offset: the end.
	TruncHeaderBlob
	// TruncExtentHeader cuts the archive 100 bytes into the last extent's
	// header. Offset: the start of that extent.
	TruncExtentHeader
	// TruncExtentData cuts the archive 100 bytes into the data of the last
	// extent that has data. Offset: the end.
	TruncExtentData
	// TruncAtExtent cuts the archive exactly before its last extent. The
	// rest is well-formed but incomplete. Offset: the end.
	TruncAtExtent

	endCorruption
)

var corruptionNames = [...]string{"", "HeaderChecksum", "HeaderMagic", "HeaderVersion",
	"HeaderSizeSmall", "HeaderSizeHuge", "HeaderSizePastEnd", "BlobOffsetLow",
	"BlobOffsetHigh", "BlobOffsetWrap", "BlobSizeHigh", "ConfigNamePointer",
	"ConfigDataPointer", "DeviceSizeAbsurd", "DeviceSizeMax", "ExtentChecksum",
	"ExtentUUID", "ExtentMagic", "ExtentReserved", "BlockCountHigh",
	"BlockCountLow", "BlockCountMax", "UnknownDevice", "ClusterBeyondEnd",
	"BlockBeyondEnd", "DuplicateInExtent", "DuplicateAcrossExtents",
	"MissingZeroCluster", "MissingDataCluster", "VMStateOrder", "TruncEmpty",
	"TruncHeader", "TruncHeaderBlob", "TruncExtentHeader", "TruncExtentData",
	"TruncAtExtent"}

// String returns the corruption's name.
func (k Corruption) String() string {
	if k > 0 && k < endCorruption {
		return corruptionNames[k]
	}
	return fmt.Sprintf("Corruption(%d)", int(k))
}

// Corruptions returns every Corruption.
func Corruptions() []Corruption {
	var ks []Corruption
	for k := Corruption(1); k < endCorruption; k++ {
		ks = append(ks, k)
	}
	return ks
}

// Damage is a damaged archive and where the damage is.
type Damage struct {
	// Kind is the corruption done.
	Kind Corruption
	// Data is the damaged archive.
	Data []byte
	// Offset is where a reader should report the problem: the byte offset
	// of the field at fault; for a cut inside an extent header the start
	// of that extent; for other cuts and for missing clusters the end of
	// the archive (len(Data)).
	Offset int64
	// Extent is the index of the extent concerned, or -1 for the header
	// and for the end of the archive.
	Extent int
	// DevID and Device name the device concerned (0 and "" if none).
	DevID  int
	Device string
	// Cluster is the cluster concerned, or -1. For an incomplete archive
	// it is the first missing cluster of the first incomplete device.
	Cluster int64
	// Incomplete is true when the archive is well-formed but lacks
	// clusters: a reader that allows incomplete archives reads it to the
	// end, and Missing is what it should report.
	Incomplete bool
	// Missing maps each incomplete device id to its first missing cluster.
	Missing map[int]int64
}

// parsed archive, as far as Corrupt needs it.
type parsed struct {
	hsize int
	uuid  vma.UUID
	devs  map[int]devRec
	exts  []extRef
}

type devRec struct {
	name string
	size uint64
}

func (d devRec) vmstate() bool { return d.name == vma.VMStateName }

type extRef struct {
	off, count int
	slots      []slotRef
}

type slotRef struct {
	ext, idx int
	off      int // absolute offset of the blockinfo
	bi       Blockinfo
	data     []byte // the slot's stored blocks
}

var errParse = errors.New("vmatest: Corrupt needs a well-formed archive")

// parse walks a well-formed archive without checking checksums.
func parse(b []byte) (*parsed, error) {
	if len(b) < vma.HeaderFixedSize || string(b[:4]) != "VMA\x00" {
		return nil, errParse
	}
	p := &parsed{hsize: int(binary.BigEndian.Uint32(b[56:])), devs: map[int]devRec{}}
	copy(p.uuid[:], b[8:24])
	blobOff := int(binary.BigEndian.Uint32(b[48:]))
	if p.hsize <= vma.HeaderFixedSize || p.hsize > len(b) || blobOff < vma.HeaderFixedSize {
		return nil, errParse
	}
	for id := 1; id <= vma.MaxDeviceID; id++ {
		o := 4096 + 32*id
		ptr := int(binary.BigEndian.Uint32(b[o:]))
		size := binary.BigEndian.Uint64(b[o+8:])
		if size == 0 || ptr == 0 {
			continue
		}
		at := blobOff + ptr
		if at+2 > p.hsize {
			return nil, errParse
		}
		n := int(binary.LittleEndian.Uint16(b[at:]))
		if at+2+n > p.hsize || n == 0 {
			return nil, errParse
		}
		p.devs[id] = devRec{name: string(b[at+2 : at+1+n]), size: size}
	}
	for off := p.hsize; off < len(b); {
		if off+vma.ExtentHeaderSize > len(b) {
			return nil, errParse
		}
		e := extRef{off: off, count: int(binary.BigEndian.Uint16(b[off+6:]))}
		data := off + vma.ExtentHeaderSize
		end := data + e.count*vma.BlockSize
		if end > len(b) {
			return nil, errParse
		}
		for i := range vma.ExtentSlots {
			bi := parseBlockinfo(binary.BigEndian.Uint64(b[off+40+8*i:]))
			if bi.DevID == 0 {
				continue
			}
			n := bits.OnesCount16(bi.Mask) * vma.BlockSize
			if data+n > end {
				return nil, errParse
			}
			e.slots = append(e.slots, slotRef{ext: len(p.exts), idx: i, off: off + 40 + 8*i, bi: bi, data: b[data : data+n]})
			data += n
		}
		if data != end {
			return nil, errParse
		}
		p.exts = append(p.exts, e)
		off = end
	}
	return p, nil
}

func (p *parsed) slots() []slotRef {
	var s []slotRef
	for _, e := range p.exts {
		s = append(s, e.slots...)
	}
	return s
}

// missing returns the first missing cluster per incomplete device (not
// vmstate), as a complete reader would report it.
func (p *parsed) missing() map[int]int64 {
	seen := map[int][]uint32{}
	for _, s := range p.slots() {
		seen[int(s.bi.DevID)] = append(seen[int(s.bi.DevID)], s.bi.Cluster)
	}
	m := map[int]int64{}
	for id, d := range p.devs {
		if d.vmstate() {
			continue
		}
		n := (d.size + vma.ClusterSize - 1) / vma.ClusterSize
		cs := seen[id]
		slices.Sort(cs)
		cs = slices.Compact(cs)
		first := uint64(len(cs))
		for i, c := range cs {
			if uint64(c) != uint64(i) {
				first = uint64(i)
				break
			}
		}
		if first < n {
			m[id] = int64(first)
		}
	}
	return m
}

// replaceExtent returns b with extent e replaced by one with the given
// slots (renumbered from 0) and block_count.
func replaceExtent(b []byte, p *parsed, e int, slots []slotRef, count int) []byte {
	ex := p.exts[e]
	var infos []Blockinfo
	var data []byte
	for _, s := range slots {
		infos = append(infos, s.bi)
		data = append(data, s.data...)
	}
	eh := make([]byte, vma.ExtentHeaderSize)
	putExtentHeader(eh, p.uuid, infos, count)
	end := ex.off + vma.ExtentHeaderSize + ex.count*vma.BlockSize
	out := slices.Clone(b[:ex.off])
	out = append(out, eh...)
	out = append(out, data...)
	return append(out, b[end:]...)
}

func blockCount(slots []slotRef) int {
	n := 0
	for _, s := range slots {
		n += bits.OnesCount16(s.bi.Mask)
	}
	return n
}

func (d *Damage) at(p *parsed, s slotRef) {
	d.Offset, d.Extent = int64(s.off), s.ext
	d.DevID, d.Device, d.Cluster = int(s.bi.DevID), p.devs[int(s.bi.DevID)].name, int64(s.bi.Cluster)
}

// incomplete fills d for an archive that lacks clusters.
func (d *Damage) incomplete() error {
	p, err := parse(d.Data)
	if err != nil {
		return err
	}
	d.Incomplete, d.Missing = true, p.missing()
	d.Offset, d.Extent = int64(len(d.Data)), -1
	ids := slices.Sorted(mapKeys(d.Missing))
	if len(ids) == 0 {
		return errors.New("vmatest: the damage left no cluster missing")
	}
	d.DevID, d.Device, d.Cluster = ids[0], p.devs[ids[0]].name, d.Missing[ids[0]]
	return nil
}

func mapKeys(m map[int]int64) func(func(int) bool) {
	return func(yield func(int) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// Corrupt returns a damaged copy of archive, a well-formed archive such as
// Write produces (checksums aside). It fails if the archive lacks what the
// damage needs (two extents, a vmstate device, a disk whose last cluster
// has block 15 past the end, …); CorruptionSpec describes an archive that
// has everything.
// Kept as one function: one short case per corruption kind, the table of what can go wrong in a VMA.
func Corrupt(archive []byte, k Corruption) (*Damage, error) {
	p, err := parse(archive)
	if err != nil {
		return nil, err
	}
	b := bytes.Clone(archive)
	d := &Damage{Kind: k, Extent: -1, Cluster: -1}
	need := func(ok bool, what string) error {
		if !ok {
			return fmt.Errorf("vmatest: %v needs an archive with %s", k, what)
		}
		return nil
	}
	put32 := binary.BigEndian.PutUint32
	hdr := func(off int) { fixHeaderMD5(b, p.hsize); d.Offset = int64(off) }
	ext0 := func(off int) (int, error) {
		if err := need(len(p.exts) > 0, "an extent"); err != nil {
			return 0, err
		}
		d.Extent = 0
		return p.exts[0].off + off, nil
	}
	// findSlot returns the first slot matching f, from extent e on.
	findSlot := func(e int, f func(slotRef) bool) (slotRef, bool) {
		for _, ex := range p.exts[min(e, len(p.exts)):] {
			for _, s := range ex.slots {
				if f(s) {
					return s, true
				}
			}
		}
		return slotRef{}, false
	}
	isDisk := func(s slotRef) bool { return !p.devs[int(s.bi.DevID)].vmstate() }
	clustersOf := func(id int) uint64 { return (p.devs[id].size + vma.ClusterSize - 1) / vma.ClusterSize }

	switch k {
	case HeaderChecksum:
		b[32] ^= 0xff
		d.Offset = 32
	case HeaderMagic:
		b[2] = 'X'
		hdr(0)
	case HeaderVersion:
		put32(b[4:], 2)
		hdr(4)
	case HeaderSizeSmall:
		put32(b[56:], vma.HeaderFixedSize)
		hdr(56)
	case HeaderSizeHuge:
		put32(b[56:], 0xfffffff0)
		hdr(56)
	case HeaderSizePastEnd:
		put32(b[56:], 48<<20)
		hdr(len(b))
	case BlobOffsetLow:
		put32(b[48:], vma.HeaderFixedSize-1)
		hdr(48)
	case BlobOffsetHigh:
		put32(b[48:], uint32(p.hsize))
		hdr(52)
	case BlobOffsetWrap:
		put32(b[48:], 0xffffffff)
		hdr(52)
	case BlobSizeHigh:
		put32(b[52:], uint32(p.hsize-vma.HeaderFixedSize+1))
		hdr(52)
	case ConfigNamePointer, ConfigDataPointer:
		np := binary.BigEndian.Uint32(b[2044:])
		if err := need(np != 0, "a config in slot 0"); err != nil {
			return nil, err
		}
		if k == ConfigNamePointer {
			put32(b[2044:], np+1)
			hdr(2044)
		} else {
			put32(b[3068:], uint32(p.hsize))
			hdr(3068)
		}
	case DeviceSizeAbsurd, DeviceSizeMax:
		if err := need(p.devs[1].size != 0, "device 1"); err != nil {
			return nil, err
		}
		if k == DeviceSizeAbsurd {
			binary.BigEndian.PutUint64(b[4096+32+8:], 1<<60)
			hdr(4096 + 32 + 8)
			d.DevID, d.Device = 1, p.devs[1].name
			break
		}
		binary.BigEndian.PutUint64(b[4096+32+8:], vma.MaxDeviceSize)
		fixHeaderMD5(b, p.hsize)
		d.Data = b
		return d, d.incomplete()
	case ExtentChecksum:
		o, err := ext0(24)
		if err != nil {
			return nil, err
		}
		b[o] ^= 0xff
		d.Offset = int64(o)
	case ExtentUUID, ExtentMagic, ExtentReserved, BlockCountMax:
		field := map[Corruption]int{ExtentUUID: 8, ExtentMagic: 0, ExtentReserved: 4, BlockCountMax: 6}[k]
		o, err := ext0(field)
		if err != nil {
			return nil, err
		}
		e := p.exts[0].off
		switch k {
		case ExtentUUID:
			b[o] ^= 0xff
		case ExtentMagic:
			b[o+3] = 'F'
		case ExtentReserved:
			b[o+1] = 1
		case BlockCountMax:
			binary.BigEndian.PutUint16(b[o:], vma.MaxExtentBlocks+1)
		}
		fixExtentMD5(b[e:])
		d.Offset = int64(o)
	case BlockCountHigh:
		if err := need(len(p.exts) > 0 && len(p.exts[0].slots) > 0, "a blockinfo in extent 0"); err != nil {
			return nil, err
		}
		ss := slices.Clone(p.exts[0].slots)
		n := blockCount(ss)
		last := &ss[len(ss)-1]
		last.data = append(slices.Clip(last.data), fillerBlock()...)
		b = replaceExtent(b, p, 0, ss, n+1)
		d.Offset, d.Extent = int64(p.exts[0].off+6), 0
	case BlockCountLow:
		if err := need(len(p.exts) > 0 && p.exts[0].count > 0, "data in extent 0"); err != nil {
			return nil, err
		}
		ss := slices.Clone(p.exts[0].slots)
		j := len(ss) - 1
		for ss[j].bi.Mask == 0 {
			j--
		}
		ss[j].data = ss[j].data[:len(ss[j].data)-vma.BlockSize]
		b = replaceExtent(b, p, 0, ss, blockCount(ss)-1)
		d.at(p, p.exts[0].slots[j])
	case UnknownDevice:
		if err := need(len(p.exts) > 0 && len(p.exts[0].slots) > 0, "a blockinfo in extent 0"); err != nil {
			return nil, err
		}
		id := vma.MaxDeviceID
		for id > 0 && p.devs[id].size != 0 {
			id--
		}
		s := p.exts[0].slots[0]
		b[s.off+3] = byte(id)
		fixExtentMD5(b[p.exts[0].off:])
		d.at(p, s)
		d.DevID, d.Device = id, ""
	case ClusterBeyondEnd:
		s, ok := findSlot(0, func(s slotRef) bool { return s.ext == 0 && isDisk(s) && s.bi.Mask == 0 })
		if !ok {
			s, ok = findSlot(0, func(s slotRef) bool { return s.ext == 0 && isDisk(s) })
		}
		if err := need(ok, "a disk cluster in extent 0"); err != nil {
			return nil, err
		}
		s.bi.Cluster = uint32(clustersOf(int(s.bi.DevID)))
		binary.BigEndian.PutUint64(b[s.off:], s.bi.Uint64())
		fixExtentMD5(b[p.exts[0].off:])
		d.at(p, s)
	case BlockBeyondEnd:
		s, ok := findSlot(0, func(s slotRef) bool {
			dv := p.devs[int(s.bi.DevID)]
			r := dv.size % vma.ClusterSize
			return isDisk(s) && r != 0 && r <= 15*vma.BlockSize && uint64(s.bi.Cluster) == clustersOf(int(s.bi.DevID))-1
		})
		if err := need(ok, "a disk whose last cluster has block 15 past the end"); err != nil {
			return nil, err
		}
		ss := slices.Clone(p.exts[s.ext].slots)
		j := slices.IndexFunc(ss, func(x slotRef) bool { return x.off == s.off })
		ss[j].bi.Mask |= 1 << 15
		ss[j].data = append(slices.Clip(ss[j].data), fillerBlock()...)
		b = replaceExtent(b, p, s.ext, ss, blockCount(ss))
		d.at(p, s)
	case DuplicateInExtent:
		if err := need(len(p.exts) > 0, "an extent"); err != nil {
			return nil, err
		}
		var first, dup slotRef
		found := false
		ss := p.exts[0].slots
	outer:
		for i := range ss {
			for j := i + 1; j < len(ss); j++ {
				if isDisk(ss[i]) && ss[j].bi.DevID == ss[i].bi.DevID {
					first, dup, found = ss[i], ss[j], true
					break outer
				}
			}
		}
		if err := need(found, "two clusters of a disk in extent 0"); err != nil {
			return nil, err
		}
		dup.bi.Cluster = first.bi.Cluster
		binary.BigEndian.PutUint64(b[dup.off:], dup.bi.Uint64())
		fixExtentMD5(b[p.exts[0].off:])
		d.at(p, dup)
	case DuplicateAcrossExtents:
		if err := need(len(p.exts) > 1, "two extents"); err != nil {
			return nil, err
		}
		var dup slotRef
		var c uint32
		found := false
		for _, s := range p.exts[1].slots {
			if f, ok := findSlot(0, func(x slotRef) bool { return x.ext == 0 && isDisk(x) && x.bi.DevID == s.bi.DevID }); ok {
				dup, c, found = s, f.bi.Cluster, true
				break
			}
		}
		if err := need(found, "a disk with clusters in extents 0 and 1"); err != nil {
			return nil, err
		}
		dup.bi.Cluster = c
		binary.BigEndian.PutUint64(b[dup.off:], dup.bi.Uint64())
		fixExtentMD5(b[p.exts[1].off:])
		d.at(p, dup)
	case MissingZeroCluster, MissingDataCluster:
		s, ok := findSlot(0, func(s slotRef) bool { return isDisk(s) && (s.bi.Mask == 0) == (k == MissingZeroCluster) })
		if err := need(ok, "such a cluster"); err != nil {
			return nil, err
		}
		ss := slices.DeleteFunc(slices.Clone(p.exts[s.ext].slots), func(x slotRef) bool { return x.off == s.off })
		d.Data = replaceExtent(b, p, s.ext, ss, blockCount(ss))
		return d, d.incomplete()
	case VMStateOrder:
		var vs []slotRef
		for _, s := range p.slots() {
			if p.devs[int(s.bi.DevID)].vmstate() {
				vs = append(vs, s)
			}
		}
		if err := need(len(vs) >= 2, "two vmstate clusters"); err != nil {
			return nil, err
		}
		a, c := vs[0], vs[1]
		a.bi.Cluster, c.bi.Cluster = c.bi.Cluster, a.bi.Cluster
		binary.BigEndian.PutUint64(b[a.off:], a.bi.Uint64())
		binary.BigEndian.PutUint64(b[c.off:], c.bi.Uint64())
		fixExtentMD5(b[p.exts[a.ext].off:])
		fixExtentMD5(b[p.exts[c.ext].off:])
		d.at(p, a)
	case TruncEmpty:
		b = b[:0]
	case TruncHeader:
		b = b[:6000]
		d.Offset = 6000
	case TruncHeaderBlob:
		b = b[:(vma.HeaderFixedSize+p.hsize)/2]
		d.Offset = int64(len(b))
	case TruncExtentHeader:
		if err := need(len(p.exts) > 0, "an extent"); err != nil {
			return nil, err
		}
		e := len(p.exts) - 1
		b = b[:p.exts[e].off+100]
		d.Offset, d.Extent = int64(p.exts[e].off), e
	case TruncExtentData:
		e := len(p.exts) - 1
		for e >= 0 && p.exts[e].count == 0 {
			e--
		}
		if err := need(e >= 0, "an extent with data"); err != nil {
			return nil, err
		}
		b = b[:p.exts[e].off+vma.ExtentHeaderSize+100]
		d.Offset, d.Extent = int64(len(b)), e
	case TruncAtExtent:
		if err := need(len(p.exts) > 1, "two extents"); err != nil {
			return nil, err
		}
		d.Data = b[:p.exts[len(p.exts)-1].off]
		return d, d.incomplete()
	default:
		return nil, fmt.Errorf("vmatest: unknown corruption %d", int(k))
	}
	d.Data = b
	return d, nil
}

// fillerBlock returns a 4 KiB block of text for added data.
func fillerBlock() []byte {
	return bytes.Repeat([]byte("added by vmatest.Corrupt\n"), vma.BlockSize/25+1)[:vma.BlockSize]
}

// CorruptionSpec returns a small archive spec (about 30 KiB, two extents)
// that has everything every Corruption needs: drive-scsi0 (4 MiB, Sparse),
// drive-efidisk0 (540672 bytes, Zero: its last cluster has 4 blocks),
// drive-tpmstate0-backup (64 KiB + 100 bytes, Sparse: a straddling last
// block with data) and a vmstate device of 3 clusters (Sparse), stored
// ProxmoxLike.
func CorruptionSpec() Spec {
	return Spec{
		Disks: []Disk{
			{Name: "drive-scsi0", Size: 4 << 20, Content: Sparse},
			{Name: "drive-efidisk0", Size: 540672, Content: Zero},
			{Name: "drive-tpmstate0-backup", Size: 65536 + 100, Content: Sparse},
			{Name: vma.VMStateName, Size: 3 * 65536, Content: Sparse},
		},
		Order:       ProxmoxLike,
		PullForward: 0.05,
		Seed:        7,
	}
}

// HostileNames are names a reader must not use as file names unchecked:
// traversal, absolute, nested, dot, empty, and with an embedded NUL (which
// Proxmox's C code would cut at the NUL).
func HostileNames() []string {
	return []string{"../x", "/etc/x", "a/b", "..", ".", "", "a\x00b", "../../evil-config"}
}

// HostileSpec returns a small archive spec whose configs and disks (one
// of 4 KiB per name, the first with data, the others zero) carry
// HostileNames. Its archive is valid VMA.
func HostileSpec() Spec {
	s := Spec{Configs: []vma.Config{}, Seed: 13}
	for i, n := range HostileNames() {
		s.Configs = append(s.Configs, vma.Config{Name: n, Data: []byte(fmt.Sprintf("config %d\n", i))})
		c := Zero
		if i == 0 {
			c = Sparse
		}
		s.Disks = append(s.Disks, Disk{Name: n, Size: 4096, Content: c})
	}
	return s
}
