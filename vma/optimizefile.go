package vma

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/klauspost/compress/zstd"

	"github.com/vmasync/vmasync/internal/asyncwrite"
	"github.com/vmasync/vmasync/internal/atomicfile"
	"github.com/vmasync/vmasync/internal/decompress"
)

// OptimizeFileOptions tunes OptimizeFile.
type OptimizeFileOptions struct {
	OptimizeOptions
	// Force rewrites an archive that is already optimized.
	Force bool
	// Sync makes a new destination file durable (fsync) before it is
	// renamed into place. Replacing src in place always syncs, since the
	// rename destroys the only other copy.
	Sync bool
	// Compress is "" (plain VMA, the dedup-friendly choice) or "zstd".
	Compress string
	// Stdout receives the output when dst is "-"; Stdin is read when src
	// is "-" (default os.Stdin).
	Stdout io.Writer
	Stdin  io.Reader
}

// OptimizeFileResult reports what OptimizeFile did.
type OptimizeFileResult struct {
	*OptimizeResult
	// Skipped is true when src was already optimized and left alone.
	Skipped bool
	// Output is the path written ("-" for stdout).
	Output string
	// InputFormat is the compression the input was stored with.
	InputFormat decompress.Format
}

// OptimizeFile optimizes the archive at src ("-" for standard input; plain
// or compressed, detected by magic) into dst. dst "-" writes to
// opt.Stdout; dst "" replaces src: the output goes to a temporary file in
// src's directory, is synced and renamed over src only when the whole
// input checked out, so src is untouched on any error. A new dst is synced
// only with opt.Sync (like cp, by default). A plain src that is
// already optimized (fixed uuid, clusters in order) is left alone unless
// opt.Force is set. A file output is never left half-written.
func OptimizeFile(src, dst string, opt OptimizeFileOptions) (*OptimizeFileResult, error) {
	if opt.Compress != "" && opt.Compress != "zstd" {
		return nil, fmt.Errorf("unknown output compression %q (only zstd)", opt.Compress)
	}
	inPlace := dst == ""
	if inPlace {
		if src == "-" {
			return nil, errors.New("optimizing in place needs a file, not standard input")
		}
		dst = src
	}
	var in *decompress.Stream
	if src == "-" && opt.Stdin != nil {
		rc, format, err := decompress.NewReader(opt.Stdin)
		if err != nil {
			return nil, err
		}
		in = &decompress.Stream{Reader: rc, Format: format, Name: "-"}
		defer rc.Close()
	} else {
		var err error
		if in, err = decompress.Open(src); err != nil {
			return nil, err
		}
		defer in.Close()
	}
	res := &OptimizeFileResult{Output: dst, InputFormat: in.Format}

	var input io.Reader = in
	if in.File != nil {
		input = in.File
		if inPlace && !opt.Force {
			done, err := alreadyOptimized(in.File)
			if err != nil {
				return nil, err
			}
			if done {
				res.Skipped = true
				return res, nil
			}
		}
	}
	if inPlace && in.Format != decompress.Plain && opt.Compress == "" {
		return nil, fmt.Errorf("%s is %s-compressed: replacing it with an uncompressed archive would keep a misleading name; give a destination file, or --compress zstd", src, in.Format)
	}

	var out io.Writer
	var af *atomicfile.File
	var err error
	if dst == "-" {
		if opt.Stdout == nil {
			return nil, errors.New("no standard output given")
		}
		out = opt.Stdout
	} else {
		perm := os.FileMode(0o644)
		if st, err := os.Stat(src); err == nil && src != "-" {
			perm = st.Mode().Perm()
		}
		af, err = atomicfile.Create(dst, perm)
		if err != nil {
			return nil, err
		}
		af.NoSync = !inPlace && !opt.Sync
		defer af.Abort()
		out = af
	}
	var zw *zstd.Encoder
	if opt.Compress == "zstd" {
		zw, err = zstd.NewWriter(out, zstd.WithEncoderLevel(zstd.SpeedDefault))
		if err != nil {
			return nil, err
		}
		out = zw
	}
	// A stream is decoded and reordered on one goroutine; writing from
	// another lets the write system calls overlap with that work.
	var aw *asyncwrite.Writer
	if in.File == nil {
		aw = asyncwrite.NewWriter(out, 4<<20, 4)
		out = aw
	}
	r, err := Optimize(out, input, opt.OptimizeOptions)
	if aw != nil {
		if cerr := aw.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return nil, err
	}
	res.OptimizeResult = r
	if zw != nil {
		if err := zw.Close(); err != nil {
			return nil, err
		}
	}
	if af != nil {
		if err := af.Commit(); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// alreadyOptimized reads the index of a plain archive file (headers only)
// and reports whether it carries OptimizedUUID with clusters in order. The
// file offset is reset to the start.
func alreadyOptimized(f *os.File) (bool, error) {
	st, err := f.Stat()
	if err != nil {
		return false, err
	}
	defer f.Seek(0, io.SeekStart)
	vr, err := NewIndexReader(f, st.Size())
	if err != nil {
		return false, err
	}
	if vr.Header().UUID != OptimizedUUID {
		return false, nil
	}
	var order orderCheck
	for {
		c, err := vr.Next()
		if err == io.EOF {
			return order.inOrder(), nil
		}
		if err != nil {
			return false, err
		}
		if order.see(c.DevID, c.Num); !order.inOrder() {
			return false, nil
		}
	}
}
