// Package report computes what `vmasync report A B` prints: how much of
// backup B is new against backup A, for the whole archive and per device,
// measured four ways:
//
//   - the physical floor: the 64 KiB clusters whose content differs, from
//     per-cluster hashes of the optimized archives, keyed by device name
//     and cluster number (an all-zero cluster is content too; a cluster
//     of B beyond A's device end, or of a device A lacks, is changed);
//   - the new bytes of restic's chunk sizes for the original archives and
//     for the optimized ones (chunkplan.ResticParams; exact with the
//     repository's polynomial);
//   - the new bytes of vmasync's own chunk sizes (chunkplan.DefaultParams)
//     on the optimized archives.
//
// Each archive is read once, as a stream: its bytes go to the restic
// chunker and a parser of the original, and through vma.Optimize (into a
// pipe, no temporary copy) to the cluster hasher, the restic chunker and
// the vmasync chunker of the optimized stream, all running at once. A
// plain file is optimized with positioned reads of a second handle
// instead. A is read completely before B, so that B's clusters are
// compared with A's as they arrive.
//
// A new chunk's bytes are attributed to devices by where the chunk lies in
// its stream: every cluster's data (with its extent header, for the first
// cluster of an extent) belongs to its device, the archive header to a
// "header" row.
//
// Chunks and clusters are identified by 64-bit hash/maphash values (a
// process-wide random seed; the chance that any of a million chunks of B
// collides with one of a million of A is below 10^-7); when a manifest
// takes part, chunks are known by their SHA-256 (as in manifests), mapped
// to 64 bits the same way. A's chunk keys are kept sorted (8 bytes per
// chunk); B's chunks are compared as they arrive, and only the new ones
// are remembered.
package report

import (
	"cmp"
	"context"
	"fmt"
	"hash/maphash"
	"io"
	"os"
	"slices"
	"sort"

	"github.com/restic/chunker"

	"github.com/vmasync/vmasync/chunkplan"
	"github.com/vmasync/vmasync/vma"
)

// Column names one of the three chunk-based measurements.
type Column int

const (
	// ResticOriginal: restic's chunk sizes on the archives as given.
	ResticOriginal Column = iota
	// ResticOptimized: restic's chunk sizes on the optimized archives.
	ResticOptimized
	// Vmasync: vmasync's chunk sizes on the optimized archives.
	Vmasync
	numColumns
)

// Options tune Run.
type Options struct {
	// Params are vmasync's chunk parameters (chunkplan.DefaultParams()
	// when zero).
	Params chunkplan.Params
	// ResticPolynomial is the restic repository's polynomial; 0 uses
	// chunkplan.DefaultPolynomial (a statistically equal but not exact
	// prediction).
	ResticPolynomial chunker.Pol
	// Window and TempDir are passed to vma.Optimize for streamed input.
	Window  int64
	TempDir string
	// Context stops the work when done.
	Context context.Context
	// Progress, if set, is called now and then with the archive bytes
	// read so far (both inputs together).
	Progress func(read int64)
}

// Input is one side of the comparison: an archive or a saved manifest.
type Input struct {
	// Name is how the input is named in the report.
	Name string
	// Manifest, if set, is a saved manifest; R and File are unused.
	Manifest *chunkplan.Manifest
	// R reads the archive (decompressed).
	R io.Reader
	// File, if set, is a second handle on a plain, seekable archive at
	// offset 0 that vma.Optimize reads with positioned reads (R is still
	// read for the original bytes).
	File *os.File
}

// Figures are the new bytes of B for one column.
type Figures struct {
	// NewBytes and NewChunks: the distinct chunks of B not in A.
	NewBytes  uint64 `json:"new_bytes"`
	NewChunks int    `json:"new_chunks"`
}

// ColumnResult is one column for the whole archive.
type ColumnResult struct {
	Figures
	// Params are the chunk parameters used.
	Params chunkplan.Params `json:"-"`
	// TotalBytes and TotalChunks are B's stream size and chunks.
	TotalBytes  uint64 `json:"total_bytes"`
	TotalChunks int    `json:"total_chunks"`
	// SharedBytes are B's bytes in chunks that also occur in A.
	SharedBytes uint64 `json:"shared_bytes"`
}

// Floor is the physical floor for the whole archive or one device.
type Floor struct {
	// Clusters of B (device clusters, zero ones included) and how many of
	// them changed.
	Clusters        uint64 `json:"clusters"`
	ChangedClusters uint64 `json:"changed_clusters"`
	// ChangedBytes are the device bytes of the changed clusters (65536
	// each, less for a device's last cluster).
	ChangedBytes uint64 `json:"changed_bytes"`
}

// DeviceResult is the report for one device of B (or the header row).
type DeviceResult struct {
	Name string `json:"name"`
	Size uint64 `json:"size"`
	// InA reports that A has a device of this name.
	InA bool `json:"in_a"`
	// Floor is nil when unknown (an input is a manifest).
	Floor *Floor `json:"floor"`
	// New holds the attributed new bytes per column; nil when unknown.
	New [numColumns]*uint64 `json:"-"`
}

