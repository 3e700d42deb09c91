package vma_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"iter"
	"math/bits"
	"math/rand/v2"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/vmasync/vmasync/vma"
	"github.com/vmasync/vmasync/vma/vmatest"
)

// genArchive writes the archive of s to memory.
func genArchive(t testing.TB, s vmatest.Spec) []byte {
	t.Helper()
	b, err := vmatest.Archive(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// storedCluster is a copy of a cluster a Reader yielded.
type storedCluster struct {
	DevID  int
	Num    uint32
	Mask   uint16
	Data   []byte
	Extent int
}

// readAll reads an archive strictly and returns its header and clusters.
func readAll(t testing.TB, data []byte) (*vma.Header, []storedCluster) {
	t.Helper()
	r, err := vma.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("NewReader: %v", err)
	}
	var cs []storedCluster
	for {
		c, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		cs = append(cs, storedCluster{c.DevID, c.Num, c.Mask, bytes.Clone(c.Data), c.Extent})
	}
	return r.Header(), cs
}

// checkArchive reads data strictly and checks it against s: the header,
// the stored order, every cluster exactly once with the contents
// ClusterData gives, zero blocks left out, nothing past the device end, at
// most ClustersPerExtent clusters per extent, and the images WriteImage
// writes.
func checkArchive(t *testing.T, s vmatest.Spec, data []byte, checkOrder bool) {
	t.Helper()
	r, err := vma.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("NewReader: %v", err)
	}
	want := s.Header()
	if got := r.Header(); !reflect.DeepEqual(*got, want) {
		t.Fatalf("header\n got %+v\nwant %+v", *got, want)
	}
	cpe := s.ClustersPerExtent
	if cpe == 0 {
		cpe = vma.ProxmoxClustersPerExtent
	}
	images := make([][]byte, len(s.Disks))
	seen := make([][]bool, len(s.Disks))
	total := 0
	for i, d := range s.Disks {
		images[i] = make([]byte, d.Size)
		seen[i] = make([]bool, (d.Size+vma.ClusterSize-1)/vma.ClusterSize)
		total += len(seen[i])
	}
	next, stop := iter.Pull2(s.StoredOrder())
	defer stop()
	perExtent := map[int]int{}
	buf := make([]byte, vma.ClusterSize)
	n := 0
	for {
		c, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("Next after %d clusters: %v", n, err)
		}
		n++
		disk := c.DevID - 1
		if disk < 0 || disk >= len(s.Disks) || int(c.Num) >= len(seen[disk]) {
			t.Fatalf("cluster %d of device %d out of range", c.Num, c.DevID)
		}
		if seen[disk][c.Num] {
			t.Fatalf("device %d cluster %d twice", c.DevID, c.Num)
		}
		seen[disk][c.Num] = true
		if checkOrder {
			wd, wc, ok := next()
			if !ok || wd != disk || wc != uint64(c.Num) {
				t.Fatalf("stored order: got %d:%d, want %d:%d", disk, c.Num, wd, wc)
			}
		}
		perExtent[c.Extent]++
		if len(c.Data) != bits.OnesCount16(c.Mask)*vma.BlockSize {
			t.Fatalf("cluster %d: %d data bytes for mask %#x", c.Num, len(c.Data), c.Mask)
		}
		if !bytes.Equal(data[c.Offset:c.Offset+int64(len(c.Data))], c.Data) {
			t.Fatalf("cluster %d: Offset %d does not point at its data", c.Num, c.Offset)
		}
		wantData := s.ClusterData(disk, uint64(c.Num), buf)
		if m := vmatest.Mask(wantData); m != c.Mask {
			t.Fatalf("device %d cluster %d: mask %#04x, want %#04x (zero blocks left out, nothing past the end)", c.DevID, c.Num, c.Mask, m)
		}
		img := images[disk][int(c.Num)*vma.ClusterSize:]
		for i := range vma.BlocksPerCluster {
			blk := c.Block(i)
			if blk == nil {
				continue
			}
			inDev := len(wantData) - i*vma.BlockSize
			if inDev < vma.BlockSize && !isZeroBytes(blk[inDev:]) {
				t.Fatalf("device %d cluster %d: straddling block %d has data past the device end", c.DevID, c.Num, i)
			}
			copy(img[i*vma.BlockSize:min(len(img), (i+1)*vma.BlockSize)], blk)
		}
		if got := img[:len(wantData)]; !bytes.Equal(got, wantData) {
			t.Fatalf("device %d cluster %d differs from ClusterData", c.DevID, c.Num)
		}
	}
	if n != total {
		t.Fatalf("%d clusters, want %d", n, total)
	}
	wantExtents := max(1, (total+cpe-1)/cpe)
	if r.Extents() != wantExtents {
		t.Errorf("%d extents, want %d", r.Extents(), wantExtents)
	}
	for e, k := range perExtent {
		if k > cpe || (k != cpe && e != wantExtents-1) {
			t.Errorf("extent %d holds %d clusters (at most %d, only the last fewer)", e, k, cpe)
		}
	}
	if r.Offset() != int64(len(data)) {
		t.Errorf("read %d of %d bytes", r.Offset(), len(data))
	}
	for i := range s.Disks {
		img := vmatest.NewComparer(images[i])
		if err := s.WriteImage(img, i); err != nil || !img.Complete() {
			t.Errorf("disk %d: reassembled image differs from WriteImage (%v)", i, err)
		}
	}
}

