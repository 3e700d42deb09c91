// Package backend is the storage interface of a vmasync repository: a flat
// namespace of named, immutable objects that can be saved whole, read by
// range, listed with their sizes and removed. It knows nothing of packs,
// indexes or manifests. Implementations: rclonebe (any rclone remote), Mem
// (in memory, for tests) and Fault (a wrapper that fails or "crashes" at a
// chosen call, for the crash-point tests).
package backend

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrNotFound is returned (wrapped) for an object that does not exist.
var ErrNotFound = errors.New("object not found")

// ErrShort is returned (wrapped) by Load when the object ends before the
// requested range does.
var ErrShort = errors.New("object shorter than the requested range")

// Entry is one listed object.
type Entry struct {
	Name    string
	Size    int64
	ModTime time.Time
}

// Backend stores the objects of one repository. Names are slash-separated
// paths relative to the repository's root ("packs/ab/ab12….pack").
//
// Save must make an object appear complete or not at all: a crash, a kill
// or a lost connection during Save leaves either the whole object under
// its name, or nothing under that name (at most a temporary object whose
// name contains TempMarker, which listings of a repository ignore and
// prune sweeps). Save replaces an existing object of the same name whole.
type Backend interface {
	// Save stores data as name, atomically (see above).
	Save(ctx context.Context, name string, data []byte) error
	// Load returns n bytes of name from offset off. It fails with
	// ErrNotFound for a missing object and ErrShort when fewer than n
	// bytes exist from off.
	Load(ctx context.Context, name string, off, n int64) ([]byte, error)
	// Stat returns the object's size, or ErrNotFound.
	Stat(ctx context.Context, name string) (int64, error)
	// List calls fn for every object below dir (recursively), in no
	// particular order. A missing dir lists nothing.
	List(ctx context.Context, dir string, fn func(Entry) error) error
	// Remove deletes name; a missing object is not an error.
	Remove(ctx context.Context, name string) error
	// String names the storage for messages (a remote, a directory).
	String() string
}

// TempMarker is part of the name of every temporary object a backend
// writes while saving (name + TempMarker + random suffix).
const TempMarker = ".tmp-"

// IsTemp reports whether name is a temporary object left by a Save.
func IsTemp(name string) bool { return strings.Contains(name, TempMarker) }

// LoadAll reads a whole object of at most limit bytes: a larger one is an
// error before anything is downloaded, so a hostile or damaged object
// cannot make the caller allocate more than the format allows.
func LoadAll(ctx context.Context, b Backend, name string, limit int64) ([]byte, error) {
	size, err := b.Stat(ctx, name)
	if err != nil {
		return nil, err
	}
	if size > limit {
		return nil, fmt.Errorf("%s: %d bytes, more than the %d an object of its kind may have", name, size, limit)
	}
	return b.Load(ctx, name, 0, size)
}

// ErrTransient is matched (errors.Is) by errors that may go away when the
// call is tried again (network and server errors).
var ErrTransient = errors.New("transient backend error")

// Mkdirer is implemented by backends that must create the repository's
// root directory before the first Save.
type Mkdirer interface {
	Mkdir(ctx context.Context) error
}
