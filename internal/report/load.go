package report

import (
	"context"
	"crypto/sha256"
	"hash/maphash"
	"io"

	"github.com/vmasync/vmasync/chunkplan"
	"github.com/vmasync/vmasync/vma"
	"golang.org/x/sync/errgroup"
)

// Reading one side of the comparison: a manifest, or an archive streamed
// through the chunkers and the cluster hasher at once.

// load reads one input. For B (ref != nil) the floor is computed against
// ref's cluster hashes as the clusters arrive.
// Kept as one function: it wires one errgroup of goroutines over two fan-outs of the
// same stream, whose reader numbers tie its parts together.
func load(in Input, params [numColumns]chunkplan.Params, w wants, ref *scanned, opt Options, progressBase *int64) (*scanned, error) {
	s := &scanned{side: Side{Name: in.Name}}
	if ref != nil {
		s.orig, s.ropt, s.vms = ref.orig.forB(), ref.ropt.forB(), ref.vms.forB()
	} else {
		s.orig.cmp, s.ropt.cmp, s.vms.cmp = cmpU64, cmpU64, cmpU64
	}
	if m := in.Manifest; m != nil {
		s.side.Manifest = true
		s.side.OptimizedBytes = int64(m.ArchiveSize)
		for _, d := range m.Devices {
			s.side.Devices = append(s.side.Devices, Device{d.Name, d.Size})
		}
		s.side.CTime = m.BackupTime
		for _, c := range m.Chunks {
			k := maphash.Comparable(seed, c.Hash)
			if m.Params == params[Vmasync] {
				s.vms.add(k, int(c.Length))
			}
			if m.Params == params[ResticOptimized] {
				s.ropt.add(k, int(c.Length))
			}
		}
		s.finish()
		return s, nil
	}

	g, ctx := errgroup.WithContext(opt.Context)
	// The original bytes: restic chunker, parser, and the optimizer's
	// input unless it reads the file itself.
	nOrig := 0
	iOrigChunk, iOrigParse, iOptSrc := -1, -1, -1
	if w.cols[ResticOriginal] {
		iOrigChunk = nOrig
		nOrig++
	}
	if w.cols[ResticOriginal] {
		iOrigParse = nOrig
		nOrig++
	}
	if in.File == nil {
		iOptSrc = nOrig
		nOrig++
	}
	orig := newFanout(ctx, nOrig)
	// The optimized bytes: parser/cluster hasher, restic chunker, vmasync
	// chunker.
	nOpt := 1
	iOptChunk, iVmsChunk := -1, -1
	shared := w.cols[ResticOptimized] && w.cols[Vmasync] && params[ResticOptimized].Polynomial == params[Vmasync].Polynomial
	if w.cols[ResticOptimized] {
		iOptChunk = nOpt
		nOpt++
	}
	if w.cols[Vmasync] && !shared {
		iVmsChunk = nOpt
		nOpt++
	}
	optOut := newFanout(ctx, nOpt)

	var read counter
	optProgress := func(int64) {}
	if nOrig == 0 {
		// Only the optimizer reads the file: count its input instead.
		base := *progressBase
		optProgress = func(n int64) {
			s.side.ArchiveBytes = n
			if opt.Progress != nil {
				opt.Progress(base + n)
			}
		}
	} else {
		g.Go(func() error {
			defer orig.Close()
			r := io.Reader(&read)
			read.r = in.R
			read.base = *progressBase
			read.progress = opt.Progress
			n, err := orig.ReadFrom(r)
			s.side.ArchiveBytes = n
			return err
		})
	}
	g.Go(func() error {
		defer optOut.Close()
		var src io.Reader
		if in.File != nil {
			src = in.File
		} else {
			src = orig.reader(iOptSrc)
			defer orig.reader(iOptSrc).drain()
		}
		r, err := vma.Optimize(ctx, optOut, src, vma.OptimizeOptions{Window: opt.Window, TempDir: opt.TempDir, Progress: optProgress})
		if err != nil {
			return err
		}
		s.side.OptimizedBytes = r.OutputBytes
		if nOrig == 0 {
			s.side.ArchiveBytes = r.InputBytes
		}
		return nil
	})
	if iOrigChunk >= 0 {
		r := orig.reader(iOrigChunk)
		g.Go(func() error {
			defer r.drain()
			return chunkplan.SplitMulti(r, []chunkplan.Params{params[ResticOriginal]}, func(_ int, data []byte) error {
				s.orig.add(maphash.Bytes(seed, data), len(data))
				return nil
			})
		})
	}
	if iOrigParse >= 0 {
		r := orig.reader(iOrigParse)
		g.Go(func() error {
			defer r.drain()
			iv, _, err := parse(r, nil)
			s.origIv = iv
			return err
		})
	}
	// The optimized stream's chunkers share one rolling fingerprint when
	// their polynomials are equal (no --polynomial).
	// With a manifest in the game, chunks are known by SHA-256 (mapped to
	// 64 bits like the manifest's); otherwise maphash of the bytes does.
	key := func(data []byte) uint64 { return maphash.Bytes(seed, data) }
	if w.sha {
		key = func(data []byte) uint64 { return maphash.Comparable(seed, sha256.Sum256(data)) }
	}
	addOpt := func(_ int, data []byte) error {
		s.ropt.add(key(data), len(data))
		return nil
	}
	addVms := func(_ int, data []byte) error {
		s.vms.add(key(data), len(data))
		return nil
	}
	if shared {
		r := optOut.reader(iOptChunk)
		g.Go(func() error {
			defer r.drain()
			return chunkplan.SplitMulti(r, []chunkplan.Params{params[ResticOptimized], params[Vmasync]}, func(k int, data []byte) error {
				if k == 0 {
					return addOpt(k, data)
				}
				return addVms(k, data)
			})
		})
	} else {
		if iOptChunk >= 0 {
			r := optOut.reader(iOptChunk)
			g.Go(func() error {
				defer r.drain()
				return chunkplan.SplitMulti(r, []chunkplan.Params{params[ResticOptimized]}, addOpt)
			})
		}
		if iVmsChunk >= 0 {
			r := optOut.reader(iVmsChunk)
			g.Go(func() error {
				defer r.drain()
				return chunkplan.SplitMulti(r, []chunkplan.Params{params[Vmasync]}, addVms)
			})
		}
	}
	{
		r := optOut.reader(0)
		g.Go(func() error {
			defer r.drain()
			h := &hasher{ref: ref, record: ref == nil && w.floor, floor: w.floor}
			iv, hdr, err := parse(r, h)
			s.optIv = iv
			if hdr != nil {
				s.header = *hdr
			}
			s.clusters = h.tables
			s.floor = h.floors
			return err
		})
	}
	err := g.Wait()
	if err == nil && opt.Context.Err() != nil {
		err = context.Cause(opt.Context)
	}
	*progressBase += s.side.ArchiveBytes
	if err != nil {
		return nil, err
	}
	s.side.CTime = s.header.CTime
	s.finish()
	for _, d := range s.header.Devices {
		s.side.Devices = append(s.side.Devices, Device{d.Name, d.Size})
	}
	return s, nil
}

// finish prepares A's chunk keys for B's lookups (B's tallies need
// nothing).
func (s *scanned) finish() {
	for _, t := range []*tally[uint64]{&s.orig, &s.ropt, &s.vms} {
		if !t.isB {
			t.finish()
		}
	}
}
