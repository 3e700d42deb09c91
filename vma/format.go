// Package vma reads and writes Proxmox VMA (Virtual Machine Archive) files,
// the format vzdump writes for QEMU virtual machines.
//
// The layout follows Proxmox's C implementation (vma-reader.c, vma-writer.c),
// not the older vma_spec.txt where the two disagree: blob length prefixes are
// little-endian, an extent holds at most 59 clusters (Proxmox writes 58),
// blob_buffer_size is the exact used size, and data blocks carry no
// checksum. See docs/vma-format.md for the summary this package implements.
//
// A Reader parses an archive from any io.Reader in one forward pass and yields
// its clusters in stored order; a Writer produces an archive from clusters
// handed in any order. Both check what Proxmox's code checks, and the Reader
// also checks that every cluster of every disk is present exactly once.
// Scan, Optimize and PackDevices are built on them.
//
// The package is a codec, like archive/tar: it reads and writes streams
// and knows no file names, compression, standard input or output; that
// file work is internal/vmafile's, over internal/input and internal/output.
package vma

import (
	"crypto/md5"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/bits"
	"time"
)

// Sizes and limits of the format.
const (
	// ClusterSize is the unit of the archive: 64 KiB of a device.
	ClusterSize = 65536
	// BlockSize is the unit of zero detection inside a cluster: 4 KiB.
	BlockSize = 4096
	// BlocksPerCluster is the number of mask bits per cluster.
	BlocksPerCluster = ClusterSize / BlockSize

	// HeaderFixedSize is the size of the fixed part of the archive header;
	// the blob buffer follows it.
	HeaderFixedSize = 12288
	// ExtentHeaderSize is the size of an extent header.
	ExtentHeaderSize = 512
	// ExtentSlots is the number of blockinfo slots in an extent header and
	// so the most clusters an extent can hold.
	ExtentSlots = 59
	// ProxmoxClustersPerExtent is how many clusters Proxmox's writer puts in
	// an extent before it flushes. This package's Writer does the same.
	ProxmoxClustersPerExtent = 58
	// MaxExtentBlocks is the largest block_count an extent can have.
	MaxExtentBlocks = ExtentSlots * BlocksPerCluster

	// MaxConfigs is the number of config slots in the header.
	MaxConfigs = 256
	// MaxDeviceID is the largest device id a reader accepts (the writer
	// uses 1..254).
	MaxDeviceID = 255
	// MaxWriterDevices is how many devices Proxmox's writer accepts.
	MaxWriterDevices = 254
	// MaxBlobSize is the largest config, config name or device name.
	MaxBlobSize = 65535
	// MaxHeaderSize bounds the header size this package accepts. The
	// largest header the format can describe (256 configs and 255 device
	// names of maximal size) is about 50 MiB; Proxmox's writer stays below
	// 512 KiB.
	MaxHeaderSize = 64 << 20
	// MaxDeviceSize is the largest device a VMA can hold completely:
	// cluster numbers are 32 bits.
	MaxDeviceSize = (1 << 32) * ClusterSize

	// VMStateName is the reserved device name of a VM's saved RAM.
	VMStateName = "vmstate"
)

var (
	headerMagic = [4]byte{'V', 'M', 'A', 0}
	extentMagic = [4]byte{'V', 'M', 'A', 'E'}
)

// OptimizedUUID is the fixed uuid written by Optimize (and by vma-tool's
// optimize): 12345678-aabb-ccdd-eeff-aabbccddeeff. A random per-archive
// uuid repeated in every extent header defeats deduplication.
var OptimizedUUID = UUID{0x12, 0x34, 0x56, 0x78, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff}

// UUID is the 16-byte archive identifier stored in the header and in every
// extent header.
type UUID [16]byte

// String formats u as 8-4-4-4-12 lowercase hex.
func (u UUID) String() string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// ParseUUID parses the 8-4-4-4-12 hex form.
func ParseUUID(s string) (UUID, error) {
	var u UUID
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return u, fmt.Errorf("invalid uuid %q", s)
	}
	b, err := hex.DecodeString(s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:36])
	if err != nil {
		return u, fmt.Errorf("invalid uuid %q", s)
	}
	copy(u[:], b)
	return u, nil
}

