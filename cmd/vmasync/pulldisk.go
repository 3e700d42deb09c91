package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/vmasync/vmasync/internal/atomicfile"
	"github.com/vmasync/vmasync/internal/chunkcache"
	"github.com/vmasync/vmasync/internal/output"
	"github.com/vmasync/vmasync/internal/vmalayout"
	"github.com/vmasync/vmasync/remote"
	"github.com/vmasync/vmasync/vma"
)

// pullDiskCache is the chunk cache of pull --disk: the 16 MiB window
// being written and the two being fetched (48 MiB at most), with 16 MiB
// to spare. 96 MiB put the peak RSS of a 4 GiB disk at 272-287 MiB, 64
// MiB at 247 MiB with the same bytes fetched (docs/benchmarks.md).
const pullDiskCache = 64 << 20

// diskFlag is pull's --disk.
func diskFlag() cli.Flag {
	return &cli.StringSliceFlag{Name: "disk", Usage: "write only the disk `NAME` (drive-scsi0) as a sparse raw image, as unpack writes it, fetching only its chunks (repeatable)"}
}

// diskFileName is the image's name in a directory, as unpack names it.
func diskFileName(d vma.Device) string {
	if d.IsVMState() {
		return "vmstate.bin"
	}
	return vma.ImageName(d.Name)
}

// pullDiskArgs are pull --disk's checked arguments.
type pullDiskArgs struct {
	o         opts
	remote    string
	vmid, sel string
	names     []string
	dest      string
	toDir     bool
	out       output.Options
	transfers int
}

// parsePullDisk checks pull --disk's flags and arguments, and DEST, before
// anything is read from the remote.
func parsePullDisk(e *env, cCtx *cli.Context) (*pullDiskArgs, error) {
	o, err := globalOpts(cCtx)
	if err != nil {
		return nil, err
	}
	args, err := checkArgs(cCtx, 2, 3)
	if err != nil {
		return nil, err
	}
	if cCtx.String("compress") != "" {
		return nil, usageError("pull", "--compress does not apply to --disk (the image is written sparse)")
	}
	a := &pullDiskArgs{o: o, remote: args[0], names: cCtx.StringSlice("disk"), dest: ".", transfers: cCtx.Int("transfers"),
		out: output.Options{Force: cCtx.Bool("force"), Stdout: e.stdout}}
	for _, n := range a.names {
		if err := vma.CheckName(n); err != nil {
			return nil, usageError("pull", "--disk %q: %v", n, err)
		}
	}
	a.vmid, a.sel, _ = strings.Cut(args[1], "@")
	if _, err := strconv.ParseUint(a.vmid, 10, 32); err != nil {
		return nil, usageError("pull", "%q is not a VM id", a.vmid)
	}
	if len(args) == 3 {
		a.dest = args[2]
	}
	if st, err := os.Stat(a.dest); a.dest != "-" && err == nil && st.IsDir() {
		a.toDir = true
	}
	switch {
	case !a.toDir && len(a.names) > 1:
		return nil, usageError("pull", "%d disks need a directory as DEST (%s is not one)", len(a.names), displayName(a.dest))
	case a.dest == "-" && isTerminal(e.stdout):
		return nil, &fileError{"stdout", errors.New("refusing to write a disk image to a terminal")}
	case !a.toDir:
		if err := output.Check(a.dest, a.out); err != nil {
			return nil, fmt.Errorf("pull: %w", err)
		}
	}
	return a, nil
}

// pullDisks is pull --disk NAME...: the images of some disks of a backup,
// read from its archive by ranges (internal/vmalayout over
// internal/chunkcache) instead of rebuilding the whole archive.
func pullDisks(e *env, cCtx *cli.Context) error {
	a, err := parsePullDisk(e, cCtx)
	if err != nil {
		return err
	}
	ctx, r, b, _, release, err := openBackup(e, cCtx, a.o, a.remote, a.vmid, a.sel, readNone)
	if err != nil {
		return err
	}
	defer release()
	cache := chunkcache.New(pullDiskCache)
	cache.Fetch = a.transfers
	x, err := cache.OpenBackup(ctx, r, b) // a chunk tree is descended, not held
	if err != nil {
		return fmt.Errorf("pull: %w", err) // it names the backup
	}
	l, err := vmalayout.Open(ctx, x, x.Size())
	if err != nil {
		return fmt.Errorf("pull %s: %w", b.Name, err)
	}
	devs, paths, err := a.plan(b, l)
	if err != nil {
		return err
	}
	for i, d := range devs {
		before := cache.Fetched()
		pr := newProgress(e, a.o, "pull "+b.Name+" "+d.Name)
		pr.setTotal(int64(d.Size), nil)
		err := writeDisk(ctx, l, d, paths[i], a.out, pr.update, x.Prefetch)
		pr.done()
		if err != nil {
			return fmt.Errorf("pull %s %s: %w", b.Name, d.Name, err)
		}
		if !a.o.quiet {
			fmt.Fprintf(e.stderr, "%s %s: %s (%s disk, %s fetched, every chunk's SHA-256 checked)\n",
				b.Name, d.Name, displayName(paths[i]), humanBytes(d.Size), humanBytes(uint64(cache.Fetched()-before)))
		}
	}
	return nil
}

// plan finds the disks asked for in the backup's header and checks every
// path to write before any image is written.
func (a *pullDiskArgs) plan(b remote.Backup, l *vmalayout.Layout) ([]vma.Device, []string, error) {
	var devs []vma.Device
	var paths []string
	for _, n := range a.names {
		d, ok := l.Device(n)
		if !ok {
			var have []string
			for _, d := range l.Header().Devices {
				have = append(have, d.Name)
			}
			return nil, nil, fmt.Errorf("pull %s: the backup has no disk %q (it has %s)", b.Name, n, strings.Join(have, ", "))
		}
		if slices.ContainsFunc(devs, func(x vma.Device) bool { return x.ID == d.ID }) {
			continue
		}
		p := a.dest
		if a.toDir {
			p = filepath.Join(a.dest, diskFileName(d))
			if err := output.Check(p, a.out); err != nil {
				return nil, nil, fmt.Errorf("pull: %w", err)
			}
		}
		devs = append(devs, d)
		paths = append(paths, p)
	}
	return devs, paths, nil
}

// writeDisk writes device d's image to path: "-" (stdout, every byte), an
// existing device or FIFO (every byte, in place), or a file written
// sparse under a temporary name and renamed when complete.
func writeDisk(ctx context.Context, l *vmalayout.Layout, d vma.Device, path string, out output.Options, progress func(int64), prefetch func(context.Context, int64, int64)) error {
	opt := vmalayout.CopyOptions{Window: 16 << 20, Progress: progress, Prefetch: prefetch}
	if path == "-" {
		return writeOutput(ctx, path, out, func(w io.Writer) error { return l.WriteDisk(ctx, d.ID, w, nil, opt) })
	}
	af, err := atomicfile.Create(path, 0o644)
	if err != nil {
		return &output.Error{Path: path, Err: err}
	}
	defer af.Abort()
	af.NoReplace = !out.Force
	st, err := af.Stat()
	if err != nil {
		return err
	}
	if st.Mode().IsRegular() {
		err = l.WriteDisk(ctx, d.ID, nil, af.File, opt)
		if err == nil {
			err = af.Truncate(int64(d.Size))
		}
	} else {
		err = l.WriteDisk(ctx, d.ID, af.File, nil, opt)
	}
	if err != nil {
		return err
	}
	if err := af.Commit(); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return &output.Error{Path: path, Err: output.ErrExist}
		}
		return &output.Error{Path: path, Err: err}
	}
	return nil
}
