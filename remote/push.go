package remote

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"hash"
	"io"
	"os"
	"strings"
	"time"

	"github.com/vmasync/vmasync/chunkplan"
	"github.com/vmasync/vmasync/internal/input"
	"github.com/vmasync/vmasync/internal/pipe"
	"github.com/vmasync/vmasync/internal/vzdump"
	"github.com/vmasync/vmasync/remote/backend"
	"github.com/vmasync/vmasync/remote/tree"
	"github.com/vmasync/vmasync/vma"
)

// PushOptions tune Push.
type PushOptions struct {
	// DryRun reads, checks, optimizes, chunks and compresses the dump but
	// uploads nothing.
	DryRun bool
	// Progress, if set, is called now and then with the bytes of the
	// (decompressed) dump read so far and how far into the dump's file
	// that is (for a compressed dump, bytes of compressed data), which
	// against the file's size gives the share done.
	Progress func(read, fileRead int64)
	// Optimize tunes the streaming reorder (window, spill directory).
	Optimize vma.OptimizeOptions
	// Compression is the zstd level of new chunks ("" means
	// CompressFastest).
	Compression CompressionLevel
}

// PushResult reports one pushed dump.
type PushResult struct {
	Dump Dump
	// Skipped is set (with Reason) when the dump was not pushed.
	Skipped bool
	Reason  string
	// ArchiveBytes is the size of the optimized VMA; Chunks its chunk
	// count.
	ArchiveBytes int64
	Chunks       int
	// NewBytes and NewChunks are the chunks the repository did not have
	// (before compression); SharedBytes the rest.
	NewBytes, SharedBytes int64
	NewChunks             int
	// StoredBytes is NewBytes after compression (pack blobs); Uploaded
	// what was sent: packs, index, sidecars and manifest.
	StoredBytes, Uploaded int64
	Packs                 int
	// Previous names the VM's previous backup on the remote ("" none) and
	// VsPrevious compares this backup's chunks with it.
	Previous   string
	VsPrevious *chunkplan.Comparison
	Duration   time.Duration
	// Healed is set when the backup was on the remote but damaged (what
	// was wrong) and this push stored it again.
	Healed string
	// Metadata is what was uploaded besides the new chunks' blobs: index
	// objects, pack headers, chunk tree nodes, sidecars and the manifest.
	// TreeStored is the bytes of new chunk tree nodes (format 3).
	Metadata, TreeStored int64
	TreeNodes            int
	// ResumedBytes are the shared bytes found in packs that an interrupted
	// push left without an index (read back from their headers by this
	// run): stored for this dump before, not saved by deduplication.
	ResumedBytes int64
}

// Saving is the fraction of the archive that did not have to be stored
// because earlier backups hold it (chunks an interrupted push of this
// dump uploaded do not count).
func (r *PushResult) Saving() float64 {
	if r.ArchiveBytes == 0 {
		return 0
	}
	return float64(r.SharedBytes-r.ResumedBytes) / float64(r.ArchiveBytes)
}

// Push reads the dump once (decompress, verify, optimize, chunk, hash),
// uploads the chunks the repository does not have yet in compressed packs,
// then its index, its sidecars and, last, its manifest: the backup becomes
// visible only when all of its data is stored. The index must be loaded
// (LoadIndex). The local dump is only read.
func (r *Repository) Push(ctx context.Context, d Dump, opt PushOptions) (res *PushResult, err error) {
	start := time.Now()
	res = &PushResult{Dump: d}
	if r.index == nil {
		return nil, errors.New("push: index not loaded")
	}
	state, why, err := r.BackupState(ctx, d.VMID, d.Stem)
	if err != nil {
		return nil, err
	}
	switch state {
	case BackupComplete:
		res.Skipped, res.Reason = true, "already on the remote"
		return res, nil
	case BackupDamaged:
		res.Healed = why
	}
	prev, err := r.previous(ctx, d)
	if err != nil {
		return nil, err
	}
	m, root, up, err := r.pushData(ctx, d, opt, res)
	if err != nil {
		return nil, err
	}
	if err := r.commitPush(ctx, d, m, root, up, opt.DryRun, res); err != nil {
		return nil, err
	}
	if prev != nil {
		res.Previous = prev.b.Name
		res.VsPrevious = r.vsPrevious(ctx, prev, m, root, opt.DryRun)
	}
	res.Duration = time.Since(start)
	return res, nil
}