func isZeroBytes(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

func forEachShape(t *testing.T, f func(t *testing.T, s vmatest.Spec)) {
	for _, sh := range vmatest.Shapes() {
		for _, o := range vmatest.Orders {
			s := sh.Spec
			s.Order = o
			t.Run(sh.Name+"/"+o.String(), func(t *testing.T) { f(t, s) })
		}
	}
}

// TestReadShapes reads every standard shape in every order.
func TestReadShapes(t *testing.T) {
	t.Parallel()
	forEachShape(t, func(t *testing.T, s vmatest.Spec) {
		checkArchive(t, s, genArchive(t, s), true)
	})
}

// TestWriterRoundTrip feeds the clusters a Reader yields to vma.Writer: in
// stored order the output must be byte-identical (the two encoders agree);
// shuffled it must read back to the same images.
func TestWriterRoundTrip(t *testing.T) {
	t.Parallel()
	forEachShape(t, func(t *testing.T, s vmatest.Spec) {
		data := genArchive(t, s)
		h, cs := readAll(t, data)
		rewrite := func(cs []storedCluster) []byte {
			out := bytes.NewBuffer(make([]byte, 0, len(data)+vma.ClusterSize)) // about its size
			w, err := vma.NewWriter(out, h)
			if err != nil {
				t.Fatal(err)
			}
			if s.ClustersPerExtent != 0 {
				if err := w.SetClustersPerExtent(s.ClustersPerExtent); err != nil {
					t.Fatal(err)
				}
			}
			for _, c := range cs {
				if err := w.WriteBlocks(c.DevID, c.Num, c.Mask, c.Data); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			return out.Bytes()
		}
		if got := rewrite(cs); !bytes.Equal(got, data) {
			t.Errorf("rewrite in stored order differs from the original: %s", firstDiff(got, data))
		}
		rng := rand.New(rand.NewPCG(s.Seed, 99))
		rng.Shuffle(len(cs), func(i, j int) { cs[i], cs[j] = cs[j], cs[i] })
		// vmstate must stay in order: put its clusters back in order at the
		// positions the shuffle gave them.
		var pos []int
		var state []storedCluster
		for i, c := range cs {
			if h.Device(c.DevID).IsVMState() {
				pos = append(pos, i)
				state = append(state, c)
			}
		}
		slices.SortFunc(state, func(a, b storedCluster) int { return int(a.Num) - int(b.Num) })
		for i, p := range pos {
			cs[p] = state[i]
		}
		checkArchive(t, s, rewrite(cs), false)
	})
}

// TestEncodersAgree: vma.Writer fed with ClusterData in vmatest's stored
// order writes the very bytes vmatest's own encoder writes.
func TestEncodersAgree(t *testing.T) {
	t.Parallel()
	forEachShape(t, func(t *testing.T, s vmatest.Spec) {
		want := genArchive(t, s)
		h := s.Header()
		out := bytes.NewBuffer(make([]byte, 0, len(want)))
		w, err := vma.NewWriter(out, &h)
		if err != nil {
			t.Fatal(err)
		}
		if s.ClustersPerExtent != 0 {
			if err := w.SetClustersPerExtent(s.ClustersPerExtent); err != nil {
				t.Fatal(err)
			}
		}
		if w.Header().Size != h.Size {
			t.Errorf("header size: vma.Writer %d, vmatest %d", w.Header().Size, h.Size)
		}
		buf := make([]byte, vma.ClusterSize)
		for disk, num := range s.StoredOrder() {
			if err := w.WriteCluster(disk+1, uint32(num), s.ClusterData(disk, num, buf)); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if got := out.Bytes(); !bytes.Equal(got, want) {
			t.Errorf("vma.Writer and vmatest disagree: %s", firstDiff(got, want))
		}
	})
}

func firstDiff(a, b []byte) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return fmt.Sprintf("first difference at byte %d (%#02x vs %#02x), lengths %d and %d", i, a[i], b[i], len(a), len(b))
		}
	}
	return fmt.Sprintf("lengths %d and %d", len(a), len(b))
}

