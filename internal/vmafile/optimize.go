// Package vmafile does the file work around the vma codec: optimizing an
// archive opened by internal/input into a new file, standard output or in
// place (through internal/output), unpacking an archive into a directory
// of configs and raw images, and packing such a directory. The codec
// itself (package vma) reads and writes streams only.
package vmafile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/vmasync/vmasync/internal/decompress"
	"github.com/vmasync/vmasync/internal/input"
	"github.com/vmasync/vmasync/internal/output"
	"github.com/vmasync/vmasync/vma"
)

// OptimizeOptions tunes Optimize.
type OptimizeOptions struct {
	// Window and TempDir are vma.OptimizeOptions'.
	Window  int64
	TempDir string
	// Force rewrites an archive that is already optimized, and replaces
	// an existing destination file.
	Force bool
	// Sync makes a new destination file durable (fsync) before it is
	// renamed into place. Replacing the source in place always syncs,
	// since the rename destroys the only other copy.
	Sync bool
	// Compress is "" (plain VMA, the dedup-friendly choice) or "zstd".
	Compress string
	// Stdout receives the output when dst is "-" (default os.Stdout).
	Stdout io.Writer
	// Progress, if set, is called now and then with how far the input
	// has been read: its percentage comes from the stored (compressed)
	// stream, never from the archive bytes.
	Progress func(input.Progress)
}

// OptimizeResult reports what Optimize did.
type OptimizeResult struct {
	*vma.OptimizeResult
	// Skipped is true when the source was already optimized and left
	// alone.
	Skipped bool
	// Output is the path written ("-" for stdout).
	Output string
	// InputFormat is the compression the input was stored with.
	InputFormat decompress.Format
}

// Optimize optimizes the archive in (see vma.Optimize) into dst. dst "-"
// writes to opt.Stdout; dst "" replaces the source file in.Name: the
// output goes to a temporary file beside it, is synced and renamed over
// it only when the whole input checked out, so the source is untouched on
// any error. A plain source that is already optimized (fixed uuid,
// clusters in order) is left alone in place unless opt.Force is set. An
// existing dst is replaced only with opt.Force. A file output is never
// left half-written.
func Optimize(ctx context.Context, in *input.Input, dst string, opt OptimizeOptions) (*OptimizeResult, error) {
	inPlace := dst == ""
	if inPlace {
		if in.Name == "-" {
			return nil, errors.New("optimizing in place needs a file, not standard input")
		}
		dst = in.Name
	}
	res := &OptimizeResult{Output: dst, InputFormat: in.Format}
	if f := in.File(); f != nil && inPlace && !opt.Force {
		done, err := vma.IsOptimized(f, in.Size())
		if err != nil {
			return nil, err
		}
		if done {
			res.Skipped = true
			return res, nil
		}
	}
	if inPlace && in.Format != decompress.Plain && opt.Compress == "" {
		return nil, fmt.Errorf("%s is %s-compressed: replacing it with an uncompressed archive would keep a misleading name; give a destination file, or --compress zstd", in.Name, in.Format)
	}
	oopt := output.Options{
		Force:    opt.Force || inPlace,
		Compress: opt.Compress,
		Sync:     inPlace || opt.Sync,
		Perm:     0o644,
		Stdout:   opt.Stdout,
		// A stream is decoded and reordered on one goroutine; writing
		// from another lets the write system calls overlap with that work.
		Buffered: in.File() == nil,
	}
	if in.Name != "-" {
		if st, err := os.Stat(in.Name); err == nil {
			oopt.Perm = st.Mode().Perm()
			if dt, err := os.Stat(dst); err == nil && os.SameFile(st, dt) {
				oopt.Sync = true // the rename destroys the only other copy
			}
		}
	}
	out, err := output.Create(ctx, dst, oopt)
	if err != nil {
		return nil, err
	}
	defer out.Abort()
	r, err := vma.Optimize(ctx, out, in.Source(), vma.OptimizeOptions{
		Window:   opt.Window,
		TempDir:  opt.TempDir,
		Progress: in.Track(opt.Progress),
	})
	if err != nil {
		return nil, err
	}
	if err := out.Commit(); err != nil {
		return nil, err
	}
	res.OptimizeResult = r
	return res, nil
}
