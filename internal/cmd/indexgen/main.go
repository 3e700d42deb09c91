// Command indexgen writes index objects of random chunks into a local
// repository directory, to measure what the index costs at a size no test
// pushes (issue 15: 50 million chunks, about 400 GiB of 8 KiB chunks).
//
//	vmasync init /var/tmp/repo
//	indexgen -dir /var/tmp/repo -chunks 50M
//
// It writes index/<sha256>.index objects of index.MaxEntries entries
// (index.Encode, as pushes write them) and, since LoadIndex drops the
// entries of packs that are not listed, every pack they name as a sparse
// file of the right size (packs/<hh>/<id>.pack, no data: nothing reads a
// pack that an index object covers unless check --read-data or a pull
// asks for its chunks). Chunks average 8 KiB raw, 4 KiB stored; a pack
// holds -per-pack chunks; -dup of them are stored again in a later pack
// (as concurrent pushes do). The same seed writes the same repository.
// With -hashes FILE it also writes every 1000th chunk hash (32 bytes
// each) for lookups that hit.
package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/vmasync/vmasync/remote/index"
	"github.com/vmasync/vmasync/remote/pack"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "indexgen:", err)
		os.Exit(1)
	}
}

// parseCount reads 50M, 1.5M, 200K or a plain number.
func parseCount(s string) (int, error) {
	mult := 1.0
	switch {
	case strings.HasSuffix(s, "M"):
		mult, s = 1e6, strings.TrimSuffix(s, "M")
	case strings.HasSuffix(s, "K"):
		mult, s = 1e3, strings.TrimSuffix(s, "K")
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 {
		return 0, fmt.Errorf("bad count %q", s)
	}
	return int(f * mult), nil
}

func run() error {
	dir := flag.String("dir", "", "repository directory (made by vmasync init)")
	chunks := flag.String("chunks", "1M", "chunks to index (K, M suffixes)")
	perPack := flag.Int("per-pack", 2000, "chunks per pack")
	dup := flag.Float64("dup", 0.001, "share of chunks stored a second time in another pack")
	seed := flag.Uint64("seed", 1, "random seed")
	hashes := flag.String("hashes", "", "file to write every 1000th chunk hash to")
	flag.Parse()
	n, err := parseCount(*chunks)
	if err != nil {
		return err
	}
	if *dir == "" || *perPack < 1 {
		return fmt.Errorf("usage: indexgen -dir REPO -chunks N")
	}
	if _, err := os.Stat(filepath.Join(*dir, "config")); err != nil {
		return fmt.Errorf("%s is not a repository (run vmasync init first): %w", *dir, err)
	}
	src := rand.NewChaCha8(seedBytes(*seed))
	g := &generator{dir: *dir, perPack: *perPack, dup: *dup, src: src, rng: rand.New(src)}
	if *hashes != "" {
		f, err := os.Create(*hashes)
		if err != nil {
			return err
		}
		defer f.Close()
		g.hw = bufio.NewWriter(f)
		defer g.hw.Flush()
	}
	for i := range n {
		if err := g.chunk(i); err != nil {
			return err
		}
	}
	if err := g.closePack(); err != nil {
		return err
	}
	if err := g.flush(); err != nil {
		return err
	}
	fmt.Printf("%d chunks in %d index objects, %d packs\n", n, g.objects, g.packs)
	return nil
}

// generator writes the index objects of random chunks and the packs they
// name.
type generator struct {
	dir     string
	perPack int
	dup     float64
	src     *rand.ChaCha8
	rng     *rand.Rand
	hw      *bufio.Writer // every 1000th hash, if set

	entries []index.Entry // of the index object being filled
	curPack pack.ID
	inPack  int
	off     uint32
	objects int
	packs   int
	recent  []pack.ID // hashes to store again
}

// entryLen is the size of a pack header's entry.
const entryLen = 1 + 4 + 4 + 32

// chunk adds the i-th chunk: a new hash or, by the -dup share, one stored
// before, in the current pack, closing the pack and writing the index
// object when full.
func (g *generator) chunk(i int) error {
	if g.inPack == 0 {
		g.src.Read(g.curPack[:])
	}
	var h pack.ID
	if len(g.recent) > 0 && g.rng.Float64() < g.dup {
		h = g.recent[g.rng.IntN(len(g.recent))]
	} else {
		g.src.Read(h[:])
		if len(g.recent) < 4096 {
			g.recent = append(g.recent, h)
		} else {
			g.recent[g.rng.IntN(len(g.recent))] = h
		}
	}
	if g.hw != nil && i%1000 == 0 {
		g.hw.Write(h[:])
	}
	raw := uint32(4096 + g.rng.IntN(8192))
	stored := raw / 2
	g.entries = append(g.entries, index.Entry{Hash: h, Location: pack.Location{Pack: g.curPack, Offset: g.off, Stored: stored, Raw: raw, Type: pack.BlobZstd}})
	g.off += stored
	g.inPack++
	if g.inPack == g.perPack {
		if err := g.closePack(); err != nil {
			return err
		}
	}
	if len(g.entries) == index.MaxEntries {
		return g.flush()
	}
	return nil
}

// closePack writes the current pack as a sparse file of its size.
func (g *generator) closePack() error {
	if g.inPack == 0 {
		return nil
	}
	size := int64(g.off) + int64(g.inPack*entryLen) + int64(pack.TrailerLen)
	if err := sparse(filepath.Join(g.dir, "packs", g.curPack.String()[:2], g.curPack.String()+".pack"), size); err != nil {
		return err
	}
	g.packs++
	g.inPack, g.off = 0, 0
	return nil
}

// flush writes the entries collected as one index object.
func (g *generator) flush() error {
	if len(g.entries) == 0 {
		return nil
	}
	b := index.Encode(g.entries)
	id := pack.ID(sha256.Sum256(b))
	p := filepath.Join(g.dir, "index", id.String()+".index")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		return err
	}
	g.objects++
	g.entries = g.entries[:0]
	return nil
}

func seedBytes(s uint64) [32]byte {
	var b [32]byte
	binary.BigEndian.PutUint64(b[:], s)
	return b
}

// sparse creates a file of size bytes without writing them.
func sparse(path string, size int64) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
