package vmatest

import (
	"bytes"
	"fmt"
)

// Comparer is a writer that checks what is written against the bytes
// it expects, as they come: a test compares an archive or image it
// streams (a pull, WriteImage) without holding a second copy. Write fails
// at the first piece that differs or runs past the end.
type Comparer struct {
	want []byte
	off  int
}

// NewComparer returns a Comparer expecting want.
func NewComparer(want []byte) *Comparer { return &Comparer{want: want} }

func (c *Comparer) Write(p []byte) (int, error) {
	if c.off+len(p) > len(c.want) || !bytes.Equal(p, c.want[c.off:c.off+len(p)]) {
		return 0, fmt.Errorf("the bytes written differ from those expected within %d-%d", c.off, c.off+len(p))
	}
	c.off += len(p)
	return len(p), nil
}

// Complete reports whether every expected byte was written.
func (c *Comparer) Complete() bool { return c.off == len(c.want) }

// Written is how many bytes were written (and matched).
func (c *Comparer) Written() int { return c.off }
