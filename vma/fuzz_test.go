package vma_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/vmasync/vmasync/vma"
	"github.com/vmasync/vmasync/vma/vmatest"
)

// FuzzReader reads any input to the end, strictly and with
// AllowIncomplete, as it is and with its checksums recomputed (so that
// mutations reach the checks behind them). It must never panic, every
// error must be a *vma.FormatError, what it yields must be consistent, and
// an input under 1 MiB must not make it allocate more than 80 MiB. The seed
// corpus is in testdata/fuzz/FuzzReader (see TestWriteFuzzCorpus).
func FuzzReader(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzRead(t, data)
		if fixed := vmatest.FixChecksums(data); !bytes.Equal(fixed, data) {
			fuzzRead(t, fixed)
		}
	})
}

func fuzzRead(t *testing.T, data []byte) {
	t.Helper()
	// Strict, measuring allocation only.
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	strictN, strictErr := countClusters(data)
	runtime.ReadMemStats(&m1)
	if a := m1.TotalAlloc - m0.TotalAlloc; len(data) < 1<<20 && a > 80<<20 {
		t.Fatalf("reading %d bytes allocated %d MiB", len(data), a>>20)
	}
	checkFormatError(t, data, strictErr)

	// AllowIncomplete, checking every cluster.
	r, err := vma.NewReader(bytes.NewReader(data))
	if err != nil {
		if err.Error() != strictErr.Error() {
			t.Fatalf("header errors differ: %v / %v", err, strictErr)
		}
		return
	}
	r.AllowIncomplete()
	h := r.Header()
	for _, d := range h.Devices {
		if d.ID < 1 || d.ID > vma.MaxDeviceID || d.Size == 0 || d.Size > vma.MaxDeviceSize {
			t.Fatalf("device %+v", d)
		}
	}
	seen := map[uint64]bool{}
	n, lastExtent := 0, 0
	for {
		c, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			checkFormatError(t, data, err)
			if err.Error() != strictErr.Error() {
				t.Fatalf("errors differ: %v / %v", err, strictErr)
			}
			if _, err2 := r.Next(); err2 != err {
				t.Fatalf("error not sticky: %v then %v", err, err2)
			}
			return
		}
		n++
		d := h.Device(c.DevID)
		if d == nil {
			t.Fatalf("cluster of unknown device %d", c.DevID)
		}
		if !d.IsVMState() && uint64(c.Num) >= d.Clusters() {
			t.Fatalf("cluster %d beyond %d", c.Num, d.Clusters())
		}
		if !d.IsVMState() && c.Mask != 0 && uint64(c.Num)*vma.ClusterSize+uint64(15-bits.LeadingZeros16(c.Mask))*vma.BlockSize >= d.Size {
			t.Fatalf("cluster %d mask %#x beyond size %d", c.Num, c.Mask, d.Size)
		}
		key := uint64(c.DevID)<<32 | uint64(c.Num)
		if seen[key] {
			t.Fatalf("duplicate %d:%d", c.DevID, c.Num)
		}
		seen[key] = true
		if len(c.Data) != bits.OnesCount16(c.Mask)*vma.BlockSize ||
			c.Offset < 0 || c.Offset+int64(len(c.Data)) > int64(len(data)) ||
			!bytes.Equal(data[c.Offset:c.Offset+int64(len(c.Data))], c.Data) {
			t.Fatalf("cluster %d:%d data/offset inconsistent", c.DevID, c.Num)
		}
		if c.Extent < lastExtent {
			t.Fatalf("extent index went back")
		}
		lastExtent = c.Extent
	}
	if r.Offset() != int64(len(data)) {
		t.Fatalf("clean end at %d of %d bytes", r.Offset(), len(data))
	}
	missing := r.Missing()
	switch {
	case strictErr == io.EOF:
		if len(missing) != 0 || strictN != n {
			t.Fatalf("strict read ok but missing %v, %d/%d clusters", missing, strictN, n)
		}
	case len(missing) == 0 || !strings.Contains(strictErr.Error(), "missing cluster"):
		t.Fatalf("complete with AllowIncomplete (missing %v) but strict: %v", missing, strictErr)
	}
}

