package report

import (
	"context"
	"errors"
	"hash/maphash"
	"io"

	"github.com/vmasync/vmasync/chunkplan"
	"github.com/vmasync/vmasync/vma"
)

// Counting, hashing clusters, parsing archives, and BuildManifest.

// counter counts and reports the bytes read.
type counter struct {
	r        io.Reader
	n, base  int64
	last     int64
	progress func(int64)
}

func (c *counter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.progress != nil && (c.n-c.last >= 4<<20 || err != nil) {
		c.last = c.n
		c.progress(c.base + c.n)
	}
	return n, err
}

// hasher hashes the clusters of an optimized stream: it records them
// (A) or compares them with ref's (B).
type hasher struct {
	ref    *scanned
	record bool
	floor  bool
	tables map[string]*clusterTable
	floors []Floor
	cur    *clusterTable // this device's table (record) or ref's (compare)
	devIdx int
	devs   []vma.Device
}

func (h *hasher) start(hdr *vma.Header) {
	h.devs = hdr.Devices
	if h.record {
		h.tables = make(map[string]*clusterTable)
		for _, d := range hdr.Devices {
			h.tables[d.Name] = &clusterTable{size: d.Size, pages: make(map[uint32]*[512]uint64)}
		}
	}
	if h.ref != nil && h.floor {
		h.floors = make([]Floor, len(hdr.Devices))
		for i, d := range hdr.Devices {
			h.floors[i].Clusters = (d.Size + vma.ClusterSize - 1) / vma.ClusterSize
		}
	}
	h.devIdx = -1
}

func (h *hasher) cluster(dev int, c *vma.Cluster) {
	if !h.floor {
		return
	}
	if dev != h.devIdx {
		h.devIdx = dev
		name := h.devs[dev].Name
		if h.record {
			h.cur = h.tables[name]
		} else {
			h.cur = h.ref.clusters[name]
		}
	}
	var v uint64
	if c.Mask != 0 {
		var mh maphash.Hash
		mh.SetSeed(seed)
		mh.WriteByte(byte(c.Mask))
		mh.WriteByte(byte(c.Mask >> 8))
		mh.Write(c.Data)
		v = mh.Sum64() | 1
	}
	if h.record {
		if v != 0 {
			h.cur.set(c.Num, v)
		}
		return
	}
	size := h.devs[dev].Size
	changed := h.cur == nil || uint64(c.Num)*vma.ClusterSize >= h.cur.size || h.cur.get(c.Num) != v
	if changed {
		f := &h.floors[dev]
		f.ChangedClusters++
		f.ChangedBytes += min(vma.ClusterSize, size-uint64(c.Num)*vma.ClusterSize)
	}
}

// parse reads an archive stream and returns where each device's bytes
// start; h (optional) sees every cluster.
func parse(r io.Reader, h *hasher) ([]interval, *vma.Header, error) {
	vr, err := vma.NewReader(r)
	if err != nil {
		return nil, nil, err
	}
	if h == nil || !h.floor {
		vr.DiscardData()
	}
	hdr := vr.Header()
	idx := make(map[int]int, len(hdr.Devices))
	for i, d := range hdr.Devices {
		idx[d.ID] = i
	}
	if h != nil {
		h.start(hdr)
	}
	iv := []interval{{0, -1}}
	lastExt := -1
	for {
		c, err := vr.Next()
		if err == io.EOF {
			return iv, hdr, nil
		}
		if err != nil {
			return iv, hdr, err
		}
		dev := idx[c.DevID]
		start := c.Offset
		if c.Extent != lastExt {
			lastExt = c.Extent
			start -= vma.ExtentHeaderSize
		}
		if iv[len(iv)-1].dev != dev {
			iv = append(iv, interval{start, dev})
		}
		if h != nil {
			h.cluster(dev, c)
		}
	}
}

// BuildManifest optimizes the archive in (as a stream, or with positioned
// reads of in.File) and returns the manifest of the optimized bytes with
// parameters p, its devices and backup time filled in from the header.
func BuildManifest(in Input, p chunkplan.Params, opt Options) (*chunkplan.Manifest, error) {
	if opt.Context == nil {
		opt.Context = context.Background()
	}
	var src io.Reader = &counter{r: in.R, progress: opt.Progress}
	optProgress := func(int64) {}
	if in.File != nil {
		src = in.File
		if opt.Progress != nil {
			optProgress = opt.Progress
		}
	}
	pr, pw := io.Pipe()
	var res *vma.OptimizeResult
	done := make(chan error, 1)
	go func() {
		var err error
		res, err = vma.Optimize(opt.Context, pw, src, vma.OptimizeOptions{Window: opt.Window, TempDir: opt.TempDir, Progress: optProgress})
		pw.CloseWithError(err)
		done <- err
	}()
	m, err := chunkplan.Build(pr, p)
	pr.CloseWithError(errors.New("manifest: stopped reading"))
	if oerr := <-done; oerr != nil {
		return nil, oerr
	}
	if err != nil {
		return nil, err
	}
	m.Source = in.Name
	m.BackupTime = res.Header.CTime
	for _, d := range res.Header.Devices {
		m.Devices = append(m.Devices, chunkplan.Device{Name: d.Name, Size: d.Size})
	}
	return m, nil
}
