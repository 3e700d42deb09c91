// Package vmatest generates Proxmox-like VMA archives for tests and
// benchmarks, and damaged ones for testing readers.
//
// Everything is a pure function of a Spec: the header (uuid, ctime,
// configs), the contents of every cluster (ClusterData), and the order in
// which clusters are stored (StoredOrder). Image data is never held in
// memory, so an image can be checked cluster by cluster after unpacking.
//
// The package has its own small encoder (EncodeHeader, EncodeExtent),
// written from docs/vma-format.md and independent of vma.Writer, so that
// vma.Reader is tested against a second implementation and damaged archives
// can be crafted freely (Corrupt).
//
// Archives written by Write look like Proxmox's: a blockinfo for every
// cluster of every device exactly once, all-zero clusters as mask 0 without
// data, zero 4 KiB blocks left out, at most ClustersPerExtent (58) clusters
// per extent, the block straddling a device end stored as a full block with
// the bytes past the end zeroed, and nothing past the device end.
package vmatest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"iter"
	"slices"
	"strings"

	"github.com/vmasync/vmasync/vma"
)

// Order is the order in which an archive stores the clusters.
type Order int

const (
	// Ordered stores device after device, clusters ascending.
	Ordered Order = iota
	// ProxmoxLike models a live vzdump backup: drives one after another;
	// per drive 16 concurrent block-copy workers, each copying a 1 MiB
	// task (16 clusters) ascending and taking the next task when done,
	// their clusters interleaved; plus a fraction (Spec.PullForward) of
	// clusters emitted early by guest writes (copy-before-write), which may
	// belong to a later drive. A vmstate device is stored first, in order.
	ProxmoxLike
	// CreateLike models `vma create`: one coroutine per device, devices
	// interleaved at random, each device ascending.
	CreateLike
)

// Orders lists every Order.
var Orders = []Order{Ordered, ProxmoxLike, CreateLike}

// String returns the order's name.
func (o Order) String() string {
	switch o {
	case Ordered:
		return "Ordered"
	case ProxmoxLike:
		return "ProxmoxLike"
	case CreateLike:
		return "CreateLike"
	}
	return fmt.Sprintf("Order(%d)", int(o))
}

// Content is the kind of data a generated disk holds.
type Content int

const (
	// Mixed mixes random clusters, text clusters, all-zero clusters,
	// clusters with some zero 4 KiB blocks, and 1 MiB all-zero runs.
	Mixed Content = iota
	// Random fills every cluster with random bytes.
	Random
	// Text fills every cluster with text made of English-like words.
	Text
	// ZeroRuns makes the middle half of the disk one all-zero run; the
	// rest holds random, text, zero clusters and clusters with runs of
	// zero blocks.
	ZeroRuns
	// Sparse is mostly zero: text in the first block of the disk, in the
	// last block (as a GPT would be), and in one block of about one cluster
	// in 1024. Suited to huge disks and to small archives.
	Sparse
	// Zero makes every cluster all zero (stored as mask 0, no data).
	Zero
)

// String returns the content's name.
func (c Content) String() string {
	switch c {
	case Mixed:
		return "Mixed"
	case Random:
		return "Random"
	case Text:
		return "Text"
	case ZeroRuns:
		return "ZeroRuns"
	case Sparse:
		return "Sparse"
	case Zero:
		return "Zero"
	}
	return fmt.Sprintf("Content(%d)", int(c))
}

// Disk is one device of a generated archive. Disk i of a Spec gets device
// id i+1. The name "vmstate" makes it the VM state device, which is
// stored in cluster order in every Order.
type Disk struct {
	// Name is the device name, e.g. drive-scsi0. It is stored as given,
	// unchecked.
	Name string
	// Size in bytes: any value from 1 to vma.MaxDeviceSize (not
	// necessarily a multiple of 512). 0 is stored as is (readers ignore
	// such a device) and has no clusters.
	Size uint64
	// Content is the kind of data on the disk.
	Content Content
}

// Defaults of Spec fields left zero.
const (
	// DefaultClustersPerExtent is what Proxmox's writer puts in an extent.
	DefaultClustersPerExtent = vma.ProxmoxClustersPerExtent
	// DefaultChangeFraction is the fraction of clusters that change per
	// generation when Spec.ChangeFraction is 0.
	DefaultChangeFraction = 0.03
)

// Spec describes a generated archive. Its zero value is a valid archive
// without devices.
type Spec struct {
	// Disks in device id order (Disks[i] has id i+1).
	Disks []Disk
	// Configs stored in the header. nil stores a realistic
	// qemu-server.conf for the disks (and qemu-server.fw if Firewall is
	// set); a non-nil empty slice stores none.
	Configs []vma.Config
	// Firewall adds a qemu-server.fw to the default configs.
	Firewall bool
	// Order of the clusters in the archive.
	Order Order
	// PullForward is the fraction of clusters that ProxmoxLike emits
	// early (guest writes during the backup), e.g. 0.02. 0 means none.
	PullForward float64
	// Seed makes the uuid, ctime, data and order of the archive.
	Seed uint64
	// Generation 0 is a first backup ("day 1"); generation n > 0 is the
	// same VM n backups later: another uuid and ctime (n days later), and
	// in each generation a fraction ChangeFraction of the clusters,
	// scattered, gets new contents. See Version.
	Generation uint64
	// ChangeFraction of clusters that change in each generation. 0 means
	// DefaultChangeFraction; a negative value means no changes.
	ChangeFraction float64
	// ClustersPerExtent is the most clusters an extent holds, 1..59.
	// 0 means DefaultClustersPerExtent (58, as Proxmox writes).
	ClustersPerExtent int
}