// Device is a device of an input.
type Device struct {
	Name string `json:"name"`
	Size uint64 `json:"size"`
}

// Side describes an input.
type Side struct {
	Name     string `json:"name"`
	Manifest bool   `json:"manifest"`
	// ArchiveBytes is the archive as read (decompressed), 0 for manifests.
	ArchiveBytes int64 `json:"archive_bytes"`
	// OptimizedBytes is the optimized archive's size.
	OptimizedBytes int64 `json:"optimized_bytes"`
	// Devices of the archive.
	Devices []Device `json:"devices"`
	// CTime is the backup time (Unix seconds).
	CTime int64 `json:"ctime"`
}

// Result is the whole report.
type Result struct {
	A, B Side
	// PolynomialGiven is set when Options.ResticPolynomial was given.
	PolynomialGiven  bool
	ResticPolynomial chunker.Pol
	Params           chunkplan.Params
	// Floor is nil when unknown (an input is a manifest).
	Floor *Floor
	// Columns are nil where the inputs cannot answer.
	Columns [numColumns]*ColumnResult
	// Devices: "header" first (the archive header, configs included),
	// then B's devices in order. Nil when B is a manifest.
	Devices []DeviceResult
}

// interval marks where a device's bytes start in a stream; dev -1 is the
// archive header.
type interval struct {
	start int64
	dev   int
}

// tally collects one column's chunks of a stream. For A it keeps the
// chunk keys (sorted and deduplicated by finish: 8 bytes per chunk, 32 with
// SHA-256); for B it compares each chunk with A's keys as it arrives and
// keeps only the totals and the new chunks' positions.
type tally[K comparable] struct {
	cmp  func(a, b K) int
	isB  bool
	keys []K // A: its keys; B: A's sorted keys
	seen map[K]struct{}
	col  ColumnResult
	news []span
	off  int64
}

// span is a new chunk's place in B's stream.
type span struct{ start, length int64 }

func (t *tally[K]) add(k K, n int) {
	start := t.off
	t.off += int64(n)
	if !t.isB {
		t.keys = append(t.keys, k)
		return
	}
	t.col.TotalChunks++
	t.col.TotalBytes += uint64(n)
	if _, ok := slices.BinarySearchFunc(t.keys, k, t.cmp); ok {
		t.col.SharedBytes += uint64(n)
		return
	}
	if _, ok := t.seen[k]; ok {
		return
	}
	if t.seen == nil {
		t.seen = make(map[K]struct{})
	}
	t.seen[k] = struct{}{}
	t.col.NewChunks++
	t.col.NewBytes += uint64(n)
	t.news = append(t.news, span{start, int64(n)})
}

// finish sorts A's keys for B's lookups.
func (t *tally[K]) finish() {
	slices.SortFunc(t.keys, t.cmp)
	t.keys = slices.CompactFunc(t.keys, func(a, b K) bool { return t.cmp(a, b) == 0 })
	t.keys = slices.Clip(t.keys)
}

// forB returns an empty tally for B that compares with t's keys.
func (t *tally[K]) forB() tally[K] { return tally[K]{cmp: t.cmp, isB: true, keys: t.keys} }

func cmpU64(a, b uint64) int { return cmp.Compare(a, b) }

// clusterTable holds one device's cluster hashes in pages allocated where
// clusters with data are (0 = all-zero cluster).
type clusterTable struct {
	size  uint64
	pages map[uint32]*[512]uint64
}

func (t *clusterTable) set(num uint32, h uint64) {
	p := t.pages[num/512]
	if p == nil {
		p = new([512]uint64)
		t.pages[num/512] = p
	}
	p[num%512] = h
}

func (t *clusterTable) get(num uint32) uint64 {
	if p := t.pages[num/512]; p != nil {
		return p[num%512]
	}
	return 0
}

// scanned is what reading one archive produced.
type scanned struct {
	side        Side
	header      vma.Header
	clusters    map[string]*clusterTable // only for A
	floor       []Floor                  // per device of header, only for B
	origIv      []interval
	optIv       []interval
	orig, ropt  tally[uint64]
	vms         tally[uint64]
	haveColumns [numColumns]bool
}

var seed = maphash.MakeSeed()

// wants says which measurements to make for one archive.
type wants struct {
	floor bool
	cols  [numColumns]bool
	// sha: identify vmasync chunks by SHA-256 (to compare with a
	// manifest) rather than by maphash.
	sha bool
}

// InputError is an error reading one input.
type InputError struct {
	Name string
	Err  error
}

func (e *InputError) Error() string { return e.Name + ": " + e.Err.Error() }
func (e *InputError) Unwrap() error { return e.Err }

