package remote

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"

	"github.com/vmasync/vmasync/chunkplan"
	"github.com/vmasync/vmasync/remote/backend"
	"github.com/vmasync/vmasync/remote/index"
	"github.com/vmasync/vmasync/remote/pack"
	"github.com/vmasync/vmasync/remote/tree"
)

// CheckOptions tune Check.
type CheckOptions struct {
	// ReadData downloads packs and checks every chunk in them against its
	// hash; ReadDataPercent (1-100, 0 = 100) picks that share of the packs
	// at random.
	ReadData        bool
	ReadDataPercent int
	// Progress, if set, is called after every pack read.
	Progress func(done, total int)
}

// Problem is one inconsistency found by Check.
type Problem struct {
	// Backup names the affected backup ("" for repository-wide problems).
	Backup string
	// Chunk is the affected chunk ("" if none) and Pack the pack.
	Chunk, Pack string
	Msg         string
}

func (p Problem) String() string {
	s := ""
	if p.Backup != "" {
		s = "backup " + p.Backup + ": "
	}
	if p.Chunk != "" {
		s += "chunk " + p.Chunk + ": "
	}
	return s + p.Msg
}

// CheckResult summarises Check.
type CheckResult struct {
	Backups, Packs, Chunks int
	PacksRead              int
	BytesRead              int64
	Problems               []Problem
}