// corruptionMsg is a part of the message the Reader must give.
var corruptionMsg = map[vmatest.Corruption]string{
	vmatest.HeaderChecksum:         "wrong header checksum",
	vmatest.HeaderMagic:            "wrong magic",
	vmatest.HeaderVersion:          "version 2",
	vmatest.HeaderSizeSmall:        "header size 12288",
	vmatest.HeaderSizeHuge:         "header size 4294967280",
	vmatest.HeaderSizePastEnd:      "truncated header",
	vmatest.BlobOffsetLow:          "blob buffer offset 12287",
	vmatest.BlobOffsetHigh:         "blob buffer size",
	vmatest.BlobOffsetWrap:         "blob buffer size",
	vmatest.BlobSizeHigh:           "blob buffer size",
	vmatest.ConfigNamePointer:      "config slot 0",
	vmatest.ConfigDataPointer:      "config slot 0",
	vmatest.DeviceSizeAbsurd:       "size 1152921504606846976",
	vmatest.DeviceSizeMax:          "missing cluster",
	vmatest.ExtentChecksum:         "extent header checksum",
	vmatest.ExtentUUID:             "extent uuid",
	vmatest.ExtentMagic:            "magic",
	vmatest.ExtentReserved:         "reserved",
	vmatest.BlockCountHigh:         "block_count",
	vmatest.BlockCountLow:          "too many blocks",
	vmatest.BlockCountMax:          "block_count 945",
	vmatest.UnknownDevice:          "unknown device id 255",
	vmatest.ClusterBeyondEnd:       "beyond the device end",
	vmatest.BlockBeyondEnd:         "block 15",
	vmatest.DuplicateInExtent:      "duplicate cluster",
	vmatest.DuplicateAcrossExtents: "duplicate cluster",
	vmatest.MissingZeroCluster:     "missing cluster",
	vmatest.MissingDataCluster:     "missing cluster",
	vmatest.VMStateOrder:           "out of order vmstate",
	vmatest.TruncEmpty:             "empty",
	vmatest.TruncHeader:            "truncated header",
	vmatest.TruncHeaderBlob:        "truncated header",
	vmatest.TruncExtentHeader:      "short extent header",
	vmatest.TruncExtentData:        "short extent",
	vmatest.TruncAtExtent:          "missing cluster",
}