// pushData runs the stages read → optimize → chunk → compress and pack →
// upload, and returns the backup's manifest, the root of its chunk tree
// (format 3; nil before) and the uploader, whose index entries are not
// all written yet.
func (r *Repository) pushData(ctx context.Context, d Dump, opt PushOptions, res *PushResult) (*chunkplan.Manifest, *tree.Ref, *uploader, error) {
	in, err := input.Open(ctx, d.Path, input.Options{})
	if err != nil {
		return nil, nil, nil, err
	}
	defer in.Close()

	// Uploads run under the caller's context: an upload that fails stops
	// the reading and chunking (ctx) but lets the uploads under way finish,
	// so that the next run finds those packs complete.
	upCtx := ctx
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	// Optimize into a buffered pipe, hashing the whole optimized stream on
	// the way: the buffer lets the optimizer run ahead of the chunker
	// instead of waiting for every extent to be consumed.
	pr, pw := pipe.New(pipeBlock, pipeBlocks)
	whole := sha256.New()
	var optRes *vma.OptimizeResult
	optDone := make(chan error, 1)
	go func() {
		var err error
		optRes, err = optimizeDump(ctx, in, hashWriter{pw, whole}, opt)
		pw.CloseWithError(err)
		optDone <- err
	}()

	up := newUploader(ctx, upCtx, r, opt.DryRun, cancel)
	m := &chunkplan.Manifest{Version: chunkplan.ManifestVersion, Params: r.Params, Source: baseName(d.Path), VMID: d.VMID}
	run := &pushRun{r: r, res: res, m: m, pending: map[ID]struct{}{}, pendingMax: pendingTrim,
		cp: newCompressPool(ctx, r.Config.PackSize, opt.Compression, up)}
	if r.Config.Version >= 3 {
		run.tw = tree.NewWriter(run.node)
		run.enc = blobEncoder(opt.Compression)
	}
	chunkErr := chunkplan.Chunk(pr, r.Params, run.chunk)
	if run.cur != nil {
		run.cp.submit(run.cur)
	}
	var root *tree.Ref
	if chunkErr == nil && run.tw != nil {
		root, chunkErr = run.closeTree()
	}
	packErr := run.cp.close(chunkErr == nil)
	pr.CloseWithError(errChunkingStopped) // unblock the optimizer if chunking failed
	optErr := <-optDone
	if chunkErr == nil {
		chunkErr = packErr
	}
	if err := pushCause(ctx, up.wait(), optErr, chunkErr); err != nil {
		return nil, nil, nil, err
	}
	whole.Sum(m.ArchiveSHA256[:0])
	m.BackupTime = optRes.Header.CTime
	for _, dv := range optRes.Header.Devices {
		m.Devices = append(m.Devices, chunkplan.Device{Name: dv.Name, Size: dv.Size})
	}
	return m, root, up, nil
}

// optimizeDump optimizes the opened dump into w, reporting progress as
// the bytes read and how far into the dump's file that is (for a
// compressed dump, bytes of compressed data).
func optimizeDump(ctx context.Context, in *input.Input, w io.Writer, opt PushOptions) (*vma.OptimizeResult, error) {
	o := opt.Optimize
	if opt.Progress != nil {
		o.Progress = in.Track(func(p input.Progress) { opt.Progress(p.Read, p.Pos) })
	}
	return vma.Optimize(ctx, w, in.Source(), o)
}

// commitPush writes what makes the backup visible, in this order: the
// last part of the index of everything this push stored, the sidecars,
// then the manifest (format 3: the root object of the chunk tree root).
func (r *Repository) commitPush(ctx context.Context, d Dump, m *chunkplan.Manifest, root *tree.Ref, up *uploader, dry bool, res *PushResult) error {
	res.ArchiveBytes = int64(m.ArchiveSize)
	res.StoredBytes, res.Packs = up.stored-res.TreeStored, up.packs
	var mbuf bytes.Buffer
	if root != nil {
		b, err := encodeRoot(m, *root)
		if err != nil {
			return err
		}
		mbuf.Write(b)
	} else if _, err := m.WriteTo(&mbuf); err != nil {
		return err
	}
	if err := up.writeIndex(ctx, up.entries); err != nil {
		return err
	}
	res.Uploaded = up.uploaded + int64(mbuf.Len())
	res.Metadata = res.Uploaded - res.StoredBytes
	if dry {
		return nil
	}
	n, err := r.pushSidecars(ctx, d)
	if err != nil {
		return err
	}
	res.Uploaded += n
	return r.B.Save(ctx, backupObject(d.VMID, d.Stem, ManifestExt), mbuf.Bytes())
}

var errChunkingStopped = errors.New("push: chunking stopped")

// pushCause picks the error that explains why a push stopped: an upload
// failure (chunking stopped for it), else the optimizer's own error (a
// damaged dump), else the chunker's, else a cancellation.
func pushCause(ctx context.Context, upErr, optErr, chunkErr error) error {
	switch {
	case upErr != nil:
		return upErr
	case optErr != nil && !errors.Is(optErr, errChunkingStopped):
		return optErr
	case chunkErr != nil:
		return chunkErr
	case optErr != nil:
		return optErr
	}
	if cause := context.Cause(ctx); cause != nil && ctx.Err() != nil {
		return cause
	}
	return nil
}

