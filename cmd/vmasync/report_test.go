package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmasync/vmasync/internal/restictest"
	"github.com/vmasync/vmasync/vma"
	"github.com/vmasync/vmasync/vma/vmatest"
)

// reportPair writes day 1 and day 2 of a generated VM (Proxmox-like
// order, 1 % of clusters changed) and returns their paths and day 2's
// spec.
func reportPair(t *testing.T, dir string, size uint64) (a, b string, specB vmatest.Spec) {
	t.Helper()
	spec := vmatest.Spec{
		Disks: []vmatest.Disk{
			{Name: "drive-scsi0", Size: size, Content: vmatest.Mixed},
			{Name: "drive-efidisk0", Size: 540672, Content: vmatest.Mixed},
		},
		Order: vmatest.ProxmoxLike, PullForward: 0.02, Seed: 5, ChangeFraction: 0.01,
	}
	a = filepath.Join(dir, "vzdump-qemu-105-a.vma")
	b = filepath.Join(dir, "vzdump-qemu-105-b.vma")
	for i, p := range []string{a, b} {
		s := spec
		s.Generation = uint64(i)
		writeArchive(t, p, s)
		specB = s
	}
	return a, b, specB
}

type reportJSON struct {
	A, B struct {
		ArchiveBytes   int64 `json:"archive_bytes"`
		OptimizedBytes int64 `json:"optimized_bytes"`
		Manifest       bool  `json:"manifest"`
	}
	Floor *struct {
		Clusters        uint64 `json:"clusters"`
		ChangedClusters uint64 `json:"changed_clusters"`
		ChangedBytes    uint64 `json:"changed_bytes"`
	} `json:"floor"`
	Columns map[string]*struct {
		NewBytes    uint64  `json:"new_bytes"`
		NewChunks   int     `json:"new_chunks"`
		TotalBytes  uint64  `json:"total_bytes"`
		Cost        float64 `json:"cost"`
		UploadSecs  float64 `json:"upload_seconds"`
		SharedBytes uint64  `json:"shared_bytes"`
	} `json:"columns"`
	Devices []struct {
		Name  string
		Floor *struct {
			ChangedClusters uint64 `json:"changed_clusters"`
		} `json:"floor"`
		NewBytes map[string]*uint64 `json:"new_bytes"`
	} `json:"devices"`
}

func runReport(t *testing.T, args ...string) reportJSON {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(append([]string{"vmasync", "report", "--json"}, args...), strings.NewReader(""), &out, &errb)
	if code != 0 {
		t.Fatalf("report %v: exit %d: %s", args, code, errb.String())
	}
	var r reportJSON
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("report --json: %v\n%s", err, out.Bytes())
	}
	return r
}