// Run compares B with A. Errors reading an input are *InputError.
func Run(a, b Input, opt Options) (*Result, error) {
	if opt.Params == (chunkplan.Params{}) {
		opt.Params = chunkplan.DefaultParams()
	}
	if err := opt.Params.Validate(); err != nil {
		return nil, err
	}
	res := &Result{Params: opt.Params, PolynomialGiven: opt.ResticPolynomial != 0, ResticPolynomial: opt.ResticPolynomial}
	if !res.PolynomialGiven {
		res.ResticPolynomial = chunkplan.DefaultPolynomial
	}
	params := [numColumns]chunkplan.Params{
		ResticOriginal:  chunkplan.ResticParams(res.ResticPolynomial),
		ResticOptimized: chunkplan.ResticParams(res.ResticPolynomial),
		Vmasync:         opt.Params,
	}
	if err := params[ResticOriginal].Validate(); err != nil {
		return nil, fmt.Errorf("restic polynomial: %w", err)
	}
	if opt.Context == nil {
		opt.Context = context.Background()
	}
	w, err := wantsOf(a, b, params)
	if err != nil {
		return nil, err
	}

	var progressBase int64
	sa, err := load(a, params, w, nil, opt, &progressBase)
	if err != nil {
		return nil, &InputError{a.Name, err}
	}
	sb, err := load(b, params, w, sa, opt, &progressBase)
	if err != nil {
		return nil, &InputError{b.Name, err}
	}
	res.A, res.B = sa.side, sb.side
	if w.floor {
		res.Floor = &Floor{}
	}
	if b.Manifest == nil {
		res.addDevices(sa, sb, w.floor)
	}
	for c := range numColumns {
		if w.cols[c] {
			res.addColumn(c, params[c], sb, b.Manifest == nil)
		}
	}
	return res, nil
}

// wantsOf decides which columns can be answered: a manifest answers the
// optimized columns built with its parameters.
func wantsOf(a, b Input, params [numColumns]chunkplan.Params) (wants, error) {
	var w wants
	w.floor = a.Manifest == nil && b.Manifest == nil
	w.sha = !w.floor
	w.cols[ResticOriginal] = w.floor
	for _, c := range []Column{ResticOptimized, Vmasync} {
		ok := true
		for _, in := range []Input{a, b} {
			if in.Manifest != nil && in.Manifest.Params != params[c] {
				ok = false
			}
		}
		w.cols[c] = ok
	}
	if !w.cols[ResticOptimized] && !w.cols[Vmasync] && !w.floor {
		for _, in := range []Input{a, b} {
			if in.Manifest != nil {
				return w, fmt.Errorf("%s: manifest made with other chunk parameters (min %d, average bits %d, max %d, polynomial %#x): nothing to compare with",
					in.Name, in.Manifest.Params.MinSize, in.Manifest.Params.AverageBits, in.Manifest.Params.MaxSize, uint64(in.Manifest.Params.Polynomial))
			}
		}
	}
	return w, nil
}

// addDevices lists B's devices after its header, whether A has each and,
// with floor, each one's floor and their sum.
func (res *Result) addDevices(sa, sb *scanned, floor bool) {
	res.Devices = append(res.Devices, DeviceResult{Name: "header", InA: true})
	for i, d := range sb.header.Devices {
		dr := DeviceResult{Name: d.Name, Size: d.Size}
		if sa.header.Devices != nil {
			dr.InA = slices.ContainsFunc(sa.header.Devices, func(x vma.Device) bool { return x.Name == d.Name })
		} else {
			dr.InA = slices.ContainsFunc(sa.side.Devices, func(x Device) bool { return x.Name == d.Name })
		}
		if floor {
			f := sb.floor[i]
			dr.Floor = &f
			res.Floor.Clusters += f.Clusters
			res.Floor.ChangedClusters += f.ChangedClusters
			res.Floor.ChangedBytes += f.ChangedBytes
		}
		res.Devices = append(res.Devices, dr)
	}
}

// addColumn fills column c from B's tally and, when B was an archive
// (perDevice), spreads its new bytes over the devices.
func (res *Result) addColumn(c Column, p chunkplan.Params, sb *scanned, perDevice bool) {
	var iv []interval
	if perDevice {
		iv = sb.optIv
		if c == ResticOriginal {
			iv = sb.origIv
		}
	}
	var perDev []uint64
	if iv != nil {
		perDev = make([]uint64, len(res.Devices))
	}
	var t *ColumnResult
	var news []span
	switch {
	case c == Vmasync:
		t, news = &sb.vms.col, sb.vms.news
	case c == ResticOriginal:
		t, news = &sb.orig.col, sb.orig.news
	default:
		t, news = &sb.ropt.col, sb.ropt.news
	}
	col := *t
	col.Params = p
	if perDev != nil {
		for _, sp := range news {
			attribute(iv, sp.start, sp.start+sp.length, perDev)
		}
	}
	res.Columns[c] = &col
	for i := range perDev {
		v := perDev[i]
		res.Devices[i].New[c] = &v
	}
}

// attribute adds the bytes of [s, e) to the devices whose intervals they
// overlap.
func attribute(iv []interval, s, e int64, perDev []uint64) {
	i := sort.Search(len(iv), func(i int) bool { return iv[i].start > s }) - 1
	if i < 0 {
		i = 0
	}
	for ; i < len(iv) && iv[i].start < e; i++ {
		lo := max(s, iv[i].start)
		hi := e
		if i+1 < len(iv) {
			hi = min(e, iv[i+1].start)
		}
		if hi > lo {
			perDev[iv[i].dev+1] += uint64(hi - lo)
		}
	}
}