// Config is a file stored in the archive header, such as qemu-server.conf.
type Config struct {
	Name string
	Data []byte
}

// Device is a disk image (or the VM state) stored in the archive.
type Device struct {
	// ID is the device id used in blockinfos, 1..255.
	ID int
	// Name is the QEMU drive id, e.g. drive-scsi0.
	Name string
	// Size is the device size in bytes.
	Size uint64
}

// Clusters returns the number of 64 KiB clusters that cover the device.
func (d Device) Clusters() uint64 { return (d.Size + ClusterSize - 1) / ClusterSize }

// IsVMState reports whether the device holds VM RAM state.
func (d Device) IsVMState() bool { return d.Name == VMStateName }

// Header is the archive header: identity, configs and devices.
type Header struct {
	UUID UUID
	// CTime is the creation time in seconds since the Unix epoch.
	CTime int64
	// Configs in slot order.
	Configs []Config
	// Devices in id order.
	Devices []Device
	// Size is header_size as read from an archive (header and blob area,
	// a multiple of 512 when Proxmox wrote it). The Writer ignores it.
	Size int64
}

// Time returns CTime as a time.Time.
func (h *Header) Time() time.Time { return time.Unix(h.CTime, 0) }

// Device returns the device with the given id, or nil.
func (h *Header) Device(id int) *Device {
	for i := range h.Devices {
		if h.Devices[i].ID == id {
			return &h.Devices[i]
		}
	}
	return nil
}

// blockinfo is one slot of an extent header.
type blockinfo uint64

func makeBlockinfo(mask uint16, dev uint8, cluster uint32) blockinfo {
	return blockinfo(uint64(mask)<<48 | uint64(dev)<<32 | uint64(cluster))
}

func (b blockinfo) mask() uint16    { return uint16(b >> 48) }
func (b blockinfo) dev() uint8      { return uint8(b >> 32) }
func (b blockinfo) cluster() uint32 { return uint32(b) }
func (b blockinfo) blocks() int     { return bits.OnesCount16(b.mask()) }

// headerMD5 computes the header checksum: MD5 of the header with the md5sum
// field (bytes 32..47) zeroed.
func headerMD5(hdr []byte) [16]byte {
	h := md5.New()
	h.Write(hdr[:32])
	h.Write(make([]byte, 16))
	h.Write(hdr[48:])
	var sum [16]byte
	h.Sum(sum[:0])
	return sum
}

// extentMD5 computes the extent header checksum: MD5 of the 512-byte
// extent header with its md5sum field (bytes 24..39) zeroed.
func extentMD5(eh []byte) [16]byte {
	var tmp [ExtentHeaderSize]byte
	copy(tmp[:], eh[:ExtentHeaderSize])
	clear(tmp[24:40])
	return md5.Sum(tmp[:])
}

// encodeExtentHeader fills dst (512 bytes) with an extent header holding
// the given blockinfos and a valid checksum.
func encodeExtentHeader(dst []byte, uuid UUID, infos []blockinfo) {
	clear(dst[:ExtentHeaderSize])
	copy(dst[0:4], extentMagic[:])
	n := 0
	for i, bi := range infos {
		n += bi.blocks()
		binary.BigEndian.PutUint64(dst[40+8*i:], uint64(bi))
	}
	binary.BigEndian.PutUint16(dst[6:8], uint16(n))
	copy(dst[8:24], uuid[:])
	sum := extentMD5(dst)
	copy(dst[24:40], sum[:])
}

// zeroBlock is a 4 KiB block of zeros for comparisons.
var zeroBlock [BlockSize]byte

// isZero reports whether b (at most BlockSize bytes) is all zero.
func isZero(b []byte) bool {
	return string(b) == string(zeroBlock[:len(b)])
}

// RandomUUID returns a random version-4 uuid, as uuid_generate does.
func RandomUUID() UUID {
	var u UUID
	if _, err := rand.Read(u[:]); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return u
}
