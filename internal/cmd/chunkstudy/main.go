// Command chunkstudy measures how chunk parameters trade deduplication
// against chunk count on optimized VMA archives, to choose
// chunkplan.DefaultParams (issue 4). It generates a day-1 archive and, for
// each change fraction, a day-2 archive of the same VM (package
// vma/vmatest: Proxmox-like order, another uuid, the fraction of clusters
// rewritten at scattered places), optimizes both in memory, and for every
// parameter set prints day 2's new bytes against day 1 as a multiple of
// the physical floor (the bytes of the clusters whose content changed),
// with the chunk count and manifest size per GiB of archive.
//
//	go run ./internal/cmd/chunkstudy -size 1G -change 0.001,0.01,0.03
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/vmasync/vmasync/chunkplan"
	"github.com/vmasync/vmasync/vma"
	"github.com/vmasync/vmasync/vma/vmatest"
)

// paramSet is one row of the study: MinSize, AverageBits, MaxSize.
type paramSet struct {
	min  uint
	bits int
	max  uint
}

func (p paramSet) params() chunkplan.Params {
	return chunkplan.Params{Polynomial: chunkplan.DefaultPolynomial, MinSize: p.min, MaxSize: p.max, AverageBits: p.bits}
}

func (p paramSet) String() string {
	return fmt.Sprintf("%s / 2^%d / %s", size(uint64(p.min)), p.bits, size(uint64(p.max)))
}

func size(n uint64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprint(n)
}

func parseSet(s string) (paramSet, error) {
	f := strings.Split(s, "/")
	if len(f) != 3 {
		return paramSet{}, fmt.Errorf("bad parameter set %q, want MIN/BITS/MAX", s)
	}
	var v [3]uint64
	for i, x := range f {
		n, err := strconv.ParseUint(strings.TrimSpace(x), 0, 64)
		if err != nil {
			return paramSet{}, fmt.Errorf("bad parameter set %q: %v", s, err)
		}
		v[i] = n
	}
	return paramSet{min: uint(v[0]), bits: int(v[1]), max: uint(v[2])}, nil
}

const defaultSets = "65536/16/1048576,32768/15/524288,16384/14/262144,8192/13/131072," +
	"4096/13/65536,2048/13/65536,4096/12/65536,2048/12/32768,1024/12/32768,2048/11/32768,1024/11/16384," +
	"524288/20/8388608"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "chunkstudy:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		sizeFlag = flag.String("size", "1G", "data disk size (K/M/G suffix)")
		changes  = flag.String("change", "0.001,0.01,0.03", "comma-separated fractions of clusters changed on day 2")
		sets     = flag.String("params", defaultSets, "comma-separated MIN/AVERAGEBITS/MAX parameter sets")
		seed     = flag.Uint64("seed", 42, "vmatest seed")
	)
	flag.Parse()
	diskSize, err := parseSize(*sizeFlag)
	if err != nil {
		return err
	}
	psets, err := parseSets(*sets)
	if err != nil {
		return err
	}
	fracs, err := parseFractions(*changes)
	if err != nil {
		return err
	}
	spec := func(gen uint64, frac float64) vmatest.Spec {
		return vmatest.Spec{
			Disks: []vmatest.Disk{
				{Name: "drive-scsi0", Size: diskSize, Content: vmatest.Mixed},
				{Name: "drive-efidisk0", Size: 540672, Content: vmatest.Mixed},
				{Name: "drive-tpmstate0-backup", Size: 4 << 20, Content: vmatest.Mixed},
			},
			Order: vmatest.ProxmoxLike, PullForward: 0.02, Seed: *seed,
			Generation: gen, ChangeFraction: frac,
		}
	}
	day1, err := optimized(spec(0, fracs[0]))
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "day 1: %d bytes optimized\n", len(day1))
	mA := make([]*chunkplan.Manifest, len(psets))
	if err := forEach(len(psets), func(i int) (err error) {
		mA[i], err = chunkplan.Build(bytes.NewReader(day1), psets[i].params())
		return err
	}); err != nil {
		return err
	}

	fmt.Printf("vmatest seed %d, data disk %s mixed + EFI + TPM disks, Proxmox-like order; day-1 archive %d bytes optimized\n\n", *seed, *sizeFlag, len(day1))
	fmt.Println("| changed clusters | min / average bits / max | mean chunk KiB | day-2 new MiB | floor MiB | new / floor | chunks per GiB | manifest bytes per GiB |")
	fmt.Println("| --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, frac := range fracs {
		if err := printDay2(frac, spec(0, frac), spec(1, frac), psets, mA); err != nil {
			return err
		}
	}
	return nil
}

