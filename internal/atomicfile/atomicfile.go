// Package atomicfile writes a file under a temporary name in its final
// directory and renames it into place only when the write succeeded, so a
// failure never leaves a half-written file under the final name.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// File is an output file being written under a temporary name.
type File struct {
	*os.File
	// NoSync skips the fsync before the rename in Commit. The rename still
	// keeps half-written data from appearing under the final name, but
	// after a power failure the file may be empty or short, as after cp.
	// Leave it false when the rename replaces data that exists nowhere
	// else.
	NoSync bool
	// NoReplace makes Commit fail with an error matching fs.ErrExist
	// instead of replacing a file that appeared at the final name since
	// Create (the file is linked into place, not renamed).
	NoReplace bool
	final     string
	done      bool
	direct    bool // path is a device or FIFO: written in place
}

// Create starts writing path. The data goes to a new temporary file in
// the same directory (so the final rename is atomic); it becomes path only
// on Commit. An existing file at path is replaced on Commit, not before.
// When path names an existing device or FIFO (such as /dev/null or a
// named pipe), it is opened and written directly: renaming over it would
// replace the device node.
func Create(path string, perm os.FileMode) (*File, error) {
	if st, err := os.Stat(path); err == nil && !st.Mode().IsRegular() && !st.IsDir() {
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return nil, err
		}
		return &File{File: f, final: path, direct: true}, nil
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return nil, err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	return &File{File: f, final: path}, nil
}

// Commit flushes the data to stable storage (unless NoSync), closes the
// file and renames it to its final name. On error the temporary file is
// removed.
func (f *File) Commit() error {
	if f.done {
		return fmt.Errorf("atomicfile: %s already committed or aborted", f.final)
	}
	f.done = true
	if f.direct {
		return f.File.Close()
	}
	var err error
	if !f.NoSync {
		err = f.Sync()
	}
	if cerr := f.File.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = f.place()
	}
	if err != nil {
		os.Remove(f.Name())
		return err
	}
	if !f.NoSync {
		// Make the rename itself durable.
		if d, derr := os.Open(filepath.Dir(f.final)); derr == nil {
			d.Sync()
			d.Close()
		}
	}
	return nil
}

// place gives the temporary file its final name.
func (f *File) place() error {
	if !f.NoReplace {
		return os.Rename(f.Name(), f.final)
	}
	err := os.Link(f.Name(), f.final)
	if err == nil {
		return os.Remove(f.Name())
	}
	if errors.Is(err, fs.ErrExist) {
		return err
	}
	// No hard links on this file system: check, then rename.
	if _, lerr := os.Lstat(f.final); lerr == nil {
		return &fs.PathError{Op: "rename", Path: f.final, Err: fs.ErrExist}
	}
	return os.Rename(f.Name(), f.final)
}

// Abort closes and removes the temporary file; the final name is left as
// it was. It is safe to call after Commit (it then does nothing), so it
// can be deferred.
func (f *File) Abort() {
	if f.done {
		return
	}
	f.done = true
	f.File.Close()
	if !f.direct {
		os.Remove(f.Name())
	}
}

// Final returns the path the file gets on Commit.
func (f *File) Final() string { return f.final }
