package report

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/vmasync/vmasync/chunkplan"
	"github.com/vmasync/vmasync/vma"
	"github.com/vmasync/vmasync/vma/vmatest"
)

// pair is two backups of one VM: B is A a night later (3 % of the
// clusters rewritten), with its first disk grown by 1 MiB and a disk A
// does not have (whose last cluster is short: all its clusters are new).
type pair struct {
	a, b         vmatest.Spec
	archA, archB []byte // as vzdump wrote them (Proxmox-like order)
	optA, optB   []byte // optimized
}

func newPair(t *testing.T) *pair {
	t.Helper()
	disks := func(grow uint64) []vmatest.Disk {
		return []vmatest.Disk{
			{Name: "drive-scsi0", Size: 6<<20 + grow, Content: vmatest.Mixed},
			{Name: "drive-efidisk0", Size: 540672, Content: vmatest.Random}, // not a multiple of 64 KiB
		}
	}
	p := &pair{
		a: vmatest.Spec{Disks: disks(0), Order: vmatest.ProxmoxLike, Seed: 5, ChangeFraction: 0.03},
		b: vmatest.Spec{Disks: append(disks(1<<20), vmatest.Disk{Name: "drive-scsi1", Size: 1<<20 + 4567, Content: vmatest.Text}),
			Order: vmatest.ProxmoxLike, Seed: 5, Generation: 1, ChangeFraction: 0.03},
	}
	for _, x := range []struct {
		s         vmatest.Spec
		arch, opt *[]byte
	}{{p.a, &p.archA, &p.optA}, {p.b, &p.archB, &p.optB}} {
		arch, err := vmatest.Archive(x.s)
		if err != nil {
			t.Fatal(err)
		}
		var opt bytes.Buffer
		if _, err := vma.Optimize(context.Background(), &opt, bytes.NewReader(arch), vma.OptimizeOptions{}); err != nil {
			t.Fatal(err)
		}
		*x.arch, *x.opt = arch, opt.Bytes()
	}
	return p
}

// inputA and inputB are the archives as inputs named a and b, read from
// their start.
func (p *pair) inputA() Input { return Input{Name: "a", R: bytes.NewReader(p.archA)} }
func (p *pair) inputB() Input { return Input{Name: "b", R: bytes.NewReader(p.archB)} }

// images returns the disk images of s by device name.
func images(t *testing.T, s vmatest.Spec) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for i, d := range s.Disks {
		var b bytes.Buffer
		if err := s.WriteImage(&b, i); err != nil {
			t.Fatal(err)
		}
		out[d.Name] = b.Bytes()
	}
	return out
}

