package vma

import (
	"errors"
	"fmt"
	"strings"
)

// ImageName returns the file name `vma extract` gives a device's raw
// image: disk-<name>.raw.
func ImageName(device string) string { return "disk-" + device + ".raw" }

// CheckName reports whether name can be used as a plain file name inside
// an output directory: not empty, not . or .., no slash, no NUL. Archive
// names come from untrusted input; Proxmox's extract and other readers
// write them unchecked (path traversal).
func CheckName(name string) error {
	switch {
	case name == "":
		return errors.New("empty name")
	case name == "." || name == "..":
		return fmt.Errorf("name %q is not a file name", name)
	case strings.ContainsAny(name, "/\x00"):
		return fmt.Errorf("name %q contains a slash or NUL", name)
	}
	return nil
}
