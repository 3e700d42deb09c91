package vma

import (
	"errors"
	"fmt"
)

// ErrCorrupt is matched (with errors.Is) by every *FormatError.
var ErrCorrupt = errors.New("corrupt vma archive")

// A FormatError reports an archive that breaks the VMA format, with where
// the problem is. Msg names the device and cluster where they apply.
type FormatError struct {
	// Offset is the byte offset in the uncompressed archive: of the field
	// at fault where there is one, else of the extent or of the end of the
	// archive.
	Offset int64
	// Extent is the index of the extent (0-based), or -1 for the header.
	Extent int
	// DevID and Device name the device concerned, if any (DevID 0: none).
	DevID  int
	Device string
	// Cluster is the cluster number concerned, or -1.
	Cluster int64
	// Msg says what is wrong.
	Msg string
	// Err is an underlying cause such as io.ErrUnexpectedEOF, or nil.
	Err error
}

// Error returns a one-line description: what is wrong and at which byte.
func (e *FormatError) Error() string {
	where := fmt.Sprintf("byte offset %d", e.Offset)
	if e.Extent >= 0 {
		where += fmt.Sprintf(" (extent %d)", e.Extent)
	}
	return "vma: " + where + ": " + e.Msg
}

// Unwrap returns the underlying cause.
func (e *FormatError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrCorrupt) true for every FormatError.
func (e *FormatError) Is(target error) bool { return target == ErrCorrupt }

// devLabel formats a device for messages: `drive-scsi0 (id 1)`.
func devLabel(id int, name string) string {
	if name == "" {
		return fmt.Sprintf("device id %d", id)
	}
	return fmt.Sprintf("device %q (id %d)", name, id)
}