// build is chunkplan's manifest of data with p.
func build(t *testing.T, data []byte, p chunkplan.Params) *chunkplan.Manifest {
	t.Helper()
	m, err := chunkplan.Build(bytes.NewReader(data), p)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestRunAgainstIndependentCounts: the floor is what comparing the disk
// images cluster by cluster gives, and each column's new bytes what
// chunkplan.Compare of the two streams' manifests gives (SHA-256 sets,
// not this package's maphash tallies); the per-device new bytes add up to
// each column's.
func TestRunAgainstIndependentCounts(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	res, err := Run(p.inputA(), p.inputB(), Options{})
	if err != nil {
		t.Fatal(err)
	}

	imgA, imgB := images(t, p.a), images(t, p.b)
	var want Floor
	perDev := map[string]Floor{}
	for _, d := range p.b.Disks {
		var f Floor
		b, a := imgB[d.Name], imgA[d.Name]
		for off := 0; off < len(b); off += vma.ClusterSize {
			end := min(off+vma.ClusterSize, len(b))
			f.Clusters++
			if end > len(a) || !bytes.Equal(a[off:end], b[off:end]) {
				f.ChangedClusters++
				f.ChangedBytes += uint64(end - off)
			}
		}
		perDev[d.Name] = f
		want.Clusters += f.Clusters
		want.ChangedClusters += f.ChangedClusters
		want.ChangedBytes += f.ChangedBytes
	}
	if res.Floor == nil || *res.Floor != want {
		t.Errorf("floor %+v, comparing the images gives %+v", res.Floor, want)
	}
	if want.ChangedClusters == 0 || want.ChangedClusters == want.Clusters {
		t.Fatalf("the pair does not test the floor: %+v", want)
	}
	if len(res.Devices) != 1+len(p.b.Disks) || res.Devices[0].Name != "header" {
		t.Fatalf("devices %+v", res.Devices)
	}
	for _, dr := range res.Devices[1:] {
		_, inA := imgA[dr.Name]
		if dr.InA != inA || dr.Floor == nil || *dr.Floor != perDev[dr.Name] {
			t.Errorf("%s: in A %v, floor %+v; want in A %v, floor %+v", dr.Name, dr.InA, dr.Floor, inA, perDev[dr.Name])
		}
	}

	restic := chunkplan.ResticParams(chunkplan.DefaultPolynomial)
	for _, c := range []struct {
		col        Column
		a, b       []byte
		params     chunkplan.Params
		streamName string
	}{
		{ResticOriginal, p.archA, p.archB, restic, "original"},
		{ResticOptimized, p.optA, p.optB, restic, "optimized"},
		{Vmasync, p.optA, p.optB, chunkplan.DefaultParams(), "optimized"},
	} {
		got := res.Columns[c.col]
		want := chunkplan.Compare(build(t, c.a, c.params), build(t, c.b, c.params))
		if got == nil || got.NewBytes != want.NewBytes || got.NewChunks != want.NewChunks ||
			got.TotalBytes != want.TotalBytes || got.TotalChunks != want.TotalChunks || got.SharedBytes != want.SharedBytes {
			t.Errorf("column %d: %+v; chunkplan.Compare of the %s streams gives %+v", c.col, got, c.streamName, want)
			continue
		}
		var sum uint64
		for _, dr := range res.Devices {
			if dr.New[c.col] == nil {
				t.Fatalf("column %d: no new bytes for %s", c.col, dr.Name)
			}
			sum += *dr.New[c.col]
		}
		if sum != got.NewBytes {
			t.Errorf("column %d: devices' new bytes add up to %d, the column has %d", c.col, sum, got.NewBytes)
		}
	}
	if res.A.ArchiveBytes != int64(len(p.archA)) || res.B.OptimizedBytes != int64(len(p.optB)) || res.B.CTime != p.b.CTime() {
		t.Errorf("sides %+v %+v", res.A, res.B)
	}
}

// TestRunFileInputSameAsStream: a plain file optimized with positioned
// reads (Input.File) reports exactly what the stream does.
func TestRunFileInputSameAsStream(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	stream, err := Run(p.inputA(), p.inputB(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	open := func(name string, data []byte) Input {
		path := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		r, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close(); f.Close() })
		return Input{Name: name, R: r, File: f}
	}
	var progress int64
	files, err := Run(open("a", p.archA), open("b", p.archB), Options{Progress: func(n int64) { progress = n }})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(stream, files) {
		t.Errorf("files: %+v\nstream: %+v", files, stream)
	}
	if progress <= 0 || progress > int64(len(p.archA)+len(p.archB)) {
		t.Errorf("progress ended at %d of %d bytes", progress, len(p.archA)+len(p.archB))
	}
}

// TestRunWithManifests: a manifest saved by BuildManifest stands for its
// archive in the columns it can answer (vmasync's chunk sizes), with the
// same new bytes as the archive; the floor, the original column and, for
// a manifest B, the devices are unknown.
func TestRunWithManifests(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	both, err := Run(p.inputA(), p.inputB(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	ma, err := BuildManifest(p.inputA(), chunkplan.DefaultParams(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if want := build(t, p.optA, chunkplan.DefaultParams()); !reflect.DeepEqual(ma.Chunks, want.Chunks) || ma.ArchiveSHA256 != want.ArchiveSHA256 {
		t.Fatalf("BuildManifest's chunks differ from chunkplan.Build of the optimized archive")
	}
	if ma.Source != "a" || ma.BackupTime != p.a.CTime() || len(ma.Devices) != len(p.a.Disks) || ma.Devices[0].Name != "drive-scsi0" || ma.Devices[0].Size != p.a.Disks[0].Size {
		t.Errorf("manifest description: %q %d %+v", ma.Source, ma.BackupTime, ma.Devices)
	}
	mb, err := BuildManifest(p.inputB(), chunkplan.DefaultParams(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		a, b Input
	}{
		{"manifest A", Input{Name: "a", Manifest: ma}, p.inputB()},
		{"manifest B", p.inputA(), Input{Name: "b", Manifest: mb}},
		{"both manifests", Input{Name: "a", Manifest: ma}, Input{Name: "b", Manifest: mb}},
	} {
		res, err := Run(c.a, c.b, Options{})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if res.Floor != nil || res.Columns[ResticOriginal] != nil || res.Columns[ResticOptimized] != nil {
			t.Errorf("%s: floor %v, restic columns %v %v: want unknown", c.name, res.Floor, res.Columns[ResticOriginal], res.Columns[ResticOptimized])
		}
		got, want := res.Columns[Vmasync], both.Columns[Vmasync]
		if got == nil || got.Figures != want.Figures || got.TotalBytes != want.TotalBytes {
			t.Errorf("%s: vmasync column %+v, from the archives %+v", c.name, got, want)
		}
		if (c.b.Manifest != nil) != (res.Devices == nil) {
			t.Errorf("%s: devices %+v", c.name, res.Devices)
		}
	}
	// A manifest of other chunk sizes answers nothing.
	other := chunkplan.DefaultParams()
	other.AverageBits++
	mo, err := BuildManifest(Input{Name: "o", R: bytes.NewReader(p.archA)}, other, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Run(Input{Name: "o", Manifest: mo}, Input{Name: "b", Manifest: mb}, Options{}); err == nil {
		t.Error("manifests of different chunk sizes compared")
	}
}

// TestRunInputErrors: a damaged or cut input is reported as an
// *InputError naming it; a cancelled run stops with the cancellation.
func TestRunInputErrors(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	cut := p.archB[:len(p.archB)/2]
	damaged := bytes.Clone(p.archA)
	damaged[int(p.a.Header().Size)+100] ^= 1 // in the first extent's header
	for _, c := range []struct {
		name, bad string
		a, b      []byte
	}{{"B cut in half", "b.vma", p.archA, cut}, {"A damaged", "a.vma", damaged, p.archB}} {
		_, err := Run(Input{Name: "a.vma", R: bytes.NewReader(c.a)}, Input{Name: "b.vma", R: bytes.NewReader(c.b)}, Options{})
		var ie *InputError
		if !errors.As(err, &ie) || ie.Name != c.bad {
			t.Errorf("%s: %v, want an *InputError of %s", c.name, err, c.bad)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Run(p.inputA(), p.inputB(), Options{Context: ctx}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}