// Check verifies that every chunk referenced by a manifest is indexed and
// stored in a pack that exists, and with ReadData that the chunks in the
// packs read match their hashes. Problems name the backups they affect,
// one per backup and missing or damaged pack (not one per chunk). Damaged
// index objects, packs and manifests are reported, never fatal. It reads
// the index itself (without writing any).
func (r *Repository) Check(ctx context.Context, opt CheckOptions) (*CheckResult, error) {
	res := &CheckResult{}
	if _, err := r.LoadIndex(ctx, false); err != nil {
		return nil, err
	}
	for _, d := range r.Damage() {
		res.Problems = append(res.Problems, Problem{Pack: d.Object, Msg: d.String()})
	}
	backups, err := r.Backups(ctx)
	if err != nil {
		return nil, err
	}
	res.Backups = len(backups)
	res.Packs = len(r.packs)
	res.Chunks = r.index.Len()
	verified := index.NewMarks(r.index.Positions())
	for _, b := range backups {
		if err := r.checkBackup(ctx, b, res, verified); err != nil {
			return nil, err
		}
	}
	if err := r.index.Err(); err != nil {
		// Chunks it reported missing may be stored: say that instead.
		return nil, fmt.Errorf("the local index cache failed while check read it (it is rebuilt on the next run; run check again): %w", err)
	}
	if !opt.ReadData {
		return res, nil
	}
	damaged, err := r.readData(ctx, opt, res)
	if err != nil {
		return nil, err
	}
	if len(damaged) > 0 {
		if err := r.attribute(ctx, backups, damaged, res); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// checkBackup checks that the index holds every chunk of a backup, with
// the length its manifest says, within its pack's listed size; reading a
// chunk tree (format 3) checks every node of it. The nodes of a backup
// found whole are marked in verified, and later backups do not read
// again what lies below them (one VM's backups share most of their
// trees), so check reads each distinct node once.
func (r *Repository) checkBackup(ctx context.Context, b Backup, res *CheckResult, verified index.Marks) error {
	missing, total := 0, 0
	var firstMissing int64 = -1
	short := map[ID]int{}
	var off int64
	problems := len(res.Problems)
	var walked []int // index positions of this backup's nodes
	s, err := r.readManifest(ctx, b)
	if err == nil {
		err = r.eachChunk(ctx, b, s, tree.Visitor{Node: func(t tree.Ref) bool {
			i, ok := r.index.Pos(ID(t.ID))
			if ok && verified.Has(i) {
				return false
			}
			if ok {
				walked = append(walked, i)
			}
			return true
		}, Skipped: func(t tree.Ref) error {
			total += int(t.Chunks)
			off += int64(t.Bytes)
			return nil
		}, Chunk: func(c chunkplan.ChunkRef) error {
			h := ID(c.Hash)
			total++
			loc, ok := r.index.Get(h)
			switch {
			case !ok:
				missing++
				if firstMissing < 0 {
					firstMissing = off
				}
			case loc.Raw != c.Length:
				res.Problems = append(res.Problems, Problem{Backup: b.Name, Chunk: h.String(), Msg: fmt.Sprintf("indexed with %d bytes, manifest says %d", loc.Raw, c.Length)})
			case int64(loc.Offset)+int64(loc.Stored) > r.packs[loc.Pack]:
				short[loc.Pack]++
			}
			off += int64(c.Length)
			return nil
		}})
	}
	if errors.Is(err, ErrCorruptObject) {
		res.Problems = append(res.Problems, Problem{Backup: b.Name, Msg: err.Error()})
		return nil
	}
	if err != nil {
		return err
	}
	if missing == 0 && len(short) == 0 && len(res.Problems) == problems {
		for _, i := range walked {
			verified.Set(i)
		}
	}
	if missing > 0 {
		res.Problems = append(res.Problems, Problem{Backup: b.Name, Msg: fmt.Sprintf("%d of %d chunks are in no index (data missing; the first at byte offset %d); push its dump again or see 'vmasync repair'", missing, total, firstMissing)})
	}
	for id, n := range short {
		res.Problems = append(res.Problems, Problem{Backup: b.Name, Pack: id.String(), Msg: fmt.Sprintf("%d chunks lie beyond the end of pack %s (%d bytes)", n, id.Short(), r.packs[id])})
	}
	return nil
}

// packDamage is what reading one pack found: the chunks that cannot be
// read, and the first reason.
type packDamage struct {
	bad      []ID
	firstErr string
}

// readData downloads the packs (all or a share) and checks every chunk;
// it returns the damaged packs, to be attributed to the backups that
// need them (attribute). It holds one pack at a time: nothing in
// proportion to the repository but the index.
func (r *Repository) readData(ctx context.Context, opt CheckOptions, res *CheckResult) (map[ID]*packDamage, error) {
	packs := make([]ID, 0, len(r.packs))
	for id := range r.packs {
		packs = append(packs, id)
	}
	sort.Slice(packs, func(i, j int) bool { return index.Compare(&packs[i], &packs[j]) < 0 })
	if p := opt.ReadDataPercent; p > 0 && p < 100 {
		rand.Shuffle(len(packs), func(i, j int) { packs[i], packs[j] = packs[j], packs[i] })
		n := (len(packs)*p + 99) / 100
		packs = packs[:n]
	}
	limit := 2*int64(r.Config.PackSize) + packSlack
	damaged := map[ID]*packDamage{}
	for i, id := range packs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		data, err := backend.LoadAll(ctx, r.B, packName(id), limit)
		if errors.Is(err, backend.ErrTransient) || errors.Is(err, context.Canceled) {
			return nil, err
		}
		res.PacksRead++
		res.BytesRead += int64(len(data))
		if opt.Progress != nil {
			opt.Progress(i+1, len(packs))
		}
		d, headerProblem := r.checkPack(id, data, err)
		if headerProblem != nil {
			res.Problems = append(res.Problems, *headerProblem)
		}
		if d != nil {
			damaged[id] = d
		}
	}
	return damaged, nil
}

// indexedIn lists the chunks the index places in pack id (a scan of the
// index: only for a pack whose own header cannot be trusted).
func (r *Repository) indexedIn(id ID) []ID {
	var hs []ID
	_ = r.index.EachPos(func(_ int, h ID, loc Location) { // a failure shows in Err, which Check reports
		if loc.Pack == id {
			hs = append(hs, h)
		}
	})
	return hs
}

// checkPack checks one downloaded pack (or the error reading it): every
// chunk against its hash, the header against the pack's name. It returns
// the damaged chunks (nil if none) and, for a damaged header, a problem
// naming the pack.
func (r *Repository) checkPack(id ID, data []byte, err error) (*packDamage, *Problem) {
	d := &packDamage{}
	bad := func(h ID, msg string) {
		if d.firstErr == "" {
			d.firstErr = msg
		}
		d.bad = append(d.bad, h)
	}
	var header *Problem
	var raw []byte
	if err != nil {
		for _, h := range r.indexedIn(id) {
			bad(h, fmt.Sprintf("unreadable: %v", err))
		}
	} else if entries, perr := pack.Parse(data, id, r.Config.Version); perr != nil {
		// The pack is damaged: say which chunks are affected, checking
		// each indexed chunk on its own.
		for _, h := range r.indexedIn(id) {
			loc, _ := r.index.Get(h)
			end := int64(loc.Offset) + int64(loc.Stored)
			if end > int64(len(data)) {
				bad(h, "chunks beyond its end")
				continue
			}
			if _, err := pack.DecodeBlob(data[loc.Offset:end], loc, h, raw); err != nil {
				bad(h, "content does not match its hash")
			}
		}
		// The pack itself too: even when every chunk reads, prune
		// cannot repack it and a push cannot recover it unindexed.
		header = &Problem{Pack: id.String(), Msg: perr.Error()}
	} else {
		for _, e := range entries {
			loc := Location{Pack: id, Offset: e.Offset, Stored: e.Stored, Raw: e.Raw, Type: e.Type}
			if raw, err = pack.DecodeBlob(data[e.Offset:e.Offset+e.Stored], loc, e.Hash, raw); err != nil {
				bad(e.Hash, "content does not match its hash")
			}
		}
	}
	if len(d.bad) == 0 {
		return nil, header
	}
	return d, header
}

// attribute reports the damaged chunks as one problem per damaged pack
// and backup that uses any of them (and one for those no backup uses),
// reading the manifests a second time instead of holding, for every
// chunk, the backups that use it.
func (r *Repository) attribute(ctx context.Context, backups []Backup, damaged map[ID]*packDamage, res *CheckResult) error {
	inPack := map[ID]ID{} // damaged chunk -> its pack
	for id, d := range damaged {
		for _, h := range d.bad {
			inPack[h] = id
		}
	}
	counts := map[ID]map[string]int{} // pack -> backup -> damaged chunks it uses
	used := map[ID]bool{}
	for _, b := range backups {
		seen := map[ID]bool{}
		count := func(h ID) {
			p, ok := inPack[h]
			if !ok || seen[h] {
				return
			}
			seen[h], used[h] = true, true
			if counts[p] == nil {
				counts[p] = map[string]int{}
			}
			counts[p][b.Name]++
		}
		s, err := r.readManifest(ctx, b)
		if err == nil {
			err = r.eachChunk(ctx, b, s, tree.Visitor{
				Node:  func(t tree.Ref) bool { count(ID(t.ID)); return true },
				Chunk: func(c chunkplan.ChunkRef) error { count(ID(c.Hash)); return nil },
			})
		}
		if errors.Is(err, ErrCorruptObject) {
			continue // reported already; a damaged tree node was counted
		}
		if err != nil {
			return err
		}
	}
	for h, p := range inPack {
		if !used[h] {
			if counts[p] == nil {
				counts[p] = map[string]int{}
			}
			counts[p][""]++
		}
	}
	ids := make([]ID, 0, len(counts))
	for id := range counts {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return index.Compare(&ids[i], &ids[j]) < 0 })
	for _, id := range ids {
		names := make([]string, 0, len(counts[id]))
		for b := range counts[id] {
			names = append(names, b)
		}
		sort.Strings(names)
		for _, b := range names {
			msg := fmt.Sprintf("pack %s: %d chunks damaged (%s)", id.Short(), counts[id][b], damaged[id].firstErr)
			if b == "" {
				msg += "; no backup uses them"
			}
			res.Problems = append(res.Problems, Problem{Backup: b, Pack: id.String(), Msg: msg})
		}
	}
	return nil
}
