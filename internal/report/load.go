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
func load(in Input, params [numColumns]chunkplan.Params, w wants, ref *scanned, opt Options, progressBase *int64) (*scanned, error) {
	s := &scanned{side: Side{Name: in.Name}}
	if ref != nil {
		s.orig, s.ropt, s.vms = ref.orig.forB(), ref.ropt.forB(), ref.vms.forB()
	} else {
		s.orig.cmp, s.ropt.cmp, s.vms.cmp = cmpU64, cmpU64, cmpU64
	}
	if in.Manifest != nil {
		s.loadManifest(in.Manifest, params)
		return s, nil
	}
	g, ctx := errgroup.WithContext(opt.Context)
	l := layoutFor(in, params, w)
	sc := &archiveScan{s: s, g: g, ctx: ctx, in: in, params: params, w: w, ref: ref, opt: opt, l: l,
		orig: newFanout(ctx, l.nOrig), optOut: newFanout(ctx, l.nOpt)}
	sc.readOriginal(*progressBase)
	sc.chunkOriginal()
	sc.parseOriginal()
	sc.chunkOptimized()
	sc.hashClusters()
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

// loadManifest tallies a manifest's chunks in the optimized columns made
// with its parameters.
func (s *scanned) loadManifest(m *chunkplan.Manifest, params [numColumns]chunkplan.Params) {
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
}

// streamLayout numbers the readers of an archive scan's two fan-outs
// (-1: not read). The original bytes go to the restic chunker, the parser
// and the optimizer's input unless it reads the file itself; the
// optimized bytes to the parser and cluster hasher (reader 0), the restic
// chunker and the vmasync chunker, or one chunker for both when they
// share a polynomial.
type streamLayout struct {
	nOrig, iOrigChunk, iOrigParse, iOptSrc int
	nOpt, iOptChunk, iVmsChunk             int
	shared                                 bool
}

func layoutFor(in Input, params [numColumns]chunkplan.Params, w wants) streamLayout {
	l := streamLayout{iOrigChunk: -1, iOrigParse: -1, iOptSrc: -1, nOpt: 1, iOptChunk: -1, iVmsChunk: -1}
	if w.cols[ResticOriginal] {
		l.iOrigChunk = l.nOrig
		l.nOrig++
	}
	if w.cols[ResticOriginal] {
		l.iOrigParse = l.nOrig
		l.nOrig++
	}
	if in.File == nil {
		l.iOptSrc = l.nOrig
		l.nOrig++
	}
	l.shared = w.cols[ResticOptimized] && w.cols[Vmasync] && params[ResticOptimized].Polynomial == params[Vmasync].Polynomial
	if w.cols[ResticOptimized] {
		l.iOptChunk = l.nOpt
		l.nOpt++
	}
	if w.cols[Vmasync] && !l.shared {
		l.iVmsChunk = l.nOpt
		l.nOpt++
	}
	return l
}

// archiveScan streams one archive through the readers of its layout, one
// goroutine of g each, into s.
type archiveScan struct {
	s      *scanned
	g      *errgroup.Group
	ctx    context.Context
	in     Input
	params [numColumns]chunkplan.Params
	w      wants
	ref    *scanned
	opt    Options
	l      streamLayout
	// orig fans out the original bytes, optOut the optimized ones.
	orig, optOut *fanout
}

// readOriginal starts the reading of the original bytes into orig,
// counted for progress, and the optimizer. When only the optimizer reads
// the file, its input is counted instead.
func (sc *archiveScan) readOriginal(progressBase int64) {
	s, opt := sc.s, sc.opt
	var read counter
	optProgress := func(int64) {}
	if sc.l.nOrig == 0 {
		// Only the optimizer reads the file: count its input instead.
		base := progressBase
		optProgress = func(n int64) {
			s.side.ArchiveBytes = n
			if opt.Progress != nil {
				opt.Progress(base + n)
			}
		}
	} else {
		sc.g.Go(func() error {
			defer sc.orig.Close()
			r := io.Reader(&read)
			read.r = sc.in.R
			read.base = progressBase
			read.progress = opt.Progress
			n, err := sc.orig.ReadFrom(r)
			s.side.ArchiveBytes = n
			return err
		})
	}
	sc.g.Go(func() error {
		defer sc.optOut.Close()
		var src io.Reader
		if sc.in.File != nil {
			src = sc.in.File
		} else {
			src = sc.orig.reader(sc.l.iOptSrc)
			defer sc.orig.reader(sc.l.iOptSrc).drain()
		}
		r, err := vma.Optimize(sc.ctx, sc.optOut, src, vma.OptimizeOptions{Window: opt.Window, TempDir: opt.TempDir, Progress: optProgress})
		if err != nil {
			return err
		}
		s.side.OptimizedBytes = r.OutputBytes
		if sc.l.nOrig == 0 {
			s.side.ArchiveBytes = r.InputBytes
		}
		return nil
	})
}

// chunkOriginal starts the restic chunker on the original bytes.
func (sc *archiveScan) chunkOriginal() {
	if sc.l.iOrigChunk < 0 {
		return
	}
	r := sc.orig.reader(sc.l.iOrigChunk)
	sc.g.Go(func() error {
		defer r.drain()
		return chunkplan.SplitMulti(r, []chunkplan.Params{sc.params[ResticOriginal]}, func(_ int, data []byte) error {
			sc.s.orig.add(maphash.Bytes(seed, data), len(data))
			return nil
		})
	})
}

// parseOriginal starts the parser that finds the devices' bytes in the
// original stream.
func (sc *archiveScan) parseOriginal() {
	if sc.l.iOrigParse < 0 {
		return
	}
	r := sc.orig.reader(sc.l.iOrigParse)
	sc.g.Go(func() error {
		defer r.drain()
		iv, _, err := parse(r, nil)
		sc.s.origIv = iv
		return err
	})
}

// chunkOptimized starts the chunkers of the optimized stream, which share
// one rolling fingerprint when their polynomials are equal (no
// --polynomial).
func (sc *archiveScan) chunkOptimized() {
	s, params := sc.s, sc.params
	// With a manifest in the game, chunks are known by SHA-256 (mapped to
	// 64 bits like the manifest's); otherwise maphash of the bytes does.
	key := func(data []byte) uint64 { return maphash.Bytes(seed, data) }
	if sc.w.sha {
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
	if sc.l.shared {
		r := sc.optOut.reader(sc.l.iOptChunk)
		sc.g.Go(func() error {
			defer r.drain()
			return chunkplan.SplitMulti(r, []chunkplan.Params{params[ResticOptimized], params[Vmasync]}, func(k int, data []byte) error {
				if k == 0 {
					return addOpt(k, data)
				}
				return addVms(k, data)
			})
		})
		return
	}
	if sc.l.iOptChunk >= 0 {
		r := sc.optOut.reader(sc.l.iOptChunk)
		sc.g.Go(func() error {
			defer r.drain()
			return chunkplan.SplitMulti(r, []chunkplan.Params{params[ResticOptimized]}, addOpt)
		})
	}
	if sc.l.iVmsChunk >= 0 {
		r := sc.optOut.reader(sc.l.iVmsChunk)
		sc.g.Go(func() error {
			defer r.drain()
			return chunkplan.SplitMulti(r, []chunkplan.Params{params[Vmasync]}, addVms)
		})
	}
}

// hashClusters starts the parser of the optimized stream (reader 0),
// which reads its header and hashes its clusters for the floor.
func (sc *archiveScan) hashClusters() {
	r := sc.optOut.reader(0)
	sc.g.Go(func() error {
		defer r.drain()
		h := &hasher{ref: sc.ref, record: sc.ref == nil && sc.w.floor, floor: sc.w.floor}
		iv, hdr, err := parse(r, h)
		sc.s.optIv = iv
		if hdr != nil {
			sc.s.header = *hdr
		}
		sc.s.clusters = h.tables
		sc.s.floor = h.floors
		return err
	})
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
