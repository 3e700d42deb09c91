package vma_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/vmasync/vmasync/vma"
	"github.com/vmasync/vmasync/vma/vmatest"
)

func testHeader(devs ...vma.Device) *vma.Header {
	return &vma.Header{
		UUID:    vma.UUID{0xde, 0xad, 0xbe, 0xef},
		CTime:   1735689600,
		Configs: []vma.Config{{Name: "qemu-server.conf", Data: []byte("memory: 2048\n")}},
		Devices: devs,
	}
}

func newTestWriter(t *testing.T, out io.Writer, devs ...vma.Device) *vma.Writer {
	t.Helper()
	w, err := vma.NewWriter(out, testHeader(devs...))
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func wantErr(t *testing.T, err error, substr string) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), substr) {
		t.Errorf("got error %v, want one saying %q", err, substr)
	}
}

// TestWriterRefuses: clusters that would make an invalid archive are
// refused, and Close refuses an archive with a missing cluster.
func TestWriterRefuses(t *testing.T) {
	devs := []vma.Device{{Name: "drive-scsi0", Size: 3 * vma.ClusterSize}, {Name: "vmstate", Size: 2 * vma.ClusterSize}}
	w := newTestWriter(t, io.Discard, devs...)
	if err := w.WriteCluster(1, 0, nil); err != nil {
		t.Fatal(err)
	}
	wantErr(t, w.WriteCluster(1, 0, []byte{1}), "written twice")
	wantErr(t, w.WriteBlocks(1, 0, 0, nil), "written twice")
	wantErr(t, w.WriteCluster(3, 0, nil), "unknown device id 3")
	wantErr(t, w.WriteCluster(0, 0, nil), "unknown device id 0")
	wantErr(t, w.WriteCluster(300, 0, nil), "unknown device id 300")
	wantErr(t, w.WriteCluster(1, 3, nil), "beyond the device end")
	wantErr(t, w.WriteCluster(1, 1<<32-1, nil), "beyond the device end")
	wantErr(t, w.WriteCluster(2, 1, nil), "out of order")
	wantErr(t, w.WriteCluster(1, 1, make([]byte, vma.ClusterSize+1)), "exceeds")
	wantErr(t, w.WriteBlocks(1, 1, 0x3, make([]byte, vma.BlockSize)), "bytes of blocks")
	// The refusals did not count as writes.
	if err := w.WriteCluster(1, 2, []byte("data")); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteCluster(2, 0, nil); err != nil {
		t.Fatal(err)
	}
	err := w.Close()
	wantErr(t, err, "cluster 1 was never written")
	wantErr(t, err, "drive-scsi0")
	if err := w.WriteCluster(1, 1, nil); err == nil {
		t.Error("write after a failed Close accepted")
	}

	// A missing vmstate cluster is an incomplete stream too.
	w = newTestWriter(t, io.Discard, devs...)
	for c := range uint32(3) {
		if err := w.WriteCluster(1, c, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.WriteCluster(2, 0, nil); err != nil {
		t.Fatal(err)
	}
	wantErr(t, w.Close(), "vmstate")

	// Write after Close.
	var out bytes.Buffer
	w = newTestWriter(t, &out, vma.Device{Name: "drive-scsi0", Size: 100})
	if err := w.WriteCluster(1, 0, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	wantErr(t, w.WriteCluster(1, 0, nil), "after Close")
	if err := w.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestWriterRefusesHeaders: headers Proxmox's writer would not write.
func TestWriterRefusesHeaders(t *testing.T) {
	for name, h := range map[string]*vma.Header{
		"empty device name": testHeader(vma.Device{Name: "", Size: 1}),
		"zero size":         testHeader(vma.Device{Name: "d", Size: 0}),
		"size beyond 2^48":  testHeader(vma.Device{Name: "d", Size: vma.MaxDeviceSize + 1}),
		"id 255":            testHeader(vma.Device{ID: 255, Name: "d", Size: 1}),
		"id used twice":     testHeader(vma.Device{ID: 1, Name: "a", Size: 1}, vma.Device{ID: 1, Name: "b", Size: 1}),
		"empty config name": {Configs: []vma.Config{{Name: "", Data: nil}}},
		"config too large":  {Configs: []vma.Config{{Name: "c", Data: make([]byte, vma.MaxBlobSize+1)}}},
	} {
		if _, err := vma.NewWriter(io.Discard, h); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// readBack reads an archive the Writer wrote and returns its only
// device's clusters by number.
func readBack(t *testing.T, data []byte) map[uint32]storedCluster {
	t.Helper()
	_, cs := readAll(t, data)
	m := map[uint32]storedCluster{}
	for _, c := range cs {
		m[c.Num] = c
	}
	return m
}

// TestWriterLastPartialCluster: garbage past the device end handed to
// WriteCluster or WriteBlocks is not stored: mask bits of blocks past the
// end are cleared and the straddling block's tail is zeroed.
func TestWriterLastPartialCluster(t *testing.T) {
	garbage := bytes.Repeat([]byte{0xee}, vma.ClusterSize)
	for _, tc := range []struct {
		size     uint64
		wantMask uint16
	}{
		{vmatest.EFIDiskSize, 0x000f},           // 4 whole blocks in the last cluster
		{vmatest.EFIDiskSize + 100, 0x001f},     // + a straddling block with 100 bytes
		{3*vma.ClusterSize + 1, 0x0001},         // one byte
		{3*vma.ClusterSize - 512, 0xffff},       // the last block straddles
		{2*vma.ClusterSize + 12345, 0x0007 | 8}, // 3 blocks + 57 bytes
	} {
		last := uint32((tc.size - 1) / vma.ClusterSize)
		inLast := int(tc.size - uint64(last)*vma.ClusterSize)
		for _, mode := range []string{"WriteCluster", "WriteBlocks"} {
			var out bytes.Buffer
			w := newTestWriter(t, &out, vma.Device{Name: "drive-efidisk0", Size: tc.size})
			for c := range last {
				if err := w.WriteCluster(1, c, nil); err != nil {
					t.Fatal(err)
				}
			}
			var err error
			if mode == "WriteCluster" {
				err = w.WriteCluster(1, last, garbage)
			} else {
				err = w.WriteBlocks(1, last, 0xffff, garbage)
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			c := readBack(t, out.Bytes())[last]
			if c.Mask != tc.wantMask {
				t.Errorf("size %d %s: mask %#04x, want %#04x", tc.size, mode, c.Mask, tc.wantMask)
				continue
			}
			// The stored bytes: garbage inside the device, zero past it.
			want := make([]byte, len(c.Data))
			copy(want, garbage[:inLast])
			if !bytes.Equal(c.Data, want) {
				t.Errorf("size %d %s: bytes past the device end are stored", tc.size, mode)
			}
		}
	}
}

// TestWriterZeroBlocks: zero blocks are left out of the mask and the data,
// from WriteCluster and from WriteBlocks alike; a short WriteCluster counts
// the rest of the cluster as zero.
func TestWriterZeroBlocks(t *testing.T) {
	cluster := make([]byte, vma.ClusterSize)
	for _, i := range []int{1, 7, 15} {
		cluster[i*vma.BlockSize+100] = byte(i)
	}
	var out bytes.Buffer
	w := newTestWriter(t, &out, vma.Device{Name: "d", Size: 4 * vma.ClusterSize})
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(w.WriteCluster(1, 0, cluster))
	must(w.WriteBlocks(1, 1, 0xffff, cluster))
	must(w.WriteCluster(1, 2, cluster[:2*vma.BlockSize]))
	must(w.WriteBlocks(1, 3, 0x0003, make([]byte, 2*vma.BlockSize)))
	must(w.Close())
	got := readBack(t, out.Bytes())
	for num, want := range map[uint32]uint16{0: 0x8082, 1: 0x8082, 2: 0x0002, 3: 0} {
		if got[num].Mask != want {
			t.Errorf("cluster %d: mask %#04x, want %#04x", num, got[num].Mask, want)
		}
	}
}

// TestWriterNoDevices: an archive without devices is the header and one
// empty extent, as Proxmox writes it.
func TestWriterNoDevices(t *testing.T) {
	var out bytes.Buffer
	w := newTestWriter(t, &out)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	h := testHeader()
	want := append(vmatest.EncodeHeader(h), vmatest.EncodeExtent(h.UUID, nil, nil)...)
	if !bytes.Equal(out.Bytes(), want) {
		t.Errorf("got %d bytes: %s", out.Len(), firstDiff(out.Bytes(), want))
	}
}

type failWriter struct{ n int }

func (f *failWriter) Write(p []byte) (int, error) {
	if f.n -= len(p); f.n < 0 {
		return 0, errors.New("disk full")
	}
	return len(p), nil
}

// TestWriterWriteError: an error of the underlying writer is returned and
// sticks.
func TestWriterWriteError(t *testing.T) {
	w := newTestWriter(t, &failWriter{n: 100}, vma.Device{Name: "d", Size: 100 * vma.ClusterSize})
	var err error
	for c := uint32(0); c < 100 && err == nil; c++ {
		err = w.WriteCluster(1, c, nil)
	}
	wantErr(t, err, "disk full")
	wantErr(t, w.Close(), "disk full")
}

// TestWriterFirstBlobOf510Bytes: the first blob with len+2 a multiple of
// 512. vma-writer.c overflows its blob table by one byte there (the NUL of
// the name); when another blob follows, the table grows and the lost byte
// is zero anyway, but when the name is the only blob (no configs, one
// device) the header is inconsistent. vma.Writer must still write an
// archive that reads back.
func TestWriterFirstBlobOf510Bytes(t *testing.T) {
	name := strings.Repeat("n", 509) // 509 + NUL + 2-byte length = 512
	for _, h := range []*vma.Header{
		{Configs: []vma.Config{{Name: name, Data: []byte("x")}}, Devices: []vma.Device{{Name: "drive-scsi0", Size: 4096}}},
		{Devices: []vma.Device{{Name: name, Size: 4096}}},
	} {
		t.Run(fmt.Sprintf("%d-configs", len(h.Configs)), func(t *testing.T) { testFirstBlob(t, h, name) })
	}
}

func testFirstBlob(t *testing.T, h *vma.Header, name string) {
	var out bytes.Buffer
	w, err := vma.NewWriter(&out, h)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteCluster(1, 0, nil); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	// vmatest's encoder handles the case.
	vt := append(vmatest.EncodeHeader(w.Header()), vmatest.EncodeExtent(h.UUID, nil, nil)...)
	if _, err := vma.NewReader(bytes.NewReader(vt)); err != nil {
		t.Errorf("vmatest.EncodeHeader: %v", err)
	}
	r, err := vma.NewReader(bytes.NewReader(out.Bytes()))
	if err != nil {
		t.Fatalf("the blob table is one byte short (the first blob starts at 1 and its len+2 is "+
			"a multiple of 512): %v", err)
	}
	if c := r.Header().Configs; len(c) > 0 && c[0].Name != name {
		t.Errorf("configs %+v", c)
	}
	if d := r.Header().Devices; len(h.Configs) == 0 && (len(d) != 1 || d[0].Name != name) {
		t.Errorf("devices %+v", d)
	}
	if hb := vmatest.EncodeHeader(w.Header()); !bytes.HasPrefix(out.Bytes(), hb) {
		t.Errorf("headers of vma.Writer and vmatest differ: %s", firstDiff(out.Bytes()[:len(hb)], hb))
	}
}
