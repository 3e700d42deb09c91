package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/vmasync/vmasync/vma"
	"github.com/vmasync/vmasync/vma/vmatest"
)

// realSample is the only public Proxmox-written VMA: valid but truncated
// (cluster 23 of drive-scsi0 is the first missing one).
const realSample = "../../vma/testdata/real/dissect-test.vma.gz"

func needReal(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(realSample); err != nil {
		t.Fatalf("real sample missing (vma/testdata/real): %v", err)
	}
	return realSample
}

type result struct {
	code           int
	stdout, stderr string
}

// runCLI runs vmasync in-process.
func runCLI(t *testing.T, stdin io.Reader, args ...string) result {
	t.Helper()
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	var out, errb bytes.Buffer
	code := run(append([]string{"vmasync"}, args...), stdin, &out, &errb)
	return result{code, out.String(), errb.String()}
}

func (r result) String() string {
	return "exit " + strconv.Itoa(r.code) + "\nstdout:\n" + r.stdout + "\nstderr:\n" + r.stderr
}

// wantOneErrorLine checks that stderr is exactly one line containing all
// of subs.
func wantOneErrorLine(t *testing.T, r result, subs ...string) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "vmasync: ") {
		t.Fatalf("want one error line on stderr, got %q", r.stderr)
	}
	for _, s := range subs {
		if !strings.Contains(lines[0], s) {
			t.Errorf("error line %q lacks %q", lines[0], s)
		}
	}
}

