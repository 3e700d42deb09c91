package remote

import (
	"context"
	"crypto/sha256"
	"errors"

	"hash"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/rclone/rclone/fs"
	"github.com/rclone/rclone/fs/fserrors"

	"github.com/vmasync/vmasync/chunkplan"
	"github.com/vmasync/vmasync/internal/decompress"
	"github.com/vmasync/vmasync/vma"
)

// PushOptions tune Push.
type PushOptions struct {
	// DryRun reads, checks, optimizes, chunks and compresses the dump but
	// uploads nothing.
	DryRun bool
	// Progress, if set, is called with the bytes of the (decompressed)
	// dump read so far.
	Progress func(read int64)
	// Optimize tunes the streaming reorder (window, spill directory).
	Optimize vma.OptimizeOptions
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
}

// Saving is the fraction of the archive that did not have to be stored.
func (r *PushResult) Saving() float64 {
	if r.ArchiveBytes == 0 {
		return 0
	}
	return float64(r.SharedBytes) / float64(r.ArchiveBytes)
}

// HasBackup reports whether the repository holds a complete backup named
// stem of vmid.
func (r *Repository) HasBackup(ctx context.Context, vmid, stem string) (bool, error) {
	return fs.FileExists(ctx, r.Fs, backupObject(vmid, stem, ManifestExt))
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
	if ok, err := r.HasBackup(ctx, d.VMID, d.Stem); err != nil {
		return nil, err
	} else if ok {
		res.Skipped, res.Reason = true, "already on the remote"
		return res, nil
	}
	prev, err := r.previous(ctx, d)
	if err != nil {
		return nil, err
	}

	in, err := decompress.Open(d.Path)
	if err != nil {
		return nil, err
	}
	defer in.Close()
	var src io.Reader = in
	if in.File != nil {
		src = in.File
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	// Optimize into a pipe, hashing the whole optimized stream on the way.
	pr, pw := io.Pipe()
	whole := sha256.New()
	var optRes *vma.OptimizeResult
	optDone := make(chan error, 1)
	go func() {
		o := opt.Optimize
		o.Context = ctx
		if opt.Progress != nil {
			o.Progress = opt.Progress
		}
		res, err := vma.Optimize(hashWriter{pw, whole}, src, o)
		optRes = res
		pw.CloseWithError(err)
		optDone <- err
	}()

	up := newUploader(ctx, r, opt.DryRun, cancel)
	m := &chunkplan.Manifest{Version: chunkplan.ManifestVersion, Params: r.Params, Source: baseName(d.Path), VMID: d.VMID}
	pending := map[ID]struct{}{}
	var pack packBuilder
	var cbuf []byte
	chunkErr := chunkplan.Chunk(pr, r.Params, func(c chunkplan.ChunkRef, data []byte) error {
		m.Chunks = append(m.Chunks, c)
		m.ArchiveSize += uint64(c.Length)
		h := ID(c.Hash)
		if _, ok := r.Lookup(h); ok {
			res.SharedBytes += int64(c.Length)
			return nil
		}
		if _, ok := pending[h]; ok {
			res.SharedBytes += int64(c.Length)
			return nil
		}
		pending[h] = struct{}{}
		res.NewBytes += int64(c.Length)
		res.NewChunks++
		cbuf = zstdEncoder.EncodeAll(data, cbuf[:0])
		if len(cbuf) < len(data) {
			pack.add(h, len(data), blobZstd, cbuf)
		} else {
			pack.add(h, len(data), blobRaw, data)
		}
		if pack.len() >= r.Config.PackSize {
			return up.send(&pack)
		}
		return nil
	})
	pr.CloseWithError(errChunkingStopped) // unblock the optimizer if chunking failed
	optErr := <-optDone
	if chunkErr == nil && pack.len() > 0 {
		chunkErr = up.send(&pack)
	}
	upErr := up.wait()
	switch {
	case upErr != nil: // the cause when chunking stopped for it
		return nil, upErr
	case optErr != nil && !errors.Is(optErr, errChunkingStopped):
		return nil, optErr
	case chunkErr != nil:
		return nil, chunkErr
	case optErr != nil:
		return nil, optErr
	}
	if cause := context.Cause(ctx); cause != nil && ctx.Err() != nil {
		return nil, cause
	}

	whole.Sum(m.ArchiveSHA256[:0])
	m.BackupTime = optRes.Header.CTime
	for _, dv := range optRes.Header.Devices {
		m.Devices = append(m.Devices, chunkplan.Device{Name: dv.Name, Size: dv.Size})
	}
	res.ArchiveBytes = int64(m.ArchiveSize)
	res.Chunks = len(m.Chunks)
	res.StoredBytes, res.Packs = up.stored, up.packs
	res.Uploaded = up.uploaded

	// Index of everything this push stored, then sidecars, then the
	// manifest that makes the backup visible.
	var mbuf strings.Builder
	if _, err := m.WriteTo(&mbuf); err != nil {
		return nil, err
	}
	if !opt.DryRun {
		if len(up.entries) > 0 {
			b := encodeIndex(up.entries)
			id := ID(sha256.Sum256(b))
			if err := putObject(ctx, r.Fs, indexName(id), b); err != nil {
				return nil, err
			}
			res.Uploaded += int64(len(b))
		}
		for _, ext := range Sidecars {
			b, err := os.ReadFile(strings.TrimSuffix(d.Path, dumpExt(d.Path)) + ext)
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				return nil, err
			}
			if err := putObject(ctx, r.Fs, backupObject(d.VMID, d.Stem, ext), b); err != nil {
				return nil, err
			}
			res.Uploaded += int64(len(b))
		}
		if err := putObject(ctx, r.Fs, backupObject(d.VMID, d.Stem, ManifestExt), []byte(mbuf.String())); err != nil {
			return nil, err
		}
	}
	res.Uploaded += int64(mbuf.Len())
	if prev != nil {
		res.Previous = prev.name
		if prev.m.Params == m.Params {
			c := chunkplan.Compare(prev.m, m)
			res.VsPrevious = &c
		}
	}
	res.Duration = time.Since(start)
	return res, nil
}