// TestReportFloorAndManifest checks the floor against the generator's
// record of changed clusters, the per-device attribution against the
// totals, and that a saved manifest gives the same vmasync column.
func TestReportFloorAndManifest(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	a, b, specB := reportPair(t, dir, 48<<20)
	var want uint64
	for num := range uint64(48 << 20 / vma.ClusterSize) {
		if specB.Version(0, num) == 1 {
			want++
		}
	}
	for num := range uint64(9) {
		if specB.Version(1, num) == 1 {
			want++
		}
	}
	// B compressed with zstd goes through the streaming optimizer.
	if out, err := exec.Command("zstd", "-q", "-f", b, "-o", b+".zst").CombinedOutput(); err != nil {
		t.Fatalf("zstd: %v %s", err, out)
	}
	r := runReport(t, "--price-per-tb", "10", "--upload-mbps", "8", a, b+".zst")
	if r.Floor == nil || r.Floor.ChangedClusters != want || want == 0 {
		t.Fatalf("floor %+v, generator changed %d clusters", r.Floor, want)
	}
	vm := r.Columns["vmasync"]
	ro := r.Columns["restic_original"]
	rz := r.Columns["restic_optimized"]
	if vm == nil || ro == nil || rz == nil {
		t.Fatalf("columns missing: %+v", r.Columns)
	}
	// Original archives share (almost) nothing; optimized ones most.
	if ro.NewBytes < ro.TotalBytes*9/10 || rz.NewBytes >= ro.NewBytes || vm.NewBytes >= rz.NewBytes {
		t.Fatalf("implausible: original %d of %d, optimized %d, vmasync %d", ro.NewBytes, ro.TotalBytes, rz.NewBytes, vm.NewBytes)
	}
	if vm.NewBytes > r.Floor.ChangedBytes*13/10 {
		t.Errorf("vmasync new bytes %d above 1.3 × floor %d", vm.NewBytes, r.Floor.ChangedBytes)
	}
	if vm.UploadSecs != float64(vm.NewBytes)/1e6 || vm.Cost != float64(vm.NewBytes)/1e11 {
		t.Errorf("estimates: %v s, cost %v for %d bytes", vm.UploadSecs, vm.Cost, vm.NewBytes)
	}
	for _, col := range []string{"restic_original", "restic_optimized", "vmasync"} {
		var sum uint64
		for _, d := range r.Devices {
			sum += *d.NewBytes[col]
		}
		if sum != r.Columns[col].NewBytes {
			t.Errorf("%s: devices sum to %d, total %d", col, sum, r.Columns[col].NewBytes)
		}
	}
	if d := r.Devices[1]; d.Name != "drive-scsi0" || d.Floor.ChangedClusters == 0 || *d.NewBytes["vmasync"] < vm.NewBytes/2 {
		t.Errorf("device row %+v", d)
	}

	// The same file twice: nothing new.
	same := runReport(t, a, a)
	for k, c := range same.Columns {
		if c.NewBytes != 0 {
			t.Errorf("A against A: %s has %d new bytes", k, c.NewBytes)
		}
	}

	// A saved manifest of A answers the vmasync column alone.
	man := filepath.Join(dir, "a.manifest")
	var errb bytes.Buffer
	if code := run([]string{"vmasync", "manifest", "-o", man, a}, nil, &bytes.Buffer{}, &errb); code != 0 {
		t.Fatalf("manifest: exit %d: %s", code, errb.String())
	}
	rm := runReport(t, man, b)
	if !rm.A.Manifest || rm.Floor != nil || rm.Columns["restic_original"] != nil || rm.Columns["restic_optimized"] != nil {
		t.Fatalf("manifest report answers too much: %+v", rm)
	}
	if got := rm.Columns["vmasync"]; got == nil || got.NewBytes != vm.NewBytes || got.NewChunks != vm.NewChunks {
		t.Fatalf("manifest report vmasync %+v, archive report %+v", got, vm)
	}
	if rm.Devices[0].NewBytes["restic_original"] != nil {
		t.Fatal("n/a column has a per-device figure")
	}
	// A manifest with restic's sizes answers "restic optimized", also as B.
	manR := filepath.Join(dir, "b.restic-manifest")
	if code := run([]string{"vmasync", "manifest", "--polynomial", "0x204368e8ba3e47", "-o", manR, b}, nil, &bytes.Buffer{}, &errb); code != 0 {
		t.Fatalf("manifest --polynomial: exit %d: %s", code, errb.String())
	}
	rr := runReport(t, a, manR)
	if got := rr.Columns["restic_optimized"]; got == nil || got.NewBytes != rz.NewBytes || rr.Columns["vmasync"] != nil || len(rr.Devices) != 0 {
		t.Fatalf("restic manifest as B: %+v, archive report %+v", rr, rz)
	}
}

