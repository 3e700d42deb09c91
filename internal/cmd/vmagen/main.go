// Command vmagen writes a generated Proxmox-like VMA archive (see package
// vma/vmatest) for benchmarks and dedup measurements.
//
//	vmagen -disks drive-scsi0:4G:mixed,drive-efidisk0:540672,drive-tpmstate0-backup:4M \
//	       -order proxmox -seed 1 -gen 0 -o day1.vma
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/vmasync/vmasync/vma/vmatest"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "vmagen:", err)
		os.Exit(1)
	}
}

func parseSize(s string) (uint64, error) {
	mult := uint64(1)
	switch {
	case strings.HasSuffix(s, "K"):
		mult, s = 1<<10, s[:len(s)-1]
	case strings.HasSuffix(s, "M"):
		mult, s = 1<<20, s[:len(s)-1]
	case strings.HasSuffix(s, "G"):
		mult, s = 1<<30, s[:len(s)-1]
	case strings.HasSuffix(s, "T"):
		mult, s = 1<<40, s[:len(s)-1]
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n * mult, err
}

var contents = map[string]vmatest.Content{
	"mixed": vmatest.Mixed, "random": vmatest.Random, "text": vmatest.Text,
	"zeroruns": vmatest.ZeroRuns, "sparse": vmatest.Sparse,
}

var orders = map[string]vmatest.Order{
	"ordered": vmatest.Ordered, "proxmox": vmatest.ProxmoxLike, "create": vmatest.CreateLike,
}

func run() error {
	var (
		disks  = flag.String("disks", "drive-scsi0:1G:mixed", "comma-separated NAME:SIZE[:CONTENT] (SIZE with K/M/G/T; CONTENT mixed|random|text|zeroruns|sparse)")
		order  = flag.String("order", "proxmox", "cluster order: ordered|proxmox|create")
		seed   = flag.Uint64("seed", 1, "seed of uuid, data and order")
		gen    = flag.Uint64("gen", 0, "generation (0 = day 1; n = the same VM n backups later)")
		change = flag.Float64("change", 0, "fraction of clusters changed per generation (0 = default 0.03)")
		pull   = flag.Float64("pull", 0.02, "fraction of clusters pulled forward (proxmox order)")
		out    = flag.String("o", "-", "output file (- = stdout)")
	)
	flag.Parse()
	spec := vmatest.Spec{Seed: *seed, Generation: *gen, ChangeFraction: *change, PullForward: *pull}
	o, ok := orders[*order]
	if !ok {
		return fmt.Errorf("unknown order %q", *order)
	}
	spec.Order = o
	for _, d := range strings.Split(*disks, ",") {
		parts := strings.Split(d, ":")
		if len(parts) < 2 || len(parts) > 3 {
			return fmt.Errorf("bad disk %q (want NAME:SIZE[:CONTENT])", d)
		}
		size, err := parseSize(parts[1])
		if err != nil {
			return fmt.Errorf("bad size in %q: %v", d, err)
		}
		disk := vmatest.Disk{Name: parts[0], Size: size}
		if len(parts) == 3 {
			c, ok := contents[parts[2]]
			if !ok {
				return fmt.Errorf("unknown content %q", parts[2])
			}
			disk.Content = c
		}
		spec.Disks = append(spec.Disks, disk)
	}
	var w io.Writer = os.Stdout
	var f *os.File
	if *out != "-" {
		var err error
		if f, err = os.Create(*out); err != nil {
			return err
		}
		w = f
	}
	bw := bufio.NewWriterSize(w, 4<<20)
	if err := vmatest.Write(bw, spec); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if f != nil {
		return f.Close()
	}
	return nil
}
