// Command indexbench loads the index of a local repository directory (as
// internal/cmd/indexgen writes one) into the in-memory index.Index, as
// LoadIndex does, or into an index.DiskIndex, then looks chunks up, for
// scripts/bench-index-memory.sh to measure its time and peak RSS.
//
//	indexbench -mode mem  -dir REPO -hashes H -lookups 1000000
//	indexbench -mode disk -dir REPO -hashes H -cache DIR -lookups 1000000
//
// Half the lookups are of chunks that exist (from -hashes, indexgen's
// every 1000th hash), half of random ones (the common case of a push of
// new data). One line of key=value pairs goes to stdout. Like vmasync,
// it sets a soft heap limit of 384 MiB unless GOMEMLIMIT is set.
package main

import (
	"flag"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"
	"time"

	"github.com/vmasync/vmasync/remote/index"
	"github.com/vmasync/vmasync/remote/pack"
)

func main() {
	// As cmd/vmasync: a soft heap limit, so that the garbage collector's
	// headroom does not double what is live.
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(384 << 20)
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "indexbench:", err)
		os.Exit(1)
	}
}

func run() error {
	mode := flag.String("mode", "disk", "mem or disk")
	dir := flag.String("dir", "", "repository directory")
	cache := flag.String("cache", "", "cache directory (disk)")
	hashesFile := flag.String("hashes", "", "file of known chunk hashes")
	lookups := flag.Int("lookups", 1000000, "lookups")
	scan := flag.Bool("scan", true, "also walk every chunk with its position (GC's plan)")
	verify := flag.Bool("verify", false, "check every block when opening (disk)")
	sortRecs := flag.Int("sort", 0, "records the external sort holds in memory (disk; 0: the default)")
	flag.Parse()
	packs, err := listPacks(*dir)
	if err != nil {
		return err
	}
	names, err := filepath.Glob(filepath.Join(*dir, "index", "*.index"))
	if err != nil {
		return err
	}
	sort.Strings(names)
	known, err := readKnown(*hashesFile)
	if err != nil {
		return err
	}
	start := time.Now()
	out := []string{"mode=" + *mode}
	var x *benchIndex
	switch *mode {
	case "mem":
		x, err = loadMem(names, packs)
	case "disk":
		x, err = openDisk(index.DiskOptions{Dir: *cache, RepoID: "bench", Sources: names, Read: readIndex, Verify: *verify, SortRecords: *sortRecs}, packs, start)
	default:
		return fmt.Errorf("mode %q", *mode)
	}
	if err != nil {
		return err
	}
	defer x.close()
	if x.opened != "" {
		out = append(out, x.opened)
	}
	out = append(out, fmt.Sprintf("load_s=%.2f", time.Since(start).Seconds()))
	t := time.Now()
	out = append(out, fmt.Sprintf("chunks=%d len_s=%.2f", x.length(), time.Since(t).Seconds()))
	t = time.Now()
	hits := lookup(x.has, known, *lookups)
	el := time.Since(t)
	out = append(out, fmt.Sprintf("lookups=%d hits=%d lookup_us=%.2f", *lookups, hits, float64(el.Microseconds())/float64(max(*lookups, 1))))
	if *scan {
		t = time.Now()
		n, err := x.eachPos()
		if err != nil {
			return err
		}
		out = append(out, fmt.Sprintf("scan=%d scan_s=%.2f", n, time.Since(t).Seconds()))
	}
	out = append(out, fmt.Sprintf("total_s=%.2f", time.Since(start).Seconds()))
	fmt.Println(strings.Join(out, " "))
	return nil
}

// benchIndex is the index measured, in memory or on disk.
type benchIndex struct {
	has     func(index.ID) bool
	length  func() int
	eachPos func() (int, error) // every chunk with its position
	close   func()
	opened  string // how long opening the disk index took and what it did
}

// readIndex reads and decodes one index object.
func readIndex(name string) ([]index.Entry, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	id, _ := pack.ParseID(strings.TrimSuffix(filepath.Base(name), ".index"))
	return index.Decode(b, id)
}

// readKnown reads the file of known hashes (32 bytes each; none without
// a file).
func readKnown(file string) ([]index.ID, error) {
	if file == "" {
		return nil, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var known []index.ID
	for len(b) >= 32 {
		known = append(known, index.ID(b[:32]))
		b = b[32:]
	}
	return known, nil
}

// loadMem loads the index objects into an index.Index as LoadIndex does,
// leaving out the entries of missing or short packs.
func loadMem(names []string, packs map[pack.ID]int64) (*benchIndex, error) {
	x := index.New()
	for _, n := range names {
		entries, err := readIndex(n)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			size, ok := packs[e.Pack]
			if !ok || int64(e.Offset)+int64(e.Stored) > size-int64(pack.TrailerLen) {
				continue
			}
			x.Load(e.Hash, e.Location)
		}
	}
	x.Freeze()
	eachPos := func() (int, error) {
		n := 0
		for i := range x.Positions() {
			x.At(i)
			n++
		}
		return n, nil
	}
	return &benchIndex{has: x.Has, length: x.Len, eachPos: eachPos, close: func() {}}, nil
}

// openDisk opens (building what is missing) an index.DiskIndex limited
// to the listed packs; start is when the measurement began.
func openDisk(o index.DiskOptions, packs map[pack.ID]int64, start time.Time) (*benchIndex, error) {
	x, st, err := index.OpenDisk(o)
	if err != nil {
		return nil, err
	}
	closeIndex := func() {
		if err := x.Err(); err != nil {
			fmt.Fprintln(os.Stderr, "indexbench:", err)
		}
		x.Close()
	}
	opened := fmt.Sprintf("open_s=%.2f built=%d reused=%d read=%d runs=%d", time.Since(start).Seconds(), st.Built, st.Reused, st.Read, x.Runs())
	if _, err := x.SetPacks(packs, pack.TrailerLen); err != nil {
		closeIndex()
		return nil, err
	}
	eachPos := func() (int, error) {
		n := 0
		err := x.EachPos(func(int, index.ID, index.Location) { n++ })
		return n, err
	}
	return &benchIndex{has: x.Has, length: x.Len, eachPos: eachPos, close: closeIndex, opened: opened}, nil
}

// lookup looks up n hashes, every other one known (when there are known
// ones), the others random, and returns how many were found.
func lookup(has func(index.ID) bool, known []index.ID, n int) int {
	rng := rand.New(rand.NewPCG(1, 2))
	hits := 0
	for i := range n {
		var h index.ID
		if i%2 == 0 && len(known) > 0 {
			h = known[rng.IntN(len(known))]
		} else {
			for j := range 4 {
				v := rng.Uint64()
				for k := range 8 {
					h[j*8+k] = byte(v >> (8 * k))
				}
			}
		}
		if has(h) {
			hits++
		}
	}
	return hits
}

func listPacks(dir string) (map[pack.ID]int64, error) {
	packs := map[pack.ID]int64{}
	err := filepath.WalkDir(filepath.Join(dir, "packs"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		id, ok := pack.ParseID(strings.TrimSuffix(d.Name(), ".pack"))
		if !ok {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		packs[id] = fi.Size()
		return nil
	})
	return packs, err
}
