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
	read := func(name string) ([]index.Entry, error) {
		b, err := os.ReadFile(name)
		if err != nil {
			return nil, err
		}
		id, _ := pack.ParseID(strings.TrimSuffix(filepath.Base(name), ".index"))
		return index.Decode(b, id)
	}
	var known []index.ID
	if *hashesFile != "" {
		b, err := os.ReadFile(*hashesFile)
		if err != nil {
			return err
		}
		for len(b) >= 32 {
			known = append(known, index.ID(b[:32]))
			b = b[32:]
		}
	}
	start := time.Now()
	var get func(index.ID) bool
	var length func() int
	var eachPos func() (int, error)
	out := []string{"mode=" + *mode}
	switch *mode {
	case "mem":
		x := index.New()
		for _, n := range names {
			entries, err := read(n)
			if err != nil {
				return err
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
		get = x.Has
		length = x.Len
		eachPos = func() (int, error) {
			n := 0
			for i := range x.Positions() {
				x.At(i)
				n++
			}
			return n, nil
		}
	case "disk":
		x, st, err := index.OpenDisk(index.DiskOptions{Dir: *cache, RepoID: "bench", Sources: names, Read: read, Verify: *verify, SortRecords: *sortRecs})
		if err != nil {
			return err
		}
		defer x.Close()
		out = append(out, fmt.Sprintf("open_s=%.2f built=%d reused=%d read=%d runs=%d", time.Since(start).Seconds(), st.Built, st.Reused, st.Read, x.Runs()))
		if _, err := x.SetPacks(packs, pack.TrailerLen); err != nil {
			return err
		}
		get = x.Has
		length = x.Len
		eachPos = func() (int, error) {
			n := 0
			err := x.EachPos(func(int, index.ID, index.Location) { n++ })
			return n, err
		}
		defer func() {
			if err := x.Err(); err != nil {
				fmt.Fprintln(os.Stderr, "indexbench:", err)
			}
		}()
	default:
		return fmt.Errorf("mode %q", *mode)
	}
	out = append(out, fmt.Sprintf("load_s=%.2f", time.Since(start).Seconds()))
	t := time.Now()
	out = append(out, fmt.Sprintf("chunks=%d len_s=%.2f", length(), time.Since(t).Seconds()))
	rng := rand.New(rand.NewPCG(1, 2))
	t = time.Now()
	hits := 0
	for i := range *lookups {
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
		if get(h) {
			hits++
		}
	}
	el := time.Since(t)
	out = append(out, fmt.Sprintf("lookups=%d hits=%d lookup_us=%.2f", *lookups, hits, float64(el.Microseconds())/float64(max(*lookups, 1))))
	if *scan {
		t = time.Now()
		n, err := eachPos()
		if err != nil {
			return err
		}
		out = append(out, fmt.Sprintf("scan=%d scan_s=%.2f", n, time.Since(t).Seconds()))
	}
	out = append(out, fmt.Sprintf("total_s=%.2f", time.Since(start).Seconds()))
	fmt.Println(strings.Join(out, " "))
	return nil
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
