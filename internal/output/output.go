// Package output writes what a command produces, the one way every
// command does it: standard output for "-", else a file that appears only
// when complete (temporary name and rename, internal/atomicfile),
// optionally zstd-compressed, never replacing an existing file unless
// asked, and with a one-line error naming a missing directory.
package output

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/klauspost/compress/zstd"

	"github.com/vmasync/vmasync/internal/asyncwrite"
	"github.com/vmasync/vmasync/internal/atomicfile"
)

// Options tunes Create.
type Options struct {
	// Force replaces an existing regular file; without it Create fails
	// with ErrExist.
	Force bool
	// Compress is "" (as written) or "zstd".
	Compress string
	// Sync makes the file durable (fsync) before its rename, and the
	// rename too.
	Sync bool
	// Perm is a new file's mode (default 0o644).
	Perm fs.FileMode
	// Stdout receives the output for "-" (default os.Stdout).
	Stdout io.Writer
	// Buffered writes through buffers that a goroutine of its own writes
	// out (internal/asyncwrite), for a single-threaded producer.
	Buffered bool
}

// ErrExist is the error (matching fs.ErrExist) for an existing file that
// Options.Force does not allow to replace.
var ErrExist error = existError{}

type existError struct{}

func (existError) Error() string        { return "already exists (use --force to replace it)" }
func (existError) Is(target error) bool { return target == fs.ErrExist }

// Error is an error about the output path, printed as "PATH: what".
type Error struct {
	Path string
	Err  error
}

func (e *Error) Error() string { return e.Path + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Check reports, without creating anything, why Create(path, opt) would
// fail: path is a directory, exists (without Force), or its directory
// does not exist. "-" always passes.
func Check(path string, opt Options) error {
	if path == "-" {
		return nil
	}
	if st, err := os.Stat(path); err == nil {
		switch {
		case st.IsDir():
			return &Error{path, errors.New("is a directory")}
		case st.Mode().IsRegular() && !opt.Force:
			return &Error{path, ErrExist}
		}
		return nil
	}
	dir := filepath.Dir(path)
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return &Error{path, fmt.Errorf("directory %s does not exist", dir)}
	case err != nil:
		return &Error{path, err}
	case !st.IsDir():
		return &Error{path, fmt.Errorf("%s is not a directory", dir)}
	}
	return nil
}

// Output is an output being written.
type Output struct {
	path   string
	ctx    context.Context
	w      io.Writer // what Write writes to
	af     *atomicfile.File
	zw     *zstd.Encoder
	aw     *asyncwrite.Writer
	n      int64
	werr   error
	closed bool
}

// Create starts writing path ("-" for standard output). Writes fail once
// ctx is done. A file gets its final name on Commit; until then, and after
// Abort or a failed Commit, nothing is left at path. An existing device or
// FIFO (/dev/null, a named pipe) is written in place.
func Create(ctx context.Context, path string, opt Options) (*Output, error) {
	if opt.Compress != "" && opt.Compress != "zstd" {
		return nil, fmt.Errorf("unknown output compression %q (only zstd)", opt.Compress)
	}
	if err := Check(path, opt); err != nil {
		return nil, err
	}
	o := &Output{path: path, ctx: ctx}
	if path == "-" {
		o.w = opt.Stdout
		if o.w == nil {
			o.w = os.Stdout
		}
	} else {
		perm := opt.Perm
		if perm == 0 {
			perm = 0o644
		}
		af, err := atomicfile.Create(path, perm)
		if err != nil {
			return nil, &Error{path, err}
		}
		af.NoSync = !opt.Sync
		af.NoReplace = !opt.Force
		o.af, o.w = af, af
	}
	if opt.Compress == "zstd" {
		zw, err := zstd.NewWriter(o.w, zstd.WithEncoderLevel(zstd.SpeedDefault))
		if err != nil {
			o.Abort()
			return nil, err
		}
		o.zw, o.w = zw, zw
	}
	if opt.Buffered {
		o.aw = asyncwrite.NewWriter(o.w, 4<<20, 4)
		o.w = o.aw
	}
	return o, nil
}

// Write writes p (before compression).
func (o *Output) Write(p []byte) (int, error) {
	if o.ctx.Err() != nil {
		return 0, context.Cause(o.ctx)
	}
	n, err := o.w.Write(p)
	o.n += int64(n)
	if err != nil && o.werr == nil {
		o.werr = err
	}
	return n, err
}

// Written returns the bytes given to Write (before compression).
func (o *Output) Written() int64 { return o.n }

// WriteErr returns the first error Write returned, to tell a producer's
// own errors from the output's.
func (o *Output) WriteErr() error { return o.werr }

// Path returns the path as given ("-" for standard output).
func (o *Output) Path() string { return o.path }

// flush ends the buffering and compression stages.
func (o *Output) flush() error {
	var first error
	if o.aw != nil {
		first = o.aw.Close()
	}
	if o.zw != nil {
		if err := o.zw.Close(); first == nil {
			first = err
		}
	}
	return first
}

// Commit completes the output: it flushes the buffers and the compressor
// and gives a file its final name (failing, without Force, if a file
// appeared there meanwhile).
func (o *Output) Commit() error {
	if o.closed {
		return errors.New("output: already committed or aborted")
	}
	o.closed = true
	if err := o.flush(); err != nil {
		if o.af != nil {
			o.af.Abort()
		}
		return err
	}
	if o.af == nil {
		return nil
	}
	if err := o.af.Commit(); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return &Error{o.path, ErrExist}
		}
		return &Error{o.path, err}
	}
	return nil
}

// Abort discards a file output (the final name is left as it was). It
// does nothing after Commit, so it can be deferred.
func (o *Output) Abort() {
	if o.closed {
		return
	}
	o.closed = true
	if o.aw != nil {
		o.aw.Close()
	}
	if o.zw != nil {
		// Release the encoder without ending the stream: a consumer of
		// standard output must not take a cut stream for a whole one.
		o.zw.Reset(io.Discard)
		o.zw.Close()
	}
	if o.af != nil {
		o.af.Abort()
	}
}