// NamedSpec is a Spec with a name for subtests.
type NamedSpec struct {
	Name string
	Spec Spec
}

// Salts separating the uses of the hash.
const (
	saltUUID uint64 = 0x75756964 << 32
	saltTime uint64 = 0x74696d65 << 32
	saltKind uint64 = 0x6b696e64 << 32
	saltData uint64 = 0x64617461 << 32
	saltChg  uint64 = 0x63686e67 << 32
	saltOrd  uint64 = 0x6f726472 << 32
	saltRun  uint64 = 0x72756e73 << 32
	saltMAC  uint64 = 0x6d616321 << 32
)

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// hash mixes four words into one.
func hash(a, b, c, d uint64) uint64 {
	x := splitmix(a ^ 0x6a09e667f3bcc909)
	x = splitmix(x ^ b)
	x = splitmix(x ^ c)
	return splitmix(x ^ d)
}

// unit maps a hash to [0, 1).
func unit(x uint64) float64 { return float64(x>>11) / (1 << 53) }

// clustersPerExtent returns the effective clusters per extent.
func (s Spec) clustersPerExtent() int {
	if s.ClustersPerExtent == 0 {
		return DefaultClustersPerExtent
	}
	return s.ClustersPerExtent
}

func (s Spec) changeFraction() float64 {
	switch {
	case s.ChangeFraction == 0:
		return DefaultChangeFraction
	case s.ChangeFraction < 0:
		return 0
	}
	return s.ChangeFraction
}

// clusters returns the number of clusters of disk i.
func (s Spec) clusters(i int) uint64 {
	return (s.Disks[i].Size + vma.ClusterSize - 1) / vma.ClusterSize
}

// UUID returns the archive uuid (a random-looking version 4 uuid).
func (s Spec) UUID() vma.UUID {
	var u vma.UUID
	binary.BigEndian.PutUint64(u[0:], hash(s.Seed, saltUUID, s.Generation, 1))
	binary.BigEndian.PutUint64(u[8:], hash(s.Seed, saltUUID, s.Generation, 2))
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return u
}

// CTime returns the creation time: a time in 2025 that depends on Seed,
// plus one day per Generation.
func (s Spec) CTime() int64 {
	const base = 1735689600 // 2025-01-01T00:00:00Z
	return base + int64(hash(s.Seed, saltTime, 0, 0)%(300*86400)) + int64(s.Generation)*86400
}

// Header returns the header of the archive, with Size set to the
// header_size Write uses.
func (s Spec) Header() vma.Header {
	h := vma.Header{UUID: s.UUID(), CTime: s.CTime(), Configs: s.configs()}
	for i, d := range s.Disks {
		h.Devices = append(h.Devices, vma.Device{ID: i + 1, Name: d.Name, Size: d.Size})
	}
	h.Size = int64(headerSize(&h))
	return h
}

func (s Spec) configs() []vma.Config {
	if s.Configs != nil {
		return slices.Clone(s.Configs)
	}
	c := []vma.Config{{Name: "qemu-server.conf", Data: s.defaultConf()}}
	if s.Firewall {
		c = append(c, vma.Config{Name: "qemu-server.fw", Data: []byte(defaultFirewall)})
	}
	return c
}

const defaultFirewall = `[OPTIONS]

enable: 1
policy_in: DROP

[RULES]

IN ACCEPT -p tcp -dport 22 -log nolog
IN ACCEPT -p icmp -log nolog
`

