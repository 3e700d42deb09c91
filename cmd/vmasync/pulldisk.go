package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
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

// pullDiskCache is the chunk cache of pull --disk: a read window and the
// next one being fetched, with room to spare.
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

// pullDisks is pull --disk NAME...: the images of some disks of a backup,
// read from its archive by ranges (internal/vmalayout over
// internal/chunkcache) instead of rebuilding the whole archive.
func pullDisks(e *env, cCtx *cli.Context) error {
	o, err := globalOpts(cCtx)
	if err != nil {
		return err
	}
	args, err := checkArgs(cCtx, 2, 3)
	if err != nil {
		return err
	}
	if cCtx.String("compress") != "" {
		return usageError("pull", "--compress does not apply to --disk (the image is written sparse)")
	}
	names := cCtx.StringSlice("disk")
	for _, n := range names {
		if err := vma.CheckName(n); err != nil {
			return usageError("pull", "--disk %q: %v", n, err)
		}
	}
	vmid, sel, _ := strings.Cut(args[1], "@")
	if _, err := strconv.ParseUint(vmid, 10, 32); err != nil {
		return usageError("pull", "%q is not a VM id", vmid)
	}
	dest := "."
	if len(args) == 3 {
		dest = args[2]
	}
	toDir := false
	if dest != "-" {
		if st, err := os.Stat(dest); err == nil && st.IsDir() {
			toDir = true
		}
	}
	if !toDir && len(names) > 1 {
		return usageError("pull", "%d disks need a directory as DEST (%s is not one)", len(names), displayName(dest))
	}
	if dest == "-" && isTerminal(e.stdout) {
		return &fileError{"stdout", errors.New("refusing to write a disk image to a terminal")}
	}
	out := output.Options{Force: cCtx.Bool("force"), Stdout: e.stdout}
	if !toDir {
		if err := output.Check(dest, out); err != nil {
			return fmt.Errorf("pull: %w", err)
		}
	}
	ctx, r, err := openRepo(e, cCtx, o, args[0])
	if err != nil {
		return err
	}
	ctx, unlock, err := lockRepo(ctx, cCtx, r, false)
	if err != nil {
		return err
	}
	defer unlock()
	backups, err := r.Backups(ctx)
	if err != nil {
		return err
	}
	b, err := remote.Select(backups, vmid, sel)
	if err != nil {
		return err
	}
	m, err := r.Manifest(ctx, b)
	if err != nil {
		return err
	}
	if _, err := r.LoadIndex(ctx, false); err != nil {
		return err
	}
	cache := chunkcache.New(pullDiskCache)
	cache.Fetch = cCtx.Int("transfers")
	x, err := cache.Open(r, m, b.Name)
	if err != nil {
		return fmt.Errorf("pull %s: %w", b.Name, err)
	}
	l, err := vmalayout.Open(ctx, x, x.Size())
	if err != nil {
		return fmt.Errorf("pull %s: %w", b.Name, err)
	}
	// Every disk and path is checked before any image is written.
	var devs []vma.Device
	paths := map[string]string{}
	for _, n := range names {
		d, ok := l.Device(n)
		if !ok {
			var have []string
			for _, d := range l.Header().Devices {
				have = append(have, d.Name)
			}
			return fmt.Errorf("pull %s: the backup has no disk %q (it has %s)", b.Name, n, strings.Join(have, ", "))
		}
		if _, dup := paths[n]; dup {
			continue
		}
		p := dest
		if toDir {
			p = filepath.Join(dest, diskFileName(d))
			if err := output.Check(p, out); err != nil {
				return fmt.Errorf("pull: %w", err)
			}
		}
		devs = append(devs, d)
		paths[n] = p
	}
	for _, d := range devs {
		p := paths[d.Name]
		before := cache.Fetched()
		pr := newProgress(e, o, "pull "+b.Name+" "+d.Name)
		pr.setTotal(int64(d.Size), nil)
		err := writeDisk(ctx, l, d, p, out, pr.update, x.Prefetch)
		pr.done()
		if err != nil {
			return fmt.Errorf("pull %s %s: %w", b.Name, d.Name, err)
		}
		if !o.quiet {
			fmt.Fprintf(e.stderr, "%s %s: %s (%s disk, %s fetched, every chunk's SHA-256 checked)\n",
				b.Name, d.Name, displayName(p), humanBytes(d.Size), humanBytes(uint64(cache.Fetched()-before)))
		}
	}
	return nil
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
