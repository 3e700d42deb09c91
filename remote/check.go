package remote

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"

	"github.com/vmasync/vmasync/chunkplan"
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
// packs read match their hashes. Problems name the backups they affect.
// It reads the index itself (without writing any).
func (r *Repository) Check(ctx context.Context, opt CheckOptions) (*CheckResult, error) {
	res := &CheckResult{}
	if _, err := r.LoadIndex(ctx, false); err != nil {
		return nil, err
	}
	backups, err := r.Backups(ctx)
	if err != nil {
		return nil, err
	}
	res.Backups = len(backups)
	res.Packs = len(r.packs)
	res.Chunks = r.index.len()
	users := map[ID][]string{} // chunk -> backups referencing it
	for _, b := range backups {
		m, err := r.Manifest(ctx, b)
		if err != nil {
			res.Problems = append(res.Problems, Problem{Backup: b.Name, Msg: err.Error()})
			continue
		}
		for i, c := range m.Chunks {
			h := ID(c.Hash)
			u := users[h]
			if len(u) == 0 || u[len(u)-1] != b.Name {
				users[h] = append(u, b.Name)
			}
			loc, ok := r.index.get(h)
			switch {
			case !ok:
				res.Problems = append(res.Problems, Problem{Backup: b.Name, Chunk: h.String(), Msg: fmt.Sprintf("chunk %d at byte offset %d is in no index (data missing)", i, chunkOffset(m.Chunks[:i]))})
			case loc.Raw != c.Length:
				res.Problems = append(res.Problems, Problem{Backup: b.Name, Chunk: h.String(), Msg: fmt.Sprintf("indexed with %d bytes, manifest says %d", loc.Raw, c.Length)})
			case int64(loc.Offset)+int64(loc.Stored) > r.packs[loc.Pack]:
				res.Problems = append(res.Problems, Problem{Backup: b.Name, Chunk: h.String(), Pack: loc.Pack.String(), Msg: fmt.Sprintf("pack %s is shorter (%d bytes) than the index says", loc.Pack.Short(), r.packs[loc.Pack])})
			}
		}
	}
	if !opt.ReadData {
		return res, nil
	}
	packs := make([]ID, 0, len(r.packs))
	for id := range r.packs {
		packs = append(packs, id)
	}
	sort.Slice(packs, func(i, j int) bool { return packs[i].String() < packs[j].String() })
	if p := opt.ReadDataPercent; p > 0 && p < 100 {
		rand.Shuffle(len(packs), func(i, j int) { packs[i], packs[j] = packs[j], packs[i] })
		n := (len(packs)*p + 99) / 100
		packs = packs[:n]
	}
	// Which chunks the index places in each pack.
	inPack := map[ID][]ID{}
	r.index.each(func(h ID, loc Location) {
		inPack[loc.Pack] = append(inPack[loc.Pack], h)
	})
	var raw []byte
	for i, id := range packs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		data, err := getObject(ctx, r.Fs, packName(id))
		res.PacksRead++
		res.BytesRead += int64(len(data))
		if opt.Progress != nil {
			opt.Progress(i+1, len(packs))
		}
		bad := func(h ID, msg string) {
			affected := users[h]
			if len(affected) == 0 {
				res.Problems = append(res.Problems, Problem{Chunk: h.String(), Pack: id.String(), Msg: msg + " (no backup uses it)"})
			}
			for _, b := range affected {
				res.Problems = append(res.Problems, Problem{Backup: b, Chunk: h.String(), Pack: id.String(), Msg: msg})
			}
		}
		if err != nil {
			for _, h := range inPack[id] {
				bad(h, fmt.Sprintf("pack %s unreadable: %v", id.Short(), err))
			}
			continue
		}
		entries, perr := parsePack(data, id, r.Config.Version)
		if perr != nil {
			// The pack is damaged: say which chunks are affected, checking
			// each indexed chunk on its own.
			for _, h := range inPack[id] {
				loc, _ := r.index.get(h)
				end := int64(loc.Offset) + int64(loc.Stored)
				if end > int64(len(data)) {
					bad(h, fmt.Sprintf("beyond the end of pack %s", id.Short()))
					continue
				}
				if _, err := decodeBlob(data[loc.Offset:end], loc, h, raw); err != nil {
					bad(h, fmt.Sprintf("in pack %s at offset %d: content does not match its hash", id.Short(), loc.Offset))
				}
			}
			// The pack itself too: even when every chunk reads, prune
			// cannot repack it and a push cannot recover it unindexed.
			res.Problems = append(res.Problems, Problem{Pack: id.String(), Msg: perr.Error()})
			continue
		}
		for _, e := range entries {
			loc := Location{Pack: id, Offset: e.Offset, Stored: e.Stored, Raw: e.Raw, Type: e.Type}
			if raw, err = decodeBlob(data[e.Offset:e.Offset+e.Stored], loc, e.Hash, raw); err != nil {
				bad(e.Hash, err.Error())
			}
		}
	}
	return res, nil
}

func chunkOffset(chunks []chunkplan.ChunkRef) int64 {
	var n int64
	for _, c := range chunks {
		n += int64(c.Length)
	}
	return n
}