// defaultConf returns a qemu-server.conf as vzdump stores it (keys sorted,
// disks referencing local-lvm volumes). It is the same in every
// generation.
func (s Spec) defaultConf() []byte {
	gen0 := s
	gen0.Generation = 0
	mac := hash(s.Seed, saltMAC, 0, 0)
	lines := map[string]string{
		"agent":   "1",
		"boot":    "order=scsi0;net0",
		"cores":   "2",
		"cpu":     "x86-64-v2-AES",
		"machine": "q35",
		"memory":  "2048",
		"meta":    fmt.Sprintf("creation-qemu=9.0.2,ctime=%d", gen0.CTime()-int64(hash(s.Seed, saltTime, 1, 0)%(90*86400))),
		"name":    fmt.Sprintf("vm%d", 100+s.Seed%900),
		"net0": fmt.Sprintf("virtio=BC:24:11:%02X:%02X:%02X,bridge=vmbr0,firewall=1",
			byte(mac), byte(mac>>8), byte(mac>>16)),
		"numa":    "0",
		"ostype":  "l26",
		"scsihw":  "virtio-scsi-single",
		"smbios1": "uuid=" + vmUUID(s, 5).String(),
		"sockets": "1",
		"vmgenid": vmUUID(s, 3).String(),
	}
	vmid := 100 + s.Seed%900
	for i, d := range s.Disks {
		key, ok := strings.CutPrefix(d.Name, "drive-")
		if !ok {
			continue
		}
		key = strings.TrimSuffix(key, "-backup")
		opts := ""
		switch {
		case strings.HasPrefix(key, "efidisk"):
			opts = ",efitype=4m,pre-enrolled-keys=1"
		case strings.HasPrefix(key, "tpmstate"):
			opts = ",version=v2.0"
		case strings.HasPrefix(key, "scsi"), strings.HasPrefix(key, "virtio"):
			opts = ",iothread=1"
		}
		lines[key] = fmt.Sprintf("local-lvm:vm-%d-disk-%d%s,size=%s", vmid, i, opts, sizeString(d.Size))
	}
	var b strings.Builder
	for _, k := range slices.Sorted(mapsKeys(lines)) {
		fmt.Fprintf(&b, "%s: %s\n", k, lines[k])
	}
	return []byte(b.String())
}

func mapsKeys(m map[string]string) iter.Seq[string] {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// vmUUID returns a uuid of the VM (the same in every generation).
func vmUUID(s Spec, salt uint64) vma.UUID {
	var u vma.UUID
	binary.BigEndian.PutUint64(u[0:], hash(s.Seed, saltUUID|1<<24, salt, 0))
	binary.BigEndian.PutUint64(u[8:], hash(s.Seed, saltUUID|1<<24, salt, 1))
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return u
}

// sizeString formats a disk size as Proxmox does in configs.
func sizeString(n uint64) string {
	for _, u := range []struct {
		s string
		v uint64
	}{{"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}} {
		if n >= u.v && n%u.v == 0 {
			return fmt.Sprintf("%d%s", n/u.v, u.s)
		}
	}
	return fmt.Sprint(n)
}

// Validate reports whether Write can encode s.
func (s Spec) Validate() error {
	if s.ClustersPerExtent < 0 || s.ClustersPerExtent > vma.ExtentSlots {
		return fmt.Errorf("vmatest: ClustersPerExtent %d not in 0..%d", s.ClustersPerExtent, vma.ExtentSlots)
	}
	if len(s.Disks) > vma.MaxDeviceID {
		return fmt.Errorf("vmatest: %d disks, at most %d device ids exist", len(s.Disks), vma.MaxDeviceID)
	}
	for _, d := range s.Disks {
		if d.Size > vma.MaxDeviceSize {
			return fmt.Errorf("vmatest: disk %q: size %d beyond the %d cluster numbers", d.Name, d.Size, uint64(1)<<32)
		}
		if len(d.Name)+1 > vma.MaxBlobSize {
			return fmt.Errorf("vmatest: disk name of %d bytes too long", len(d.Name))
		}
	}
	for _, c := range s.configs() {
		if len(c.Name)+1 > vma.MaxBlobSize || len(c.Data) > vma.MaxBlobSize {
			return fmt.Errorf("vmatest: config %q too large", c.Name)
		}
	}
	if len(s.configs()) > vma.MaxConfigs {
		return errors.New("vmatest: too many configs")
	}
	return nil
}

// Write writes the archive described by s to w. Memory use is bounded by
// one extent (under 4 MiB) plus what StoredOrder holds.
func Write(w io.Writer, s Spec) error {
	if err := s.Validate(); err != nil {
		return err
	}
	h := s.Header()
	if _, err := w.Write(EncodeHeader(&h)); err != nil {
		return err
	}
	e := newExtentWriter(w, h.UUID, s.clustersPerExtent())
	buf := make([]byte, vma.ClusterSize)
	for disk, num := range s.StoredOrder() {
		b, zero := s.cluster(disk, num, buf)
		if zero {
			b = nil
		}
		if err := e.add(uint8(disk+1), uint32(num), b); err != nil {
			return err
		}
	}
	return e.close()
}

// Archive returns the archive described by s in memory (for small specs).
func Archive(s Spec) ([]byte, error) {
	// Room for the whole archive at once (what its disks store, extent
	// headers of 512 bytes per 59 clusters, and a MiB for the header and
	// configs), up to 512 MiB: growing the buffer by doubling cleared and
	// copied it again at every step, much of the CPU of the tests that
	// generate archives. (Grow clears what it allocates: no room for what
	// a sparse disk leaves out.)
	var total uint64 = 1 << 20
	for _, d := range s.Disks {
		total += d.Size/4096 + 64<<10
		switch d.Content {
		case Zero:
		case Sparse:
			total += d.Size / 1024
		default:
			total += d.Size
		}
	}
	var b bytes.Buffer
	b.Grow(int(min(total, 512<<20)))
	if err := Write(&b, s); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