// resticCmd runs restic with the repository in dir.
func resticCmd(ctx context.Context, t *testing.T, dir, repo string, stdin string, args ...string) []byte {
	t.Helper()
	out, err := resticRun(ctx, dir, repo, stdin, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// resticRun is resticCmd for other goroutines than the test's: it
// returns the failure.
func resticRun(ctx context.Context, dir, repo string, stdin string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "restic", args...)
	// A cache of each repository's own: the two repositories of a pair
	// are copies, with the same id.
	cmd.Env = append(os.Environ(), "RESTIC_REPOSITORY="+repo, "RESTIC_PASSWORD=report-test",
		"RESTIC_CACHE_DIR="+filepath.Join(dir, "cache-"+filepath.Base(repo)))
	if stdin != "" {
		f, err := os.Open(stdin)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		cmd.Stdin = f
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("restic %v: %v\n%s", args, err, stderr.Bytes())
	}
	return out, nil
}

// resticAdded backs file up and returns restic's data_added.
func resticAdded(ctx context.Context, dir, repo, file string) (uint64, error) {
	out, err := resticRun(ctx, dir, repo, file, "backup", "--compression", "off", "--stdin", "--stdin-filename", "vzdump-qemu-105.vma", "--json")
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var line struct {
			MessageType string  `json:"message_type"`
			DataAdded   *uint64 `json:"data_added"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.MessageType == "summary" && line.DataAdded != nil {
			return *line.DataAdded, nil
		}
	}
	return 0, fmt.Errorf("no summary in restic output:\n%s", out)
}

// TestReportPredictsRestic backs up A then B with real restic 0.14
// (--compression off), as vzdump wrote them and optimized, and checks that
// `report --polynomial` predicted restic's data_added for B within 1 % +
// 64 KiB (restic adds blob and pack overhead on top of the chunk bytes).
func TestReportPredictsRestic(t *testing.T) {
	t.Parallel() // mostly waiting for restic
	if _, err := exec.LookPath("restic"); err != nil {
		t.Fatalf("restic not found (%v): apt-get install restic", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	a, b, _ := reportPair(t, dir, 32<<20)
	for _, p := range []string{a, b} {
		var errb bytes.Buffer
		if code := run([]string{"vmasync", "optimize", p, p + ".opt"}, nil, &bytes.Buffer{}, &errb); code != 0 {
			t.Fatalf("optimize: %s", errb.String())
		}
	}
	// A repository's chunker polynomial is random, and with restic's
	// 1 MiB chunks on this small pair a few polynomials find no benefit in
	// optimize at all (the report predicts so, exactly). Those are
	// recognised from the report's own prediction and the pair is tried
	// again with fresh repositories; every attempt checks the prediction.
	for attempt := 1; ; attempt++ {
		gotOrig, gotOpt, predOrig, predOpt := resticAgainstReport(ctx, t, dir, fmt.Sprint(attempt), a, b)
		if predOpt >= predOrig && attempt < 4 {
			t.Logf("attempt %d: the repository's polynomial predicts no benefit (%d vs %d); new repositories", attempt, predOpt, predOrig)
			continue
		}
		// With this pair the benefit depends on the polynomial (measured
		// from 9 % to 25 % less), so only its direction is asserted;
		// docs/benchmarks.md has the sizes.
		if gotOpt >= gotOrig {
			t.Errorf("test pair shows no benefit of optimize: %d vs %d", gotOpt, gotOrig)
		}
		return
	}
}

// resticAgainstReport backs up a then b with restic into two new
// repositories (names ending in tag) sharing one random polynomial, as
// vzdump wrote them and optimized (a.opt, b.opt), and checks that report
// --polynomial predicted restic's data_added for b within 1 % + 64 KiB. It
// returns what restic added and what report predicted.
func resticAgainstReport(ctx context.Context, t *testing.T, dir, tag, a, b string) (gotOrig, gotOpt, predOrig, predOpt uint64) {
	t.Helper()
	repoOrig, repoOpt := filepath.Join(dir, "repo-orig"+tag), filepath.Join(dir, "repo-opt"+tag)
	// A new repository as restic init makes one, with a key that is cheap
	// to derive (restic init spends 3 s calibrating scrypt, and every
	// later command half a second on the key), and the second repository
	// a copy of it: the same polynomial, as with init --from-repo
	// --copy-chunker-params.
	if _, err := restictest.Init(repoOrig, "report-test"); err != nil {
		t.Fatal(err)
	}
	if err := restictest.CopyRepo(repoOrig, repoOpt); err != nil {
		t.Fatal(err)
	}
	// The second repository's backups (a.opt then b.opt) go on beside
	// the first's (a then b).
	var out2 []byte
	var optErr error
	opt := make(chan struct{})
	go func() {
		defer close(opt)
		if out2, optErr = resticRun(ctx, dir, repoOpt, "", "cat", "config"); optErr != nil {
			return
		}
		if _, optErr = resticAdded(ctx, dir, repoOpt, a+".opt"); optErr != nil {
			return
		}
		gotOpt, optErr = resticAdded(ctx, dir, repoOpt, b+".opt")
	}()
	defer func() { <-opt }() // also when the test stops early: restic writes into dir
	out := resticCmd(ctx, t, dir, repoOrig, "", "cat", "config")
	var raw map[string]any
	if err := json.Unmarshal(out, &raw); err != nil {
		t.Fatalf("restic cat config: %v\n%s", err, out)
	}
	polHex, ok := raw["chunker_polynomial"].(string)
	if !ok || polHex == "" {
		t.Fatalf("no chunker_polynomial in %s", out)
	}
	r := runReport(t, "--polynomial", polHex, a, b)
	if _, err := resticAdded(ctx, dir, repoOrig, a); err != nil {
		t.Fatal(err)
	}
	gotOrig, err := resticAdded(ctx, dir, repoOrig, b)
	if err != nil {
		t.Fatal(err)
	}
	<-opt
	if optErr != nil {
		t.Fatal(optErr)
	}
	if !strings.Contains(string(out2), polHex) {
		t.Fatalf("second repository has another polynomial:\n%s\n%s", out, out2)
	}
	for _, c := range []struct {
		col string
		got uint64
	}{{"restic_original", gotOrig}, {"restic_optimized", gotOpt}} {
		pred := r.Columns[c.col].NewBytes
		slack := pred/100 + 64<<10
		t.Logf("%s: predicted %d, restic data_added %d (%+d bytes)", c.col, pred, c.got, int64(c.got)-int64(pred))
		if c.got < pred || c.got > pred+slack {
			t.Errorf("%s: restic added %d, report predicted %d (allowed up to %d more)", c.col, c.got, pred, slack)
		}
	}
	return gotOrig, gotOpt, r.Columns["restic_original"].NewBytes, r.Columns["restic_optimized"].NewBytes
}

// TestReportErrors checks one-line errors and exit codes.
func TestReportErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	a, b, _ := reportPair(t, dir, 4<<20)
	data, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	trunc := filepath.Join(dir, "trunc.vma")
	if err := os.WriteFile(trunc, data[:len(data)*2/3], 0o644); err != nil {
		t.Fatal(err)
	}
	resticMan := filepath.Join(dir, "restic.manifest")
	if code := run([]string{"vmasync", "manifest", "--polynomial", "0x204368e8ba3e47", "-o", resticMan, a}, nil, &bytes.Buffer{}, &bytes.Buffer{}); code != 0 {
		t.Fatal("manifest failed")
	}
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"report", a, trunc}, 1, "vmasync: " + trunc + ": byte offset "},
		{[]string{"report", a, filepath.Join(dir, "nosuch")}, 1, "nosuch: no such file"},
		{[]string{"report", "--polynomial", "0x1234", a, b}, 2, "not an irreducible polynomial"},
		{[]string{"report", "--polynomial", "0x3DA3358B4DC173", resticMan, b}, 1, "manifest made with other chunk parameters"},
		{[]string{"report", a}, 2, "missing arguments"},
		{[]string{"report", "-", b}, 2, "not stdin"},
		{[]string{"manifest", a}, 2, "-o OUT is required"},
		{[]string{"manifest", a, "-o", "x"}, 2, "options must come before"},
		{[]string{"manifest", "-o", dir, a}, 1, "is a directory"},
	} {
		var errb bytes.Buffer
		code := run(append([]string{"vmasync"}, tc.args...), strings.NewReader(""), &bytes.Buffer{}, &errb)
		msg := errb.String()
		if code != tc.code || !strings.Contains(msg, tc.msg) || strings.Count(msg, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and %q on one line", tc.args, code, msg, tc.code, tc.msg)
		}
	}
}
