package vma

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// TestDeferData: in DeferData mode, the data read with ReadData equals
// what a normal Reader yields, clusters whose data is not asked for are
// skipped correctly, and a truncated extent fails with a FormatError.
func TestDeferData(t *testing.T) {
	src := t.TempDir()
	writeImages(t, src, map[string]int{"drive-scsi0": 3<<20 + 100, "drive-efidisk0": 540672})
	arch := shuffledArchive(t, src, 11)

	want := map[[2]uint32][]byte{}
	r, err := NewReader(bytes.NewReader(arch))
	if err != nil {
		t.Fatal(err)
	}
	for {
		c, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		want[[2]uint32{uint32(c.DevID), c.Num}] = bytes.Clone(c.Data)
	}

	d, err := NewReader(bytes.NewReader(arch))
	if err != nil {
		t.Fatal(err)
	}
	d.DeferData()
	i, read := 0, 0
	for {
		c, err := d.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if c.Data != nil {
			t.Fatal("Data set in DeferData mode")
		}
		i++
		if i%3 == 0 {
			continue // skipped: Next must step over the data
		}
		buf := make([]byte, len(want[[2]uint32{uint32(c.DevID), c.Num}]))
		if err := d.ReadData(buf); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf, want[[2]uint32{uint32(c.DevID), c.Num}]) {
			t.Fatalf("cluster %d of dev %d differs", c.Num, c.DevID)
		}
		read++
	}
	if read == 0 || d.Offset() != int64(len(arch)) {
		t.Fatalf("read %d clusters, offset %d of %d", read, d.Offset(), len(arch))
	}

	// Cut inside the data of the last extent.
	cut := arch[:len(arch)-1000]
	d, _ = NewReader(bytes.NewReader(cut))
	d.DeferData()
	for {
		c, err := d.Next()
		if err == nil {
			err = d.ReadData(make([]byte, bitsOf(c.Mask)*BlockSize))
		}
		if err == io.EOF {
			t.Fatal("truncated archive read to the end")
		}
		if err != nil {
			var fe *FormatError
			if !errors.As(err, &fe) || fe.Offset != int64(len(cut)) || !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("want a short-extent error at %d, got %v", len(cut), err)
			}
			break
		}
	}
}

func bitsOf(m uint16) int {
	n := 0
	for ; m != 0; m &= m - 1 {
		n++
	}
	return n
}