// countClusters reads data strictly to the end.
func countClusters(data []byte) (int, error) {
	r, err := vma.NewReader(bytes.NewReader(data))
	if err != nil {
		return 0, err
	}
	n := 0
	for {
		if _, err := r.Next(); err != nil {
			return n, err
		}
		n++
	}
}

func checkFormatError(t *testing.T, data []byte, err error) {
	t.Helper()
	if err == io.EOF {
		return
	}
	var fe *vma.FormatError
	if !errors.As(err, &fe) || !errors.Is(err, vma.ErrCorrupt) {
		t.Fatalf("error %T %v is not a FormatError", err, err)
	}
	if fe.Offset < 0 || fe.Offset > int64(len(data)) {
		t.Fatalf("offset %d outside the %d-byte input: %v", fe.Offset, len(data), err)
	}
	if fe.Msg == "" {
		t.Fatal("empty message")
	}
}

// tinySpecs are small archives for the seed corpus.
func tinySpecs() []vmatest.NamedSpec {
	return []vmatest.NamedSpec{
		{Name: "corruption-base", Spec: vmatest.CorruptionSpec()},
		{Name: "hostile-names", Spec: vmatest.HostileSpec()},
		{Name: "no-devices", Spec: vmatest.Spec{Seed: 1}},
		{Name: "no-configs", Spec: vmatest.Spec{Configs: []vma.Config{}, Seed: 2,
			Disks: []vmatest.Disk{{Name: "drive-scsi0", Size: 100, Content: vmatest.Text}}}},
		{Name: "unaligned", Spec: vmatest.Spec{Seed: 3, Order: vmatest.CreateLike, Disks: []vmatest.Disk{
			{Name: "drive-scsi0", Size: 1, Content: vmatest.Text},
			{Name: "drive-scsi1", Size: 3*vma.BlockSize + 100, Content: vmatest.Sparse},
			{Name: "drive-efidisk0", Size: vmatest.EFIDiskSize, Content: vmatest.Zero},
		}}},
		{Name: "59-per-extent", Spec: vmatest.Spec{Seed: 4, ClustersPerExtent: 59, Order: vmatest.ProxmoxLike,
			PullForward: 0.1, Disks: []vmatest.Disk{
				{Name: "drive-scsi0", Size: 5 << 20, Content: vmatest.Zero},
				{Name: "drive-tpmstate0-backup", Size: vmatest.TPMStateSize, Content: vmatest.Zero},
			}}},
		{Name: "one-per-extent", Spec: vmatest.Spec{Seed: 5, ClustersPerExtent: 1, Disks: []vmatest.Disk{
			{Name: "drive-scsi0", Size: 5 * vma.ClusterSize, Content: vmatest.Zero},
			{Name: vma.VMStateName, Size: 3 * vma.ClusterSize, Content: vmatest.Zero},
		}}},
	}
}

// TestWriteFuzzCorpus regenerates the committed seed corpus of FuzzReader
// (tiny archives, clusters scattered over a huge device, and every
// corruption of the CorruptionSpec archive) when
// VMA_WRITE_FUZZ_CORPUS=1. Files are in Go's corpus format and stay under
// 100 KiB.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("VMA_WRITE_FUZZ_CORPUS") != "1" {
		t.Skip("set VMA_WRITE_FUZZ_CORPUS=1 to regenerate testdata/fuzz/FuzzReader/seed-*")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzReader")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)
		if len(body) >= 100<<10 {
			t.Errorf("%s: corpus file of %d bytes", name, len(body))
		}
		if err := os.WriteFile(filepath.Join(dir, "seed-"+name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var base []byte
	for _, s := range tinySpecs() {
		data := genArchive(t, s.Spec)
		if s.Name == "corruption-base" {
			base = data
		}
		write(s.Name, data)
	}
	write("scattered-clusters", scatteredArchive(16<<10))
	for _, k := range vmatest.Corruptions() {
		d, err := vmatest.Corrupt(base, k)
		if err != nil {
			t.Fatal(err)
		}
		write(k.String(), d.Data)
	}
}
