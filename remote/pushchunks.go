package remote

import (
	"github.com/klauspost/compress/zstd"
	"github.com/vmasync/vmasync/chunkplan"
	"github.com/vmasync/vmasync/remote/pack"
	"github.com/vmasync/vmasync/remote/tree"
)

// pushRun is the chunk stage of one push: it records every chunk in the
// manifest and sends the new ones to be compressed and packed.
type pushRun struct {
	r   *Repository
	res *PushResult
	m   *chunkplan.Manifest
	// pending holds the new chunks sent to be packed that the index does
	// not hold yet; it is trimmed to those whenever it has doubled.
	pending    map[ID]struct{}
	pendingMax int
	// New chunks are copied into batches that a pool of goroutines
	// compresses in parallel; packs are filled from the batches in
	// stream order, so a pack's content does not depend on scheduling.
	cp  *compressPool
	cur *blobBatch
	// tw builds the chunk tree (format 3), whose new nodes go into packs
	// of their own, leaves and inner nodes apart (meta[0], meta[1]), so
	// that the nodes a walk reads together lie next to each other and
	// are read with few requests.
	tw   *tree.Writer
	meta [2]pack.Builder
	enc  *zstd.Encoder
	zbuf []byte
}

func (p *pushRun) chunk(c chunkplan.ChunkRef, data []byte) error {
	p.m.ArchiveSize += uint64(c.Length)
	p.res.Chunks++
	if p.tw != nil {
		// The list goes into the tree as it grows, not into memory.
		if err := p.tw.Add(c); err != nil {
			return err
		}
	} else {
		p.m.Chunks = append(p.m.Chunks, c)
	}
	h := ID(c.Hash)
	isNew, resumed := p.isNew(h)
	if !isNew {
		p.res.SharedBytes += int64(c.Length)
		if resumed {
			p.res.ResumedBytes += int64(c.Length)
		}
		return nil
	}
	p.res.NewBytes += int64(c.Length)
	p.res.NewChunks++
	if p.cur != nil && len(p.cur.raw)+len(data) > batchBytes {
		p.cp.submit(p.cur)
		p.cur = nil
	}
	if p.cur == nil {
		var err error
		if p.cur, err = p.cp.get(); err != nil {
			return err
		}
	}
	p.cur.add(h, data)
	return nil
}

// isNew reports whether blob h is neither stored (in the index) nor
// already sent to be packed by this push, and records it as sent;
// resumed tells a blob stored by an interrupted push of this dump.
func (p *pushRun) isNew(h ID) (isNew, resumed bool) {
	if loc, ok := p.r.Lookup(h); ok {
		return false, p.r.recovered[loc.Pack]
	}
	n := len(p.pending)
	p.pending[h] = struct{}{} // one map probe: the length tells whether h was there
	if len(p.pending) == n {
		return false, false
	}
	if len(p.pending) >= p.pendingMax {
		p.pending = p.r.unindexed(p.pending)
		p.pendingMax = max(pendingTrim, 2*len(p.pending))
	}
	return true, false
}

// node stores a node of the chunk tree, unless it is stored already
// (shared with an earlier backup) or was sent by this push.
func (p *pushRun) node(level int, id tree.ID, node []byte) error {
	if isNew, _ := p.isNew(ID(id)); !isNew {
		return nil
	}
	mp := &p.meta[min(level, 1)]
	if !mp.HasBuffer() {
		// A night's new nodes take a few KiB to a few hundred: start
		// small, the builder grows the buffer up to the pack's size when
		// a first push needs it.
		mp.SetBuffer(make([]byte, 0, 64<<10))
	}
	// Node bytes are mostly hashes; the lengths and counts beside them
	// compress a little.
	var typ uint8
	p.zbuf, typ = appendBlob(p.enc, p.zbuf[:0], node)
	size := min(p.r.Config.PackSize, metaPackSize)
	mp.Grow(len(p.zbuf), size) // as the packs of chunks grow
	mp.Add(ID(id), len(node), typ, p.zbuf)
	p.res.TreeStored += int64(len(p.zbuf))
	p.res.TreeNodes++
	if mp.Len() >= size {
		return p.cp.up.send(mp, false)
	}
	return nil
}

// metaPackSize is the size at which a pack of tree nodes is closed: a
// quarter of the default pack size, as the two packs of nodes fill
// alongside the packs of chunks (a first push of 64 GiB writes about
// 300 MiB of nodes), and each costs the push's memory as much as it
// holds.
const metaPackSize = 4 << 20

// closeTree finishes the chunk tree and sends the last pack of its nodes.
func (p *pushRun) closeTree() (*tree.Ref, error) {
	root, err := p.tw.Close()
	if err != nil {
		return nil, err
	}
	for i := range p.meta {
		if p.meta[i].Len() > 0 {
			if err := p.cp.up.send(&p.meta[i], false); err != nil {
				return nil, err
			}
		}
	}
	return &root, nil
}

// pendingTrim is the smallest size at which push trims its set of
// pending chunks to those not yet indexed.
var pendingTrim = 1 << 16

// unindexed returns, as a new map (a Go map does not shrink when entries
// are deleted), the hashes of set that the index does not hold.
func (r *Repository) unindexed(set map[ID]struct{}) map[ID]struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[ID]struct{}, len(set)/4)
	for h := range set {
		if !r.index.Has(h) {
			out[h] = struct{}{}
		}
	}
	return out
}