var errChunkingStopped = errors.New("push: chunking stopped")

// dumpExt is the ".vma[.zst|.gz|.lzo]" suffix of a dump path.
func dumpExt(p string) string {
	if i := strings.LastIndex(p, ".vma"); i >= 0 {
		return p[i:]
	}
	return ""
}

func baseName(p string) string {
	if i := strings.LastIndexByte(p, os.PathSeparator); i >= 0 {
		return p[i+1:]
	}
	return p
}

type prevBackup struct {
	name string
	m    *chunkplan.Manifest
}

// previous loads the manifest of the VM's newest backup before d.
func (r *Repository) previous(ctx context.Context, d Dump) (*prevBackup, error) {
	backups, err := r.Backups(ctx)
	if err != nil {
		return nil, err
	}
	var best *Backup
	for i := range backups {
		b := &backups[i]
		if b.VMID == d.VMID && b.Stamp < d.Stamp {
			best = b
		}
	}
	if best == nil {
		return nil, nil
	}
	m, err := r.Manifest(ctx, *best)
	if err != nil {
		return nil, err
	}
	return &prevBackup{name: best.Name, m: m}, nil
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

// uploader uploads sealed packs with fs.Config.Transfers goroutines.
type uploader struct {
	ctx    context.Context
	r      *Repository
	dry    bool
	cancel context.CancelCauseFunc
	ch     chan sealedPack
	wg     sync.WaitGroup

	mu               sync.Mutex
	err              error
	entries          []indexEntryOf
	stored, uploaded int64
	packs            int
}

type sealedPack struct {
	data    []byte
	id      ID
	entries []packEntry
}

func newUploader(ctx context.Context, r *Repository, dry bool, cancel context.CancelCauseFunc) *uploader {
	u := &uploader{ctx: ctx, r: r, dry: dry, cancel: cancel, ch: make(chan sealedPack)}
	n := fs.GetConfig(ctx).Transfers
	if n < 1 {
		n = 1
	}
	for range n {
		u.wg.Add(1)
		go u.run()
	}
	return u
}

// send seals the pack and hands it to an upload goroutine, waiting while
// all of them are busy.
func (u *uploader) send(p *packBuilder) error {
	data, id, entries := p.finish()
	select {
	case u.ch <- sealedPack{data, id, entries}:
		return nil
	case <-u.ctx.Done():
		return context.Cause(u.ctx)
	}
}

func (u *uploader) run() {
	defer u.wg.Done()
	for p := range u.ch {
		if u.ctx.Err() != nil {
			continue
		}
		if !u.dry {
			if err := putObject(u.ctx, u.r.Fs, packName(p.id), p.data); err != nil {
				u.mu.Lock()
				if u.err == nil {
					u.err = err
				}
				u.mu.Unlock()
				u.cancel(err)
				continue
			}
		}
		idx := make([]indexEntryOf, len(p.entries))
		var stored int64
		for i, e := range p.entries {
			idx[i] = indexEntryOf{Hash: e.Hash, Location: Location{Pack: p.id, Offset: e.Offset, Stored: e.Stored, Raw: e.Raw, Type: e.Type}}
			stored += int64(e.Stored)
		}
		// In a dry run too, so that later dumps of the run dedup against it.
		u.r.addIndex(idx, p.id, int64(len(p.data)))
		u.mu.Lock()
		u.entries = append(u.entries, idx...)
		u.stored += stored
		u.uploaded += int64(len(p.data))
		u.packs++
		u.mu.Unlock()
	}
}

// wait closes the queue and waits for the uploads; it returns the first
// upload error.
func (u *uploader) wait() error {
	close(u.ch)
	u.wg.Wait()
	return u.err
}

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
	return fserrors.ShouldRetry(err) || fserrors.IsRetryError(err)
}