// makeImages writes an unpacked-archive directory: a config and images of
// the given sizes (named drive-efidisk0, drive-scsi0, ...), filled with
// pseudo-random data and zero runs, and returns it.
func makeImages(t *testing.T, sizes map[string]int) string {
	t.Helper()
	dir := t.TempDir()
	conf := "boot: order=scsi0\ncores: 2\nmemory: 2048\nscsi0: local-lvm:vm-100-disk-0,size=3M\n"
	if err := os.WriteFile(filepath.Join(dir, "qemu-server.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for name, size := range sizes {
		b := make([]byte, size)
		for off := 0; off < size; off += vma.BlockSize {
			end := min(off+vma.BlockSize, size)
			switch (off / vma.BlockSize) % 7 {
			case 0, 3: // zero blocks
			default:
				for i := off; i < end; i++ {
					b[i] = byte(rng.Uint32())
				}
			}
		}
		// A zero 64 KiB cluster in the middle.
		if size > 3*vma.ClusterSize {
			clear(b[vma.ClusterSize : 2*vma.ClusterSize])
		}
		if err := os.WriteFile(filepath.Join(dir, vma.ImageName(name)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// testSizes are the image sizes of the round-trip tests: not a multiple of
// 4 KiB, and the size of a Proxmox efidisk (not a multiple of 64 KiB).
var testSizes = map[string]int{"drive-scsi0": 3<<20 + 100, "drive-efidisk0": 540672}

// packed packs testSizes images into an archive and returns its path and
// the image directory.
func packed(t *testing.T, extra ...string) (archive, images string) {
	t.Helper()
	images = makeImages(t, testSizes)
	archive = filepath.Join(t.TempDir(), "vzdump-qemu-100-2026_01_01-00_00_00.vma")
	args := append([]string{"pack"}, extra...)
	args = append(args, images, archive)
	if r := runCLI(t, nil, args...); r.code != 0 {
		t.Fatalf("pack: %v", r)
	}
	return archive, images
}

// sameFiles checks that every file of want exists in got with the same
// bytes.
func sameFiles(t *testing.T, want, got string, only ...string) {
	t.Helper()
	ents, err := os.ReadDir(want)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if len(only) > 0 && !contains(only, e.Name()) {
			continue
		}
		a, err := os.ReadFile(filepath.Join(want, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(got, e.Name()))
		if err != nil {
			t.Fatalf("unpacked: %v", err)
		}
		if !bytes.Equal(a, b) {
			t.Fatalf("%s differs after the round trip (%d vs %d bytes)", e.Name(), len(a), len(b))
		}
		n++
	}
	if n == 0 {
		t.Fatal("nothing compared")
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestInfoRealText(t *testing.T) {
	t.Parallel()
	r := runCLI(t, nil, "info", needReal(t))
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("%v", r)
	}
	for _, want := range []string{
		`uuid:\s+04fc12eb-0fed-4322-9aaa-f4e412f68096`,
		`ctime:\s+2021-10-31T11:43:42Z \(\w{3} \w{3} [ 0-9]\d \d\d:\d\d:\d\d 2021 local\)`,
		`header size:\s+12800 bytes`,
		`(?m)^  qemu-server.conf\s+417 bytes$`,
		`device 1: drive-scsi0`,
		`size:\s+10737418240 bytes \(10 GiB\)`,
		`clusters:\s+163840 \(116 present\)`,
		`stored data:\s+524288 bytes`,
		`zero blocks:\s+93\.1% of the present data`,
		`extents:\s+2 \(at most 58 clusters per extent\)`,
		`in order:\s+no`,
		`optimized:\s+no`,
		`complete:\s+no`,
		`(?m)^incomplete: first missing cluster 23 of drive-scsi0`,
	} {
		if !regexp.MustCompile(want).MatchString(r.stdout) {
			t.Errorf("output lacks %s:\n%s", want, r.stdout)
		}
	}
}

func TestInfoRealJSON(t *testing.T) {
	t.Parallel()
	r := runCLI(t, nil, "info", "--json", needReal(t))
	if r.code != 0 {
		t.Fatalf("%v", r)
	}
	var got struct {
		UUID        string `json:"uuid"`
		CTime       int64  `json:"ctime"`
		CTimeUTC    string `json:"ctime_utc"`
		Compression string `json:"compression"`
		HeaderSize  int64  `json:"header_size"`
		ArchiveSize int64  `json:"archive_size"`
		Configs     []struct {
			Name string `json:"name"`
			Size int    `json:"size"`
		} `json:"configs"`
		Devices []struct {
			ID           int     `json:"id"`
			Name         string  `json:"name"`
			Size         uint64  `json:"size"`
			Clusters     uint64  `json:"clusters"`
			Present      uint64  `json:"present_clusters"`
			Stored       uint64  `json:"stored_bytes"`
			ZeroShare    float64 `json:"zero_share"`
			FirstMissing *int64  `json:"first_missing_cluster"`
		} `json:"devices"`
		Extents   int  `json:"extents"`
		MaxPerExt int  `json:"max_clusters_per_extent"`
		InOrder   bool `json:"in_order"`
		Optimized bool `json:"optimized"`
		Complete  bool `json:"complete"`
	}
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("%v\n%s", err, r.stdout)
	}
	if got.UUID != "04fc12eb-0fed-4322-9aaa-f4e412f68096" || got.CTime != 1635680622 || got.CTimeUTC != "2021-10-31T11:43:42Z" {
		t.Errorf("identity %+v", got)
	}
	if got.Compression != "gzip" || got.HeaderSize != 12800 || got.ArchiveSize != 538112 {
		t.Errorf("sizes %+v", got)
	}
	if len(got.Configs) != 1 || got.Configs[0].Name != "qemu-server.conf" || got.Configs[0].Size != 417 {
		t.Errorf("configs %+v", got.Configs)
	}
	if len(got.Devices) != 1 {
		t.Fatalf("devices %+v", got.Devices)
	}
	d := got.Devices[0]
	if d.ID != 1 || d.Name != "drive-scsi0" || d.Size != 10737418240 || d.Clusters != 163840 || d.Present != 116 || d.Stored != 524288 {
		t.Errorf("device %+v", d)
	}
	if d.FirstMissing == nil || *d.FirstMissing != 23 {
		t.Errorf("first missing %v, want 23", d.FirstMissing)
	}
	if got.Complete || got.InOrder || got.Optimized || got.Extents != 2 || got.MaxPerExt != 58 {
		t.Errorf("layout %+v", got)
	}
	// The JSON keys are a documented interface: all snake_case.
	var raw map[string]any
	json.Unmarshal([]byte(r.stdout), &raw)
	for k := range raw {
		if !regexp.MustCompile(`^[a-z][a-z0-9_]*$`).MatchString(k) {
			t.Errorf("key %q is not snake_case", k)
		}
	}
}

func TestVerifyReal(t *testing.T) {
	t.Parallel()
	s := needReal(t)
	r := runCLI(t, nil, "verify", s)
	if r.code != 1 || r.stdout != "" {
		t.Fatalf("strict verify of the truncated sample: %v", r)
	}
	wantOneErrorLine(t, r, s, "missing cluster 23", "drive-scsi0", "byte offset 538112")

	r = runCLI(t, nil, "verify", "--proxmox", s)
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("verify --proxmox: %v", r)
	}
	if !strings.Contains(r.stdout, s+": ok") || !strings.Contains(r.stdout, "completeness not checked") {
		t.Errorf("verify --proxmox output %q", r.stdout)
	}

	// -v: the `vma list` lines, progress on stderr, the summary.
	r = runCLI(t, nil, "verify", "-v", "--proxmox", s)
	if r.code != 0 {
		t.Fatalf("%v", r)
	}
	for _, want := range []string{
		"CFG: size: 417 name: qemu-server.conf\n",
		"DEV: dev_id=1 size: 10737418240 devname: drive-scsi0\n",
		"CTIME: ",
		"total bytes read 7602176, sparse bytes 7077888 (93.1%)\n",
		"space reduction due to 4K zero blocks",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("verify -v lacks %q:\n%s", want, r.stdout)
		}
	}
	if !regexp.MustCompile(`progress 100% \(read 538112 bytes, duration \d+ sec\)`).MatchString(r.stderr) {
		t.Errorf("verify -v progress: %q", r.stderr)
	}
}

func TestUnpackRealFailsCleanly(t *testing.T) {
	t.Parallel()
	s := needReal(t)
	dir := filepath.Join(t.TempDir(), "out")
	r := runCLI(t, nil, "unpack", s, dir)
	if r.code != 1 {
		t.Fatalf("%v", r)
	}
	wantOneErrorLine(t, r, "cluster 23", "drive-scsi0")
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("unpack left %s behind (%v): %v", dir, err, dirNames(t, dir))
	}
	// An existing directory stays empty.
	dir2 := t.TempDir()
	if r := runCLI(t, nil, "unpack", s, dir2); r.code != 1 {
		t.Fatalf("%v", r)
	}
	if names := dirNames(t, dir2); len(names) != 0 {
		t.Errorf("files left: %v", names)
	}
}

func TestPackVerifyUnpackRoundTrip(t *testing.T) {
	t.Parallel()
	archive, images := packed(t, "--uuid", "01234567-89ab-cdef-0123-456789abcdef", "--ctime", "1700000000")

	r := runCLI(t, nil, "verify", archive)
	if r.code != 0 || r.stdout != archive+": ok\n" || r.stderr != "" {
		t.Fatalf("verify: %v", r)
	}
	for _, args := range [][]string{{"--quiet", "verify", archive}, {"verify", "-q", archive}} {
		if r := runCLI(t, nil, args...); r.code != 0 || r.stdout != "" || r.stderr != "" {
			t.Fatalf("%q: %v", args, r)
		}
	}
	r = runCLI(t, nil, "info", "--json", archive)
	if r.code != 0 {
		t.Fatalf("info: %v", r)
	}
	var info infoReport
	if err := json.Unmarshal([]byte(r.stdout), &info); err != nil {
		t.Fatal(err)
	}
	if info.UUID != "01234567-89ab-cdef-0123-456789abcdef" || info.CTime != 1700000000 || !info.Complete || !info.InOrder || info.Optimized {
		t.Errorf("info %+v", info)
	}
	if len(info.Devices) != 2 || info.Devices[0].Name != "drive-efidisk0" || info.Devices[0].Size != 540672 ||
		info.Devices[1].Name != "drive-scsi0" || info.Devices[1].Size != 3<<20+100 || info.Compression != "plain" {
		t.Errorf("devices %+v", info.Devices)
	}
	if info.MaxClustersPerExtent != vma.ProxmoxClustersPerExtent {
		t.Errorf("max clusters per extent %d", info.MaxClustersPerExtent)
	}

	out := filepath.Join(t.TempDir(), "restore")
	r = runCLI(t, nil, "unpack", "-v", archive, out)
	if r.code != 0 {
		t.Fatalf("unpack: %v", r)
	}
	for _, want := range []string{"qemu-server.conf", "disk-drive-scsi0.raw\t3145828 bytes", "disk-drive-efidisk0.raw\t540672 bytes"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("unpack -v lacks %q:\n%s", want, r.stdout)
		}
	}
	sameFiles(t, images, out)

	// Without -v unpack prints nothing; --device picks one device.
	out2 := filepath.Join(t.TempDir(), "one")
	r = runCLI(t, nil, "unpack", "--device", "drive-efidisk0", archive, out2)
	if r.code != 0 || r.stdout != "" || r.stderr != "" {
		t.Fatalf("unpack --device: %v", r)
	}
	if got := strings.Join(dirNames(t, out2), " "); got != "disk-drive-efidisk0.raw qemu-server.conf" {
		t.Errorf("unpack --device wrote %s", got)
	}
	sameFiles(t, images, out2, "disk-drive-efidisk0.raw", "qemu-server.conf")
	r = runCLI(t, nil, "unpack", "--device", "drive-nope", archive, filepath.Join(t.TempDir(), "x"))
	if r.code != 1 {
		t.Fatalf("unknown device: %v", r)
	}
	wantOneErrorLine(t, r, `no device "drive-nope"`)

	// The optimized uuid plus Pack's in-order layout is the optimized form.
	opt, _ := packed(t, "--uuid", vma.OptimizedUUID.String())
	r = runCLI(t, nil, "info", opt)
	if r.code != 0 || !regexp.MustCompile(`optimized:\s+yes`).MatchString(r.stdout) {
		t.Errorf("info of an optimized archive: %v", r)
	}
}

func TestStdinInProcess(t *testing.T) {
	t.Parallel()
	archive, images := packed(t)
	data, err := os.ReadFile(archive)
	if err != nil {
		t.Fatal(err)
	}
	r := runCLI(t, bytes.NewReader(data), "verify", "-")
	if r.code != 0 || r.stdout != "stdin: ok\n" {
		t.Fatalf("verify -: %v", r)
	}
	out := filepath.Join(t.TempDir(), "u")
	if r := runCLI(t, bytes.NewReader(data), "unpack", "-", out); r.code != 0 {
		t.Fatalf("unpack -: %v", r)
	}
	sameFiles(t, images, out)
	r = runCLI(t, bytes.NewReader(data[:len(data)-1000]), "verify", "-")
	if r.code != 1 {
		t.Fatalf("truncated stdin: %v", r)
	}
	wantOneErrorLine(t, r, "stdin: ", "byte offset")
	if r := runCLI(t, nil, "verify", "-", "-"); r.code != 2 {
		t.Errorf("stdin twice: %v", r)
	}
}

func TestCompressedInputs(t *testing.T) {
	t.Parallel()
	archive, images := packed(t)
	data, err := os.ReadFile(archive)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()

	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(data)
	zw.Close()
	gzPath := filepath.Join(dir, "a.vma.gz")
	os.WriteFile(gzPath, gz.Bytes(), 0o644)

	var zs bytes.Buffer
	enc, err := zstd.NewWriter(&zs)
	if err != nil {
		t.Fatal(err)
	}
	enc.Write(data)
	enc.Close()
	zstPath := filepath.Join(dir, "a.vma.zst")
	os.WriteFile(zstPath, zs.Bytes(), 0o644)

	lzop, err := exec.LookPath("lzop")
	if err != nil {
		t.Fatal("lzop not found: apt-get install lzop")
	}
	lzoPath := filepath.Join(dir, "a.vma.lzo")
	if out, err := exec.Command(lzop, "-q", "-o", lzoPath, archive).CombinedOutput(); err != nil {
		t.Fatalf("lzop: %v %s", err, out)
	}

	for _, c := range []struct{ path, format string }{{gzPath, "gzip"}, {zstPath, "zstd"}, {lzoPath, "lzop"}} {
		t.Run(c.format, func(t *testing.T) {
			r := runCLI(t, nil, "verify", c.path)
			if r.code != 0 || r.stdout != c.path+": ok\n" {
				t.Fatalf("verify: %v", r)
			}
			r = runCLI(t, nil, "info", "--json", c.path)
			var info infoReport
			if r.code != 0 || json.Unmarshal([]byte(r.stdout), &info) != nil || info.Compression != c.format || !info.Complete {
				t.Fatalf("info: %v", r)
			}
			out := filepath.Join(t.TempDir(), "u")
			if r := runCLI(t, nil, "unpack", c.path, out); r.code != 0 {
				t.Fatalf("unpack: %v", r)
			}
			sameFiles(t, images, out)
			// Compressed data through stdin too.
			f, _ := os.ReadFile(c.path)
			if r := runCLI(t, bytes.NewReader(f), "verify", "-"); r.code != 0 {
				t.Fatalf("verify - : %v", r)
			}
		})
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	archive, images := packed(t)
	for _, args := range [][]string{
		{},
		{"nosuchcommand"},
		{"--nosuchflag", "verify", archive},
		{"verify"},
		{"verify", "--nosuchflag", archive},
		{"info", "--bogus", archive},
		{"info"},
		{"info", archive, archive},
		{"unpack", archive},
		{"unpack", "-x", archive, "dir"},
		{"pack", images},
		{"pack", "--uuid", "nope", images, "x.vma"},
		{"pack", "--ctime", "0", images, "x.vma"},
		{"verify", archive, "-v"},
		{"--progress", "sometimes", "verify", archive},
		{"verify", "-q", "-v", archive},
		{"help", "nosuchcommand"},
	} {
		r := runCLI(t, nil, args...)
		if r.code != 2 {
			t.Errorf("%q: want exit 2, got %v", args, r)
			continue
		}
		wantOneErrorLine(t, r)
	}
	// Help is not an error.
	for _, args := range [][]string{{"--help"}, {"verify", "--help"}, {"help", "unpack"}} {
		r := runCLI(t, nil, args...)
		if r.code != 0 || !strings.Contains(r.stdout, "USAGE") {
			t.Errorf("%q: %v", args, r)
		}
	}
	r := runCLI(t, nil, "verify", "--help")
	if !strings.Contains(r.stdout, "--proxmox") || !strings.Contains(r.stdout, "every cluster") {
		t.Errorf("verify help: %s", r.stdout)
	}
}

func TestCorruptHeader(t *testing.T) {
	t.Parallel()
	archive, _ := packed(t)
	data, _ := os.ReadFile(archive)
	data[40] ^= 0xff
	bad := filepath.Join(t.TempDir(), "bad.vma")
	os.WriteFile(bad, data, 0o644)
	for _, args := range [][]string{{"verify", bad}, {"verify", "--proxmox", bad}, {"info", bad}, {"unpack", bad, filepath.Join(t.TempDir(), "u")}} {
		r := runCLI(t, nil, args...)
		if r.code != 1 {
			t.Fatalf("%q: %v", args, r)
		}
		wantOneErrorLine(t, r, bad, "byte offset 32", "wrong header checksum")
	}
	// Several files: one line per bad file, ok lines for the good ones.
	r := runCLI(t, nil, "verify", archive, bad, "/nonexistent/x.vma")
	if r.code != 1 || r.stdout != archive+": ok\n" || strings.Count(r.stderr, "\n") != 2 {
		t.Fatalf("verify of several files: %v", r)
	}
	if !strings.Contains(r.stderr, "vmasync: /nonexistent/x.vma: no such file or directory\n") {
		t.Errorf("missing file: %q", r.stderr)
	}
	// Not a VMA at all.
	junk := filepath.Join(t.TempDir(), "junk")
	os.WriteFile(junk, []byte("hello world, this is not an archive"), 0o644)
	r = runCLI(t, nil, "info", junk)
	if r.code != 1 {
		t.Fatalf("%v", r)
	}
	wantOneErrorLine(t, r, "not a vma file")
}

func TestPackFailureLeavesNothing(t *testing.T) {
	t.Parallel()
	outDir := t.TempDir()
	out := filepath.Join(outDir, "out.vma")

	// No images: fails before anything is written.
	empty := t.TempDir()
	os.WriteFile(filepath.Join(empty, "qemu-server.conf"), []byte("x"), 0o644)
	r := runCLI(t, nil, "pack", empty, out)
	if r.code != 1 {
		t.Fatalf("%v", r)
	}
	wantOneErrorLine(t, r, "disk-*.raw")

	// A zero-size image fails after the output file was created.
	zero := makeImages(t, map[string]int{"drive-scsi0": 100 << 10})
	os.WriteFile(filepath.Join(zero, "disk-drive-virtio1.raw"), nil, 0o644)
	r = runCLI(t, nil, "pack", zero, out)
	if r.code != 1 {
		t.Fatalf("%v", r)
	}
	wantOneErrorLine(t, r, "empty")
	if names := dirNames(t, outDir); len(names) != 0 {
		t.Fatalf("pack failure left %v", names)
	}

	// An existing OUT is kept unless --force.
	good := makeImages(t, map[string]int{"drive-scsi0": 100 << 10})
	os.WriteFile(out, []byte("keep me"), 0o644)
	r = runCLI(t, nil, "pack", good, out)
	if r.code != 1 {
		t.Fatalf("%v", r)
	}
	wantOneErrorLine(t, r, "already exists")
	if b, _ := os.ReadFile(out); string(b) != "keep me" {
		t.Fatal("existing OUT changed")
	}
	r = runCLI(t, nil, "pack", zero, "--force", out)
	if r.code != 2 {
		t.Fatalf("flag after args: %v", r)
	}
	r = runCLI(t, nil, "pack", "--force", zero, out)
	if r.code != 1 {
		t.Fatalf("%v", r)
	}
	if b, _ := os.ReadFile(out); string(b) != "keep me" {
		t.Fatal("failed --force pack changed OUT")
	}
	if r := runCLI(t, nil, "pack", "--force", "-v", good, out); r.code != 0 || !strings.Contains(r.stdout, out+": ") {
		t.Fatalf("pack --force: %v", r)
	}
	if r := runCLI(t, nil, "verify", out); r.code != 0 {
		t.Fatalf("%v", r)
	}
	if names := dirNames(t, outDir); len(names) != 1 {
		t.Fatalf("left %v", names)
	}
	// A device is written in place, not replaced.
	if r := runCLI(t, nil, "pack", good, os.DevNull); r.code != 0 {
		t.Fatalf("pack to %s: %v", os.DevNull, r)
	}
	if st, err := os.Stat(os.DevNull); err != nil || st.Mode()&os.ModeCharDevice == 0 {
		t.Fatalf("%s is no longer a device: %v %v", os.DevNull, st.Mode(), err)
	}
	// OUT a directory, OUT inside DIR.
	if r := runCLI(t, nil, "pack", good, outDir); r.code != 1 {
		t.Fatalf("%v", r)
	}
	if r := runCLI(t, nil, "pack", good, filepath.Join(good, "x.vma")); r.code != 1 {
		t.Fatalf("%v", r)
	}
}

func TestPackToStdout(t *testing.T) {
	t.Parallel()
	images := makeImages(t, testSizes)
	var out bytes.Buffer
	var errb bytes.Buffer
	code := run([]string{"vmasync", "pack", "--ctime", "1", images, "-"}, strings.NewReader(""), &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	r := runCLI(t, bytes.NewReader(out.Bytes()), "info", "--json", "-")
	var info infoReport
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &info) != nil || info.CTime != 1 || !info.Complete {
		t.Fatalf("%v", r)
	}
}

func TestHumanBytes(t *testing.T) {
	t.Parallel()
	for n, want := range map[uint64]string{
		0: "0 B", 1023: "1023 B", 1024: "1 KiB", 540672: "528 KiB", 3<<20 + 100: "3.0 MiB",
		10737418240: "10 GiB", 1536: "1.5 KiB",
	} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestProgressLine(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	p := newProgress(&env{stderr: &b}, opts{progress: "always"}, "x.vma")
	p.every = 0
	p.setTotal(1000, nil)
	p.start = time.Now().Add(-10 * time.Second)
	p.update(250)
	p.done()
	s := b.String()
	if !strings.HasPrefix(s, "\rx.vma: 250 B  0.0 MB/s  [=====>              ]  25%  ETA 0:30") || !strings.HasSuffix(s, "\r") {
		t.Errorf("progress output %q", s)
	}
	// Cut to the terminal's width, keeping both ends of the name.
	b.Reset()
	p = newProgress(&env{stderr: &b}, opts{progress: "always"}, "push vzdump-qemu-100-2026_11_20-01_00_00.vma.zst")
	p.every, p.width = 0, 80
	p.start = time.Now().Add(-100 * time.Second)
	p.setTotal(1000, func() int64 { return 1000 })
	p.update(10 << 30)
	line := strings.TrimPrefix(b.String(), "\r")
	if len(line) != 79 || !strings.HasPrefix(line, "push vzdump-q") || !strings.Contains(line, "...") ||
		!strings.Contains(line, ".vma.zst: 10 GiB") || !strings.HasSuffix(line, "[====================] 100%") {
		t.Errorf("cut line (%d bytes) %q", len(line), line)
	}
	b.Reset()
	p = newProgress(&env{stderr: &b}, opts{progress: "auto"}, "x")
	p.every = 0
	p.update(1)
	if b.Len() != 0 {
		t.Errorf("auto progress on a non-terminal: %q", b.String())
	}
	// check counts packs, not bytes.
	b.Reset()
	p = newProgress(&env{stderr: &b}, opts{progress: "always"}, "check r")
	p.every, p.items = 0, "packs"
	p.setTotal(40, nil)
	p.update(10)
	if !strings.HasPrefix(b.String(), "\rcheck r: 10/40 packs  [=====>              ]  25%") {
		t.Errorf("counting progress %q", b.String())
	}
	for d, want := range map[time.Duration]string{59 * time.Second: "0:59", 61 * time.Minute: "1:01:00", 1500 * time.Millisecond: "0:02"} {
		if got := clock(d); got != want {
			t.Errorf("clock(%v) = %q, want %q", d, got, want)
		}
	}
}

// TestCorruptionsNeverPanic runs every damage of vma/vmatest through the
// command line: each is exit 1 with one error line (an incomplete archive
// is described by info with exit 0), and unpack leaves nothing behind.
func TestCorruptionsNeverPanic(t *testing.T) {
	t.Parallel()
	var good bytes.Buffer
	if err := vmatest.Write(&good, vmatest.CorruptionSpec()); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, k := range vmatest.Corruptions() {
		d, err := vmatest.Corrupt(good.Bytes(), k)
		if err != nil {
			t.Errorf("%v: %v", k, err)
			continue
		}
		n++
		r := runCLI(t, bytes.NewReader(d.Data), "verify", "-")
		if r.code != 1 {
			t.Errorf("%v: verify: %v", k, r)
			continue
		}
		wantOneErrorLine(t, r, "stdin: ", "byte offset ")

		r = runCLI(t, bytes.NewReader(d.Data), "info", "-")
		switch {
		case d.Incomplete && (r.code != 0 || !strings.Contains(r.stdout, "incomplete: first missing cluster")):
			t.Errorf("%v: info of an incomplete archive: %v", k, r)
		case !d.Incomplete && r.code != 1:
			t.Errorf("%v: info: %v", k, r)
		case !d.Incomplete:
			wantOneErrorLine(t, r, "byte offset ")
		}

		dir := filepath.Join(t.TempDir(), "u")
		r = runCLI(t, bytes.NewReader(d.Data), "unpack", "-", dir)
		if r.code != 1 {
			t.Errorf("%v: unpack: %v", k, r)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("%v: unpack left %s", k, dir)
		}
	}
	if n == 0 {
		t.Fatal("no corruption tested")
	}
}

// TestHostileNames: unpack refuses names that are not plain file names.
func TestHostileNames(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	if err := vmatest.Write(&b, vmatest.HostileSpec()); err != nil {
		t.Fatal(err)
	}
	if r := runCLI(t, bytes.NewReader(b.Bytes()), "verify", "-"); r.code != 0 {
		t.Fatalf("the hostile archive is valid VMA: %v", r)
	}
	parent := t.TempDir()
	dir := filepath.Join(parent, "a", "b")
	r := runCLI(t, bytes.NewReader(b.Bytes()), "unpack", "-", dir)
	if r.code != 1 {
		t.Fatalf("%v", r)
	}
	wantOneErrorLine(t, r, "refusing")
	if names := dirNames(t, parent); len(names) != 0 {
		t.Errorf("unpack wrote %v", names)
	}
}