// pushSidecars uploads the dump's .log, .notes and .protected files,
// found under Proxmox VE's names (SidecarPaths), and returns their bytes.
func (r *Repository) pushSidecars(ctx context.Context, d Dump) (int64, error) {
	var n int64
	for _, ext := range vzdump.Sidecars {
		for _, p := range vzdump.SidecarPaths(d.Path, ext) {
			b, err := os.ReadFile(p)
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				return n, err
			}
			if err := r.B.Save(ctx, backupObject(d.VMID, d.Stem, ext), b); err != nil {
				return n, err
			}
			n += int64(len(b))
			break
		}
	}
	return n, nil
}

func baseName(p string) string {
	if i := strings.LastIndexByte(p, os.PathSeparator); i >= 0 {
		return p[i+1:]
	}
	return p
}

type prevBackup struct {
	b Backup
	s *storedManifest
}

// vsPrevious compares the pushed backup (m, and its tree root in format
// 3) with the VM's previous one: chunkplan.Compare of the two lists, or,
// for two trees, compareTrees. nil when they cannot be compared (other
// chunking, a tree against a format 2 manifest, a dry run of a tree,
// whose nodes were not stored, or a previous tree that does not read,
// which is warned about: the push itself succeeded).
func (r *Repository) vsPrevious(ctx context.Context, prev *prevBackup, m *chunkplan.Manifest, root *tree.Ref, dry bool) *chunkplan.Comparison {
	if prev.s.m.Params != m.Params || (prev.s.tree == nil) != (root == nil) || (root != nil && dry) {
		return nil
	}
	if root == nil {
		c := chunkplan.Compare(prev.s.m, m)
		return &c
	}
	c, err := r.compareTrees(ctx, prev.b, prev.s, Backup{Name: "this push"}, &storedManifest{m: m, tree: root})
	if err != nil {
		r.warnf("comparing with %s: %v", prev.b.Name, err)
		return nil
	}
	return &c
}

// previous reads the manifest object of the VM's newest backup before d.
func (r *Repository) previous(ctx context.Context, d Dump) (*prevBackup, error) {
	backups, err := r.Backups(ctx)
	if err != nil {
		return nil, err
	}
	// The newest earlier backup whose manifest reads: a damaged one is
	// only reported (check, repair), it does not stop this push.
	for i := len(backups) - 1; i >= 0; i-- {
		b := backups[i]
		if b.VMID != d.VMID || b.Stamp >= d.Stamp {
			continue
		}
		s, err := r.readManifest(ctx, b)
		if errors.Is(err, ErrCorruptObject) {
			r.warnf("%v", err)
			continue
		}
		if err != nil {
			return nil, err
		}
		return &prevBackup{b: b, s: s}, nil
	}
	return nil, nil
}

type hashWriter struct {
	w io.Writer
	h hash.Hash
}

func (w hashWriter) Write(p []byte) (int, error) {
	n, err := w.w.Write(p)
	w.h.Write(p[:n])
	return n, err
}

// Sizes of the buffered pipe between the optimizer and the chunker.
const (
	pipeBlock  = 1 << 20
	pipeBlocks = 8
)

// Retriable reports whether a failed push may succeed when run again
// (network and server errors, as rclone classifies them).
func Retriable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var fe *vma.FormatError
	if errors.As(err, &fe) || errors.Is(err, vma.ErrCorrupt) {
		return false
	}
	return errors.Is(err, backend.ErrTransient)
}

// PushRetrying is Push, tried up to attempts times while it fails with an
// error the remote may not repeat (Retriable: network and server errors).
// Before each new attempt it calls onRetry (if set), waits a second per
// attempt so far, and reloads the index, so that the packs the failed
// attempt uploaded are found and not uploaded again. It returns the
// attempts made.
func (r *Repository) PushRetrying(ctx context.Context, d Dump, opt PushOptions, attempts int, onRetry func(attempt int, err error)) (*PushResult, int, error) {
	for attempt := 1; ; attempt++ {
		res, err := r.Push(ctx, d, opt)
		if err == nil || attempt >= attempts || !Retriable(err) || ctx.Err() != nil {
			return res, attempt, err
		}
		if onRetry != nil {
			onRetry(attempt, err)
		}
		select {
		case <-time.After(time.Duration(attempt) * time.Second):
		case <-ctx.Done():
			return nil, attempt, ctx.Err()
		}
		if _, err := r.LoadIndex(ctx, !opt.DryRun); err != nil {
			return nil, attempt, err
		}
	}
}