// headerOffset pins the offsets of the header corruptions (fixed fields of
// the format), independently of vmatest.Damage.
var headerOffset = map[vmatest.Corruption]int64{
	vmatest.HeaderChecksum:    32,
	vmatest.HeaderMagic:       0,
	vmatest.HeaderVersion:     4,
	vmatest.HeaderSizeSmall:   56,
	vmatest.HeaderSizeHuge:    56,
	vmatest.BlobOffsetLow:     48,
	vmatest.BlobOffsetHigh:    52,
	vmatest.BlobOffsetWrap:    52,
	vmatest.BlobSizeHigh:      52,
	vmatest.ConfigNamePointer: 2044,
	vmatest.ConfigDataPointer: 3068,
	vmatest.DeviceSizeAbsurd:  4096 + 32 + 8,
	vmatest.TruncEmpty:        0,
	vmatest.TruncHeader:       6000,
}

// extentField pins the offsets of extent corruptions relative to their
// extent's start; -1: a blockinfo slot.
var extentField = map[vmatest.Corruption]int64{
	vmatest.ExtentChecksum:         24,
	vmatest.ExtentUUID:             8,
	vmatest.ExtentMagic:            0,
	vmatest.ExtentReserved:         4,
	vmatest.BlockCountHigh:         6,
	vmatest.BlockCountMax:          6,
	vmatest.TruncExtentHeader:      0,
	vmatest.BlockCountLow:          -1,
	vmatest.UnknownDevice:          -1,
	vmatest.ClusterBeyondEnd:       -1,
	vmatest.BlockBeyondEnd:         -1,
	vmatest.DuplicateInExtent:      -1,
	vmatest.DuplicateAcrossExtents: -1,
	vmatest.VMStateOrder:           -1,
}

// readErr reads data to the end and returns whether an error came from
// NewReader, the extents of the clusters yielded, and the final error (nil
// at a clean end).
func readErr(data []byte, allowIncomplete bool) (r *vma.Reader, inHeader bool, extents []int, err error) {
	r, err = vma.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, true, nil, err
	}
	if allowIncomplete {
		r.AllowIncomplete()
	}
	for {
		c, err := r.Next()
		if err == io.EOF {
			return r, false, extents, nil
		}
		if err != nil {
			return r, false, extents, err
		}
		extents = append(extents, c.Extent)
	}
}