// parseSize reads -size: bytes with an optional K, M or G suffix.
func parseSize(s string) (uint64, error) {
	mult := uint64(1)
	switch {
	case strings.HasSuffix(s, "K"):
		mult, s = 1<<10, s[:len(s)-1]
	case strings.HasSuffix(s, "M"):
		mult, s = 1<<20, s[:len(s)-1]
	case strings.HasSuffix(s, "G"):
		mult, s = 1<<30, s[:len(s)-1]
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bad -size: %v", err)
	}
	return n * mult, nil
}

// parseSets reads -params: valid parameter sets, comma-separated.
func parseSets(s string) ([]paramSet, error) {
	var psets []paramSet
	for _, x := range strings.Split(s, ",") {
		p, err := parseSet(x)
		if err != nil {
			return nil, err
		}
		if err := p.params().Validate(); err != nil {
			return nil, err
		}
		psets = append(psets, p)
	}
	return psets, nil
}

// parseFractions reads -change: fractions, comma-separated.
func parseFractions(s string) ([]float64, error) {
	var fracs []float64
	for _, x := range strings.Split(s, ",") {
		f, err := strconv.ParseFloat(x, 64)
		if err != nil {
			return nil, fmt.Errorf("bad -change: %v", err)
		}
		fracs = append(fracs, f)
	}
	return fracs, nil
}

// printDay2 prints the rows of one change fraction: day 2 (spec day2,
// day 1 being day1) chunked with every parameter set and compared with
// day 1's manifests mA.
func printDay2(frac float64, day1, day2 vmatest.Spec, psets []paramSet, mA []*chunkplan.Manifest) error {
	arch, err := optimized(day2)
	if err != nil {
		return err
	}
	floor := floorBytes(day1, day2)
	cmps := make([]chunkplan.Comparison, len(psets))
	if err := forEach(len(psets), func(i int) error {
		mB, err := chunkplan.Build(bytes.NewReader(arch), psets[i].params())
		if err != nil {
			return err
		}
		cmps[i] = chunkplan.Compare(mA[i], mB)
		return nil
	}); err != nil {
		return err
	}
	for i, p := range psets {
		c := cmps[i]
		gib := float64(c.TotalBytes) / (1 << 30)
		perGiB := float64(c.TotalChunks) / gib
		fmt.Printf("| %g %% | %s | %.1f | %.2f | %.2f | %.2f× | %.0f | %.0f |\n",
			100*frac, p, float64(c.TotalBytes)/float64(c.TotalChunks)/1024,
			float64(c.NewBytes)/(1<<20), float64(floor)/(1<<20),
			float64(c.NewBytes)/float64(floor), perGiB, perGiB*36)
	}
	return nil
}

// optimized returns the optimized archive of s.
func optimized(s vmatest.Spec) ([]byte, error) {
	raw, err := vmatest.Archive(s)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	out.Grow(len(raw))
	if _, err := vma.Optimize(context.Background(), &out, bytes.NewReader(raw), vma.OptimizeOptions{}); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// floorBytes returns the device bytes of the clusters whose content
// differs between a and b (same disks), comparing the generated data.
func floorBytes(a, b vmatest.Spec) uint64 {
	var n uint64
	ba := make([]byte, vma.ClusterSize)
	bb := make([]byte, vma.ClusterSize)
	for d, disk := range a.Disks {
		for c := uint64(0); c*vma.ClusterSize < disk.Size; c++ {
			if b.Version(d, c) == 0 && a.Version(d, c) == 0 {
				continue
			}
			x := a.ClusterData(d, c, ba)
			y := b.ClusterData(d, c, bb)
			if !bytes.Equal(x, y) {
				n += uint64(len(y))
			}
		}
	}
	return n
}

// forEach runs fn(0..n-1) on two goroutines (the study machine has two
// cores) and returns the first error.
func forEach(n int, fn func(int) error) error {
	var (
		mu   sync.Mutex
		next int
		err  error
		wg   sync.WaitGroup
	)
	for range 2 {
		wg.Go(func() {
			for {
				mu.Lock()
				i := next
				next++
				stop := err != nil
				mu.Unlock()
				if i >= n || stop {
					return
				}
				if e := fn(i); e != nil {
					mu.Lock()
					if err == nil {
						err = e
					}
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	return err
}
