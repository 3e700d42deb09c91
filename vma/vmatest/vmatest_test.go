package vmatest

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"runtime"
	"slices"
	"testing"

	"github.com/vmasync/vmasync/vma"
)

func mustArchive(t testing.TB, s Spec) []byte {
	t.Helper()
	b, err := Archive(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDeterministic(t *testing.T) {
	for _, sh := range Shapes()[:3] {
		a, b := mustArchive(t, sh.Spec), mustArchive(t, sh.Spec)
		if !bytes.Equal(a, b) {
			t.Errorf("%s: two runs differ", sh.Name)
		}
		other := sh.Spec
		other.Seed += 1000
		c := mustArchive(t, other)
		if bytes.Equal(a[8:24], c[8:24]) || bytes.Equal(a[len(a)-4096:], c[len(c)-4096:]) {
			t.Errorf("%s: another seed gives the same uuid or data", sh.Name)
		}
	}
}

// TestStoredOrder: every order is a permutation of all clusters with the
// properties its documentation claims.
func TestStoredOrder(t *testing.T) {
	for _, sh := range Shapes() {
		for _, o := range Orders {
			s := sh.Spec
			s.Order = o
			var seq [][2]uint64
			seen := map[[2]uint64]bool{}
			for d, c := range s.StoredOrder() {
				k := [2]uint64{uint64(d), c}
				if seen[k] || c >= s.clusters(d) {
					t.Fatalf("%s/%v: cluster %v twice or out of range", sh.Name, o, k)
				}
				seen[k] = true
				seq = append(seq, k)
			}
			total := 0
			for i := range s.Disks {
				total += int(s.clusters(i))
			}
			if len(seq) != total {
				t.Fatalf("%s/%v: %d clusters, want %d", sh.Name, o, len(seq), total)
			}
			// Per device: vmstate always ascending; Ordered and CreateLike
			// ascending for every device.
			next := make([]uint64, len(s.Disks))
			ascending := map[int]bool{}
			for i, d := range s.Disks {
				ascending[i] = o != ProxmoxLike || d.Name == vma.VMStateName
			}
			for _, k := range seq {
				d := int(k[0])
				if ascending[d] && k[1] != next[d] {
					t.Fatalf("%s/%v: device %d: cluster %d, want %d", sh.Name, o, d, k[1], next[d])
				}
				next[d] = k[1] + 1
			}
			if o == Ordered && !slices.IsSortedFunc(seq, func(a, b [2]uint64) int {
				if a[0] != b[0] {
					return int(a[0]) - int(b[0])
				}
				return int(a[1]) - int(b[1])
			}) {
				t.Errorf("%s: Ordered is not sorted", sh.Name)
			}
		}
	}
}

// TestProxmoxLikeOrder: drives one after another, 16-cluster tasks each
// ascending, interleaved; pull-forward moves clusters (also of later
// drives) early.
func TestProxmoxLikeOrder(t *testing.T) {
	s := Spec{Disks: []Disk{
		{Name: "drive-scsi0", Size: 8 << 20},
		{Name: "drive-efidisk0", Size: EFIDiskSize},
		{Name: "drive-tpmstate0-backup", Size: TPMStateSize},
	}, Order: ProxmoxLike, Seed: 3}
	var seq [][2]uint64
	for d, c := range s.StoredOrder() {
		seq = append(seq, [2]uint64{uint64(d), c})
	}
	// Without pull-forward: drive 0 entirely first, then 1, then 2.
	for i := 1; i < len(seq); i++ {
		if seq[i][0] < seq[i-1][0] {
			t.Fatalf("drive %d after drive %d", seq[i][0], seq[i-1][0])
		}
	}
	// Within a task, ascending; tasks interleave (not globally sorted).
	last := map[[2]uint64]uint64{}
	sorted := true
	for i, k := range seq {
		task := [2]uint64{k[0], k[1] / 16}
		if p, ok := last[task]; ok && k[1] != p+1 {
			t.Fatalf("task %v: %d after %d", task, k[1], p)
		}
		last[task] = k[1]
		if i > 0 && seq[i-1][0] == k[0] && seq[i-1][1] > k[1] {
			sorted = false
		}
	}
	if sorted {
		t.Error("no interleaving")
	}
	// With pull-forward, some clusters come early, some of later drives.
	s.PullForward = 0.05
	early, laterDrive := 0, 0
	maxDrive := uint64(0)
	pos := 0
	for d, c := range s.StoredOrder() {
		if uint64(d) > maxDrive {
			if pos < 100 {
				laterDrive++
			}
			maxDrive = uint64(d)
		}
		if uint64(d) < maxDrive {
			early++ // a drive started, then an earlier one continues
		}
		_ = c
		pos++
	}
	if laterDrive == 0 || early == 0 {
		t.Errorf("pull-forward: %d later-drive clusters early, %d interleaved", laterDrive, early)
	}
}

// TestEncodeRealSample: the encoder reproduces the header and both
// extents of the real Proxmox sample.
func TestEncodeRealSample(t *testing.T) {
	f, err := os.Open("../testdata/real/dissect-test.vma.gz")
	if err != nil {
		t.Fatalf("real sample: %v", err)
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(z)
	if err != nil {
		t.Fatal(err)
	}
	r, err := vma.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	h := r.Header()
	if hb := EncodeHeader(h); !bytes.Equal(hb, raw[:h.Size]) {
		t.Errorf("header differs (%d bytes, sample %d)", len(hb), h.Size)
	}
	p, err := parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range p.exts {
		var infos []Blockinfo
		var data []byte
		for _, s := range e.slots {
			infos = append(infos, s.bi)
			data = append(data, s.data...)
		}
		end := e.off + vma.ExtentHeaderSize + e.count*vma.BlockSize
		if got := EncodeExtent(h.UUID, infos, data); !bytes.Equal(got, raw[e.off:end]) {
			t.Errorf("extent %d differs", i)
		}
	}
	if len(p.exts) != 2 {
		t.Errorf("%d extents", len(p.exts))
	}
}

// TestBlobLayout: the blob table grows as vma-writer.c's does.
func TestBlobLayout(t *testing.T) {
	for _, tc := range []struct {
		data       int
		headerSize int
	}{
		{417, 12800},  // the real sample: name 17, data 417, device 12
		{600, 13824},  // 19 → 512; 602 → +1024; device name fits
		{1000, 13824}, // 512 + 1024
		{0, 12800},
	} {
		h := vma.Header{Configs: []vma.Config{{Name: "qemu-server.conf", Data: make([]byte, tc.data)}},
			Devices: []vma.Device{{ID: 1, Name: "drive-scsi0", Size: 1}}}
		if got := len(EncodeHeader(&h)); got != tc.headerSize {
			t.Errorf("config of %d bytes: header %d, want %d", tc.data, got, tc.headerSize)
		}
	}
}

// TestContent: each Content holds what it promises.
func TestContent(t *testing.T) {
	s := Spec{Disks: []Disk{
		{Name: "mixed", Size: 16 << 20, Content: Mixed},
		{Name: "random", Size: 1<<20 + 100, Content: Random},
		{Name: "text", Size: 1<<20 + 12800, Content: Text},
		{Name: "zeroruns", Size: 8 << 20, Content: ZeroRuns},
		{Name: "sparse", Size: 8<<20 + 5000, Content: Sparse},
		{Name: "zero", Size: 1 << 20, Content: Zero},
	}, Seed: 5}
	buf := make([]byte, vma.ClusterSize)
	for i, d := range s.Disks {
		kinds := map[string]int{}
		n := s.clusters(i)
		for c := range n {
			b := s.ClusterData(i, c, buf)
			if want := clusterLen(d.Size, c); len(b) != want {
				t.Fatalf("%s cluster %d: %d bytes, want %d", d.Name, c, len(b), want)
			}
			m := Mask(b)
			switch full := uint16(1<<((len(b)+vma.BlockSize-1)/vma.BlockSize) - 1); {
			case m == 0:
				kinds["zero"]++
			case m == full && isText(b):
				kinds["text"]++
			case m == full:
				kinds["full"]++
			default:
				kinds["partial"]++
			}
			if d.Content == ZeroRuns && c >= n/4 && c < n-n/4 && m != 0 {
				t.Fatalf("zeroruns: cluster %d in the zero run has data", c)
			}
			if d.Content == Sparse && (c == 0 && m&1 == 0 || c == n-1 && m>>((len(b)-1)/vma.BlockSize) == 0) {
				t.Fatalf("sparse: cluster %d lacks its first/last block (mask %#x)", c, m)
			}
		}
		t.Logf("%s: %v", d.Name, kinds)
		switch d.Content {
		case Mixed:
			if kinds["zero"] == 0 || kinds["text"] == 0 || kinds["full"] == 0 || kinds["partial"] == 0 {
				t.Errorf("mixed lacks a kind: %v", kinds)
			}
		case Random:
			if kinds["full"] != int(n) {
				t.Errorf("random: %v", kinds)
			}
		case Text:
			if kinds["text"] != int(n) {
				t.Errorf("text: %v", kinds)
			}
		case Sparse:
			if kinds["zero"] < int(n)*9/10 {
				t.Errorf("sparse: %v", kinds)
			}
		case Zero:
			if kinds["zero"] != int(n) {
				t.Errorf("zero: %v", kinds)
			}
		}
	}
}

func isText(b []byte) bool {
	for _, c := range b {
		if c != '\n' && (c < ' ' || c > '~') {
			return false
		}
	}
	return true
}

// TestGenerations: generation n differs from n-1 in about ChangeFraction
// of the clusters, exactly where Version says; the configs stay.
func TestGenerations(t *testing.T) {
	day := func(g uint64) Spec {
		return Spec{Disks: []Disk{{Name: "drive-scsi0", Size: 64 << 20}, {Name: "drive-scsi1", Size: 8 << 20, Content: Zero}},
			Seed: 21, Generation: g, Order: ProxmoxLike, PullForward: 0.02}
	}
	b0, b1 := make([]byte, vma.ClusterSize), make([]byte, vma.ClusterSize)
	for g := uint64(1); g <= 2; g++ {
		prev, cur := day(g-1), day(g)
		if prev.UUID() == cur.UUID() || cur.CTime()-prev.CTime() != 86400 {
			t.Errorf("generation %d: uuid/ctime", g)
		}
		hp, hc := prev.Header(), cur.Header()
		if !slices.EqualFunc(hp.Configs, hc.Configs, func(a, b vma.Config) bool { return a.Name == b.Name && bytes.Equal(a.Data, b.Data) }) {
			t.Errorf("generation %d: configs differ", g)
		}
		changed, total := 0, 0
		for i := range cur.Disks {
			for c := range cur.clusters(i) {
				total++
				differs := !bytes.Equal(prev.ClusterData(i, c, b0), cur.ClusterData(i, c, b1))
				if v := cur.Version(i, c); differs != (v == g) {
					t.Fatalf("generation %d: disk %d cluster %d differs=%v, Version %d", g, i, c, differs, v)
				}
				if differs {
					changed++
				}
			}
		}
		if f := float64(changed) / float64(total); f < 0.02 || f > 0.045 {
			t.Errorf("generation %d: %d of %d clusters changed", g, changed, total)
		}
	}
	if s := day(3); s.Version(0, 5) > 3 {
		t.Error("Version beyond Generation")
	}
	none := day(2)
	none.ChangeFraction = -1
	for c := range none.clusters(0) {
		if none.Version(0, c) != 0 {
			t.Fatal("ChangeFraction < 0 changed a cluster")
		}
	}
}

// TestCorruptAll: every corruption applies to the CorruptionSpec archive,
// changes it, and keeps it small; Corrupt refuses archives that lack what
// a corruption needs.
func TestCorruptAll(t *testing.T) {
	base := mustArchive(t, CorruptionSpec())
	if len(base) > 40<<10 {
		t.Errorf("CorruptionSpec archive of %d bytes", len(base))
	}
	p, err := parse(base)
	if err != nil || len(p.exts) != 2 {
		t.Fatalf("parse: %v, %d extents", err, len(p.exts))
	}
	for _, k := range Corruptions() {
		d, err := Corrupt(base, k)
		if err != nil {
			t.Errorf("%v: %v", k, err)
			continue
		}
		if bytes.Equal(d.Data, base) {
			t.Errorf("%v: no change", k)
		}
		if d.Kind != k || d.Offset < 0 || d.Offset > int64(len(d.Data)) {
			t.Errorf("%v: damage %+v", k, d)
		}
	}
	if len(Corruptions()) != len(corruptionNames)-1 {
		t.Error("corruptionNames out of date")
	}
	oneDisk := mustArchive(t, Shapes()[0].Spec)
	if _, err := Corrupt(oneDisk, VMStateOrder); err == nil {
		t.Error("VMStateOrder without vmstate accepted")
	}
	if _, err := Corrupt([]byte("junk"), HeaderMagic); err == nil {
		t.Error("junk accepted")
	}
	// FixChecksums undoes checksum damage.
	for _, k := range []Corruption{HeaderChecksum, ExtentChecksum} {
		d, _ := Corrupt(base, k)
		if !bytes.Equal(FixChecksums(d.Data), base) {
			t.Errorf("FixChecksums does not repair %v", k)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, s := range []Spec{
		{ClustersPerExtent: 60},
		{ClustersPerExtent: -1},
		{Disks: []Disk{{Name: "d", Size: vma.MaxDeviceSize + 1}}},
		{Disks: make([]Disk, 256)},
	} {
		if err := Write(io.Discard, s); err == nil {
			t.Errorf("%+v accepted", s.ClustersPerExtent)
		}
	}
}

// TestWriteMemory: Write holds no image data (a 256 MiB random disk).
func TestWriteMemory(t *testing.T) {
	if testing.Short() {
		t.Skip()
	}
	s := Spec{Disks: []Disk{{Name: "drive-scsi0", Size: 256 << 20, Content: Random}}, Order: ProxmoxLike, PullForward: 0.02}
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	if err := Write(io.Discard, s); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&m1)
	if a := m1.TotalAlloc - m0.TotalAlloc; a > 16<<20 {
		t.Errorf("Write allocated %d MiB", a>>20)
	}
}

func benchContent(b *testing.B, c Content) {
	s := Spec{Disks: []Disk{{Name: "d", Size: 1 << 30, Content: c}}}
	buf := make([]byte, vma.ClusterSize)
	b.SetBytes(vma.ClusterSize)
	for i := 0; b.Loop(); i++ {
		s.ClusterData(0, uint64(i%16384), buf)
	}
}

func BenchmarkClusterDataRandom(b *testing.B) { benchContent(b, Random) }
func BenchmarkClusterDataText(b *testing.B)   { benchContent(b, Text) }
func BenchmarkClusterDataMixed(b *testing.B)  { benchContent(b, Mixed) }

func BenchmarkWrite(b *testing.B) {
	s := Shapes()[1].Spec
	var n int64
	for _, d := range s.Disks {
		n += int64(d.Size)
	}
	b.SetBytes(n)
	for b.Loop() {
		if err := Write(io.Discard, s); err != nil {
			b.Fatal(err)
		}
	}
}

func TestComparer(t *testing.T) {
	want := []byte("0123456789")
	c := NewComparer(want)
	if _, err := c.Write(want[:4]); err != nil || c.Complete() {
		t.Fatalf("prefix: %v, complete %v", err, c.Complete())
	}
	if _, err := c.Write(want[4:]); err != nil || !c.Complete() || c.Written() != len(want) {
		t.Fatalf("rest: %v, complete %v, %d written", err, c.Complete(), c.Written())
	}
	if _, err := c.Write([]byte("x")); err == nil {
		t.Error("a byte past the end was accepted")
	}
	c = NewComparer(want)
	if _, err := c.Write([]byte("0123X")); err == nil {
		t.Error("a differing byte was accepted")
	}
}
