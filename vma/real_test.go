package vma

import (
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
)

// realSample is the only public Proxmox-written VMA (see
// testdata/real/README.md and NOTICE): the first 538112 bytes of a 10 GiB
// backup, so it is valid but incomplete.
const realSample = "testdata/real/dissect-test.vma.gz"

func openReal(t *testing.T) io.Reader {
	t.Helper()
	f, err := os.Open(realSample)
	if err != nil {
		t.Fatalf("real sample missing (vma/testdata/real): %v", err)
	}
	t.Cleanup(func() { f.Close() })
	z, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	return z
}

func TestRealSampleHeader(t *testing.T) {
	r, err := NewReader(openReal(t))
	if err != nil {
		t.Fatal(err)
	}
	h := r.Header()
	if got := h.UUID.String(); got != "04fc12eb-0fed-4322-9aaa-f4e412f68096" {
		t.Errorf("uuid %s", got)
	}
	if h.CTime != 1635680622 || h.Size != 12800 {
		t.Errorf("ctime %d size %d", h.CTime, h.Size)
	}
	if len(h.Configs) != 1 || h.Configs[0].Name != "qemu-server.conf" || len(h.Configs[0].Data) != 417 {
		t.Fatalf("configs %+v", h.Configs)
	}
	if len(h.Devices) != 1 || h.Devices[0] != (Device{ID: 1, Name: "drive-scsi0", Size: 10737418240}) {
		t.Fatalf("devices %+v", h.Devices)
	}
}

// TestRealSampleVerify: every check Proxmox's verify makes passes; the
// completeness check finds cluster 23 missing, as `vma extract` does.
func TestRealSampleVerify(t *testing.T) {
	r, err := NewReader(openReal(t))
	if err != nil {
		t.Fatal(err)
	}
	r.AllowIncomplete()
	dev := make([]byte, 167*ClusterSize)
	var order []uint32
	for {
		c, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		order = append(order, c.Num)
		for i := range BlocksPerCluster {
			if b := c.Block(i); b != nil {
				copy(dev[int(c.Num)*ClusterSize+i*BlockSize:], b)
			}
		}
	}
	if len(order) != 116 || r.Extents() != 2 || r.Offset() != 538112 {
		t.Fatalf("clusters %d extents %d offset %d", len(order), r.Extents(), r.Offset())
	}
	want := []uint32{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 32}
	for i, w := range want {
		if order[i] != w {
			t.Fatalf("stored order starts %v", order[:20])
		}
	}
	if m := r.Missing(); m[1] != 23 {
		t.Errorf("first missing %v, want 23", m)
	}
	sum := func(a, b int) string { s := sha256.Sum256(dev[a:b]); return hex.EncodeToString(s[:]) }
	if got := sum(0, 65536); got != "cf4adcf1933a8c9a0a3ff5588e1400e6beea8a32212b3a35ba08c7b08e4e6b1f" {
		t.Errorf("cluster 0 sha256 %s", got)
	}
	if !isAllZero(dev[65536 : 1<<20]) {
		t.Error("bytes [64 KiB, 1 MiB) not zero")
	}
	if got := sum(1<<20, 1<<20+448<<10); got != "8c989a3aa590795fa919ccb7d1f28651c85f8a0d9ba00ab22cdd9fb760fa7955" {
		t.Errorf("clusters 16-22 sha256 %s", got)
	}

	// Strict: the end-of-archive check names cluster 23 of drive-scsi0.
	r2, _ := NewReader(openReal(t))
	for {
		_, err = r2.Next()
		if err != nil {
			break
		}
	}
	var fe *FormatError
	if !errors.As(err, &fe) || fe.Cluster != 23 || fe.Device != "drive-scsi0" || fe.Offset != 538112 {
		t.Fatalf("strict read: %v", err)
	}
	if !strings.Contains(err.Error(), "missing cluster 23") || !strings.Contains(err.Error(), "drive-scsi0") {
		t.Errorf("message %q", err)
	}
}

func isAllZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

// TestRealSampleRewriteExact writes the sample's header and clusters again,
// in stored order, and expects the very bytes Proxmox wrote: the header and
// blob layout, the extent headers and checksums, 58 clusters per extent.
func TestRealSampleRewriteExact(t *testing.T) {
	raw, err := io.ReadAll(openReal(t))
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewReader(strings.NewReader(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	r.AllowIncomplete()
	var out strings.Builder
	w, err := NewWriter(&out, r.Header())
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
		if err := w.WriteBlocks(c.DevID, c.Num, c.Mask, c.Data); err != nil {
			t.Fatal(err)
		}
	}
	// The sample is a truncated archive, so Close would rightly refuse it;
	// flush the last extent directly.
	if err := w.flush(); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	if len(got) != len(raw) {
		t.Fatalf("rewrite is %d bytes, sample %d", len(got), len(raw))
	}
	for i := range raw {
		if got[i] != raw[i] {
			t.Fatalf("first difference at byte %d", i)
		}
	}
}
