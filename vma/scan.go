package vma

import (
	"io"
	"math/bits"
)

// DeviceStats describes one device of a scanned archive.
type DeviceStats struct {
	Device
	// Clusters is the number of clusters the device size needs.
	Clusters uint64
	// Present is the number of clusters found in the archive.
	Present uint64
	// StoredBytes is the data stored for the device (4 KiB blocks).
	StoredBytes uint64
	// ZeroBytes is the device data covered by present clusters but not
	// stored because it is zero (blocks inside the device only).
	ZeroBytes uint64
	// ZeroClusters is the number of present clusters stored as all zero
	// (mask 0).
	ZeroClusters uint64
	// FirstMissing is the lowest missing cluster, or -1 if none is missing.
	FirstMissing int64
}

// ZeroShare returns the fraction (0..1) of the device's present data that
// is zero blocks.
func (d DeviceStats) ZeroShare() float64 {
	t := d.StoredBytes + d.ZeroBytes
	if t == 0 {
		return 0
	}
	return float64(d.ZeroBytes) / float64(t)
}

// Info is the result of a full pass over an archive.
type Info struct {
	Header Header
	// ArchiveSize is the number of (uncompressed) archive bytes read.
	ArchiveSize int64
	// Extents is the number of extents.
	Extents int
	// MaxClustersPerExtent is the largest number of clusters in one extent.
	MaxClustersPerExtent int
	Devices              []DeviceStats
	// InOrder is true when clusters are stored in device order: every
	// cluster of the first device ascending, then the next device, ...
	InOrder bool
	// Optimized is true when the archive is InOrder and carries
	// OptimizedUUID, as Optimize writes it.
	Optimized bool
	// Complete is true when every cluster of every disk is present.
	Complete bool
}

// ScanOptions tunes Scan.
type ScanOptions struct {
	// AllowIncomplete accepts archives with missing clusters (reported in
	// Info) instead of failing, as Proxmox's `vma verify` does.
	AllowIncomplete bool
	// Header, if set, is called with the archive header as soon as it has
	// been read and checked, before any cluster (e.g. to print it while
	// the rest is still being read).
	Header func(h *Header)
	// Progress, if set, is called after each extent with the archive bytes
	// read so far.
	Progress func(offset int64)
}

// Scan reads a whole archive, making every check of Reader, and returns
// what it holds. It is the library side of `vmasync info` and `verify`.
func Scan(r io.Reader, opt ScanOptions) (*Info, error) {
	vr, err := NewReader(r)
	if err != nil {
		return nil, err
	}
	vr.AllowIncomplete()
	vr.DiscardData()
	info := &Info{Header: *vr.Header()}
	if opt.Header != nil {
		opt.Header(&info.Header)
	}
	var order orderCheck
	stats := make(map[int]*DeviceStats)
	for i := range info.Header.Devices {
		d := info.Header.Devices[i]
		info.Devices = append(info.Devices, DeviceStats{Device: d, Clusters: d.Clusters(), FirstMissing: -1})
	}
	for i := range info.Devices {
		stats[info.Devices[i].ID] = &info.Devices[i]
	}
	ext, inExt := -1, 0
	for {
		c, err := vr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if c.Extent != ext {
			if opt.Progress != nil && ext >= 0 {
				opt.Progress(vr.Offset())
			}
			ext, inExt = c.Extent, 0
		}
		inExt++
		info.MaxClustersPerExtent = max(info.MaxClustersPerExtent, inExt)
		order.see(c.DevID, c.Num)
		s := stats[c.DevID]
		s.Present++
		if c.Mask == 0 {
			s.ZeroClusters++
		}
		n := uint64(bits.OnesCount16(c.Mask)) * BlockSize
		s.StoredBytes += n
		inDev := min(s.Size-min(s.Size, uint64(c.Num)*ClusterSize), ClusterSize)
		s.ZeroBytes += inDev - min(inDev, n)
	}
	if opt.Progress != nil {
		opt.Progress(vr.Offset())
	}
	info.ArchiveSize = vr.Offset()
	info.Extents = vr.Extents()
	info.Complete = true
	for id, c := range vr.Missing() {
		stats[id].FirstMissing = c
		info.Complete = false
	}
	info.InOrder = order.inOrder()
	info.Optimized = info.InOrder && info.Header.UUID == OptimizedUUID
	if !info.Complete && !opt.AllowIncomplete {
		return info, vr.CompletenessError()
	}
	return info, nil
}