// TestCorruptions reads every kind of damaged archive: the strict Reader
// must return a *vma.FormatError (never panic) matching vma.ErrCorrupt that
// names the problem, points at the damaged byte, names the device and
// cluster where they apply, and must not allocate by the claimed sizes.
func TestCorruptions(t *testing.T) {
	base := genArchive(t, vmatest.CorruptionSpec())
	// Extent starts of the undamaged archive, from where the first
	// cluster's data of each extent begins.
	extStart := map[int]int64{}
	{
		r, err := vma.NewReader(bytes.NewReader(base))
		if err != nil {
			t.Fatal(err)
		}
		for {
			c, err := r.Next()
			if err != nil {
				break
			}
			if _, ok := extStart[c.Extent]; !ok {
				extStart[c.Extent] = c.Offset - vma.ExtentHeaderSize
			}
		}
	}
	for _, k := range vmatest.Corruptions() {
		t.Run(k.String(), func(t *testing.T) {
			d, err := vmatest.Corrupt(base, k)
			if err != nil {
				t.Fatal(err)
			}
			// The damage is where it should be, independently of vmatest.
			if off, ok := headerOffset[k]; ok && d.Offset != off {
				t.Errorf("vmatest: damage offset %d, want %d", d.Offset, off)
			}
			if f, ok := extentField[k]; ok {
				rel := d.Offset - extStart[d.Extent]
				if f >= 0 && rel != f || f < 0 && (rel < 40 || rel >= vma.ExtentHeaderSize || (rel-40)%8 != 0) {
					t.Errorf("vmatest: damage at extent %d + %d, want field %d", d.Extent, rel, f)
				}
			}

			var m0, m1 runtime.MemStats
			runtime.ReadMemStats(&m0)
			_, inHeader, extents, err := readErr(d.Data, false)
			runtime.ReadMemStats(&m1)
			if a := m1.TotalAlloc - m0.TotalAlloc; a > 80<<20 {
				t.Errorf("reading %d bytes allocated %d MiB", len(d.Data), a>>20)
			}
			var fe *vma.FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("strict read: got %v, want a *vma.FormatError", err)
			}
			if !errors.Is(err, vma.ErrCorrupt) {
				t.Errorf("errors.Is(err, ErrCorrupt) false for %v", err)
			}
			t.Logf("%v", err)
			if want := d.Extent == -1 && !d.Incomplete; inHeader != want {
				t.Errorf("error from NewReader: %v, want %v", inHeader, want)
			}
			for _, e := range extents {
				if d.Extent >= 0 && e >= d.Extent {
					t.Errorf("a cluster of extent %d was yielded before the error in extent %d", e, d.Extent)
					break
				}
			}
			msg := err.Error()
			if s := corruptionMsg[k]; !strings.Contains(msg, s) {
				t.Errorf("message %q does not say %q", msg, s)
			}
			if d.Device != "" && !strings.Contains(msg, d.Device) {
				t.Errorf("message %q does not name device %q", msg, d.Device)
			}
			if d.Cluster >= 0 && !strings.Contains(msg, fmt.Sprintf("cluster %d", d.Cluster)) {
				t.Errorf("message %q does not name cluster %d", msg, d.Cluster)
			}
			if fe.Offset != d.Offset {
				t.Errorf("Offset %d, want %d", fe.Offset, d.Offset)
			}
			if fe.Extent != d.Extent {
				t.Errorf("Extent %d, want %d", fe.Extent, d.Extent)
			}
			if fe.DevID != d.DevID || fe.Device != d.Device {
				t.Errorf("device %d %q, want %d %q", fe.DevID, fe.Device, d.DevID, d.Device)
			}
			if fe.Cluster != d.Cluster {
				t.Errorf("Cluster %d, want %d", fe.Cluster, d.Cluster)
			}

			// Allowing incomplete archives changes only the missing-cluster
			// outcome.
			r, _, _, err2 := readErr(d.Data, true)
			if d.Incomplete {
				if err2 != nil {
					t.Fatalf("AllowIncomplete: %v", err2)
				}
				if got := r.Missing(); !reflect.DeepEqual(got, d.Missing) {
					t.Errorf("Missing() = %v, want %v", got, d.Missing)
				}
			} else if err2 == nil || err2.Error() != err.Error() {
				t.Errorf("AllowIncomplete: %v, want the strict error", err2)
			}
		})
	}
}

// TestHostileNames: names that would escape an extraction directory are
// legal VMA; the Reader hands them over verbatim (sanitising is the job of
// whoever creates files) and does not fail.
func TestHostileNames(t *testing.T) {
	s := vmatest.HostileSpec()
	data := genArchive(t, s)
	checkArchive(t, s, data, true)
	h, _ := readAll(t, data)
	for i, n := range vmatest.HostileNames() {
		if h.Configs[i].Name != n || h.Devices[i].Name != n {
			t.Errorf("name %q read as config %q, device %q", n, h.Configs[i].Name, h.Devices[i].Name)
		}
	}
}

// TestHugeSparseDisk: a 16 GiB disk that is mostly zero makes an archive
// of about 2.3 MiB (a mask-0 blockinfo per cluster), which reads fine.
func TestHugeSparseDisk(t *testing.T) {
	s := vmatest.Spec{
		Disks: []vmatest.Disk{
			{Name: "drive-scsi0", Size: 16 << 30, Content: vmatest.Sparse},
			{Name: "drive-efidisk0", Size: vmatest.EFIDiskSize, Content: vmatest.Sparse},
		},
		Order: vmatest.ProxmoxLike, PullForward: 0.01, Seed: 11,
	}
	data := genArchive(t, s)
	if len(data) > 4<<20 {
		t.Fatalf("archive of %d bytes", len(data))
	}
	r, err := vma.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, vma.ClusterSize)
	n, withData := 0, 0
	for {
		c, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
		if c.Mask != 0 || n%4096 == 0 {
			withData++
			want := s.ClusterData(c.DevID-1, uint64(c.Num), buf)
			if vmatest.Mask(want) != c.Mask {
				t.Fatalf("cluster %d:%d mask %#x, want %#x", c.DevID, c.Num, c.Mask, vmatest.Mask(want))
			}
		}
	}
	if n != 16<<30/vma.ClusterSize+9 || withData < 100 {
		t.Errorf("%d clusters, %d checked", n, withData)
	}
}

// TestTruncatedHugeDevice: the largest legal device (2^48 bytes) in the
// header: reading and completeness bookkeeping must stay cheap.
func TestTruncatedHugeDevice(t *testing.T) {
	d, err := vmatest.Corrupt(genArchive(t, vmatest.CorruptionSpec()), vmatest.DeviceSizeMax)
	if err != nil {
		t.Fatal(err)
	}
	r, err := vma.NewReader(bytes.NewReader(d.Data))
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Header().Devices[0].Size; got != vma.MaxDeviceSize {
		t.Fatalf("size %d", got)
	}
	r.AllowIncomplete()
	for {
		if _, err := r.Next(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if m := r.Missing(); m[1] != 64 {
		t.Errorf("Missing %v", m)
	}
}

// scatteredArchive returns an archive of about size bytes whose mask-0
// blockinfos name clusters 2^16+1 apart on a device of the largest legal
// size (2^48 bytes): every blockinfo touches a new region of the
// duplicate-cluster bookkeeping.
func scatteredArchive(size int) []byte {
	h := vma.Header{UUID: vma.UUID{1}, Configs: []vma.Config{{Name: "qemu-server.conf", Data: []byte("x")}},
		Devices: []vma.Device{{ID: 1, Name: "drive-scsi0", Size: vma.MaxDeviceSize}}}
	data := vmatest.EncodeHeader(&h)
	c := uint32(0)
	for len(data)+vma.ExtentHeaderSize <= size {
		var infos []vmatest.Blockinfo
		for range vma.ExtentSlots {
			infos = append(infos, vmatest.Blockinfo{DevID: 1, Cluster: c})
			c += 1<<16 + 1
		}
		data = append(data, vmatest.EncodeExtent(h.UUID, infos, nil)...)
	}
	return data
}

// TestReaderMemoryClusterSpread: blockinfos are 8 bytes each, so an
// archive under 1 MiB must not make the Reader allocate more than 64 MiB,
// even when its clusters are scattered over a huge device.
func TestReaderMemoryClusterSpread(t *testing.T) {
	data := scatteredArchive(1<<20 - 1)
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	r, err := vma.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	r.AllowIncomplete()
	n := 0
	for {
		if _, err = r.Next(); err != nil {
			break
		}
		n++
	}
	runtime.ReadMemStats(&m1)
	if err != io.EOF {
		t.Fatal(err)
	}
	a := m1.TotalAlloc - m0.TotalAlloc
	t.Logf("%d KiB, %d scattered clusters: %d MiB allocated", len(data)>>10, n, a>>20)
	if a > 64<<20 {
		t.Errorf("reading %d KiB (%d scattered clusters) allocated %d MiB", len(data)>>10, n, a>>20)
	}
}
