package remote

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/vmasync/vmasync/chunkplan"
	"github.com/vmasync/vmasync/internal/decompress"
	"github.com/vmasync/vmasync/internal/pipe"
	"github.com/vmasync/vmasync/internal/vzdump"
	"github.com/vmasync/vmasync/remote/backend"
	"github.com/vmasync/vmasync/remote/index"
	"github.com/vmasync/vmasync/remote/pack"
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

// CompressionLevel is how hard push compresses new chunks. Every level
// writes the same blob format, so backups made at different levels share
// a repository and deduplicate against each other.
type CompressionLevel string

// The compression levels: klauspost/compress's zstd encoder levels.
const (
	// CompressFastest is about zstd level 1, as Proxmox Backup Server
	// compresses its chunks: the default, fastest for first pushes.
	CompressFastest CompressionLevel = "fastest"
	// CompressDefault is about zstd level 3, restic's "auto".
	CompressDefault CompressionLevel = "default"
	// CompressBetter is about zstd level 7: smaller uploads for more CPU.
	CompressBetter CompressionLevel = "better"
)

// ParseCompressionLevel checks a level's name.
func ParseCompressionLevel(s string) (CompressionLevel, error) {
	if _, ok := blobEncoders[CompressionLevel(s)]; !ok {
		return "", fmt.Errorf("unknown compression level %q (fastest, default or better)", s)
	}
	return CompressionLevel(s), nil
}

// blobEncoders compress blobs at each level: one zstd frame per chunk,
// safe for concurrent use by the compression workers; each is made when
// first used. The frames carry no checksum of their own: readers check
// every chunk against its SHA-256, and xxhash over every new byte cost
// 1.5 % of a first push's CPU.
var blobEncoders = map[CompressionLevel]func() *zstd.Encoder{
	CompressFastest: newBlobEncoder(zstd.SpeedFastest),
	CompressDefault: newBlobEncoder(zstd.SpeedDefault),
	CompressBetter:  newBlobEncoder(zstd.SpeedBetterCompression),
}

func newBlobEncoder(level zstd.EncoderLevel) func() *zstd.Encoder {
	return sync.OnceValue(func() *zstd.Encoder {
		e, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(level), zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)), zstd.WithEncoderCRC(false))
		return e
	})
}

// blobEncoder returns the encoder of level l ("" is CompressFastest).
func blobEncoder(l CompressionLevel) *zstd.Encoder {
	if l == "" {
		l = CompressFastest
	}
	return blobEncoders[l]()
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
}

// Saving is the fraction of the archive that did not have to be stored.
func (r *PushResult) Saving() float64 {
	if r.ArchiveBytes == 0 {
		return 0
	}
	return float64(r.SharedBytes) / float64(r.ArchiveBytes)
}

// HasBackup reports whether the repository holds a manifest for the
// backup named stem of vmid (complete or not: see BackupState).
func (r *Repository) HasBackup(ctx context.Context, vmid, stem string) (bool, error) {
	_, err := r.B.Stat(ctx, backupObject(vmid, stem, ManifestExt))
	if errors.Is(err, backend.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// BackupState says whether a backup is stored and usable.
type BackupState int

const (
	// BackupAbsent: no manifest.
	BackupAbsent BackupState = iota
	// BackupComplete: the manifest is whole and, as far as the index and
	// the listing of packs tell, every chunk it needs is stored.
	BackupComplete
	// BackupDamaged: the manifest is damaged, or chunks it needs are gone.
	BackupDamaged
)

// BackupState checks the backup stem of vmid without downloading packs:
// the manifest's size against its header (a truncated manifest is
// damaged), and, after LoadIndex set aside damaged objects or dropped
// entries, every chunk of the manifest against the index. The index must
// be loaded. reason says what is wrong with a damaged backup.
func (r *Repository) BackupState(ctx context.Context, vmid, stem string) (st BackupState, reason string, err error) {
	name := backupObject(vmid, stem, ManifestExt)
	size, err := r.B.Stat(ctx, name)
	if errors.Is(err, backend.ErrNotFound) {
		return BackupAbsent, "", nil
	}
	if err != nil {
		return 0, "", err
	}
	prefix, err := r.B.Load(ctx, name, 0, min(size, 64<<10))
	if err != nil {
		return 0, "", err
	}
	want, err := chunkplan.ManifestSize(prefix)
	if err == nil && want != size {
		err = fmt.Errorf("%d bytes, its header says %d", size, want)
	}
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return BackupDamaged, fmt.Sprintf("manifest %s is damaged: %v", name, err), nil
	}
	r.mu.Lock()
	suspect := len(r.damage) > 0 || r.dropped > 0 || r.hasDamagedDir
	r.mu.Unlock()
	if !suspect && err == nil {
		return BackupComplete, "", nil
	}
	m, err := r.Manifest(ctx, Backup{VMID: vmid, Name: stem, Object: name})
	if errors.Is(err, ErrCorruptObject) {
		return BackupDamaged, err.Error(), nil
	}
	if err != nil {
		return 0, "", err
	}
	missing := 0
	for _, c := range m.Chunks {
		if _, ok := r.Lookup(ID(c.Hash)); !ok {
			missing++
		}
	}
	if missing > 0 {
		return BackupDamaged, fmt.Sprintf("%d of its %d chunks are no longer stored", missing, len(m.Chunks)), nil
	}
	return BackupComplete, "", nil
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

	in, err := decompress.Open(d.Path)
	if err != nil {
		return nil, err
	}
	defer in.Close()
	var src io.Reader = in
	if in.File != nil {
		src = in.File
	}

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
		o := opt.Optimize
		if opt.Progress != nil {
			o.Progress = func(read int64) {
				fileRead := read // a plain dump is read as it is
				if in.File == nil {
					fileRead = in.InputRead()
				}
				opt.Progress(read, fileRead)
			}
		}
		res, err := vma.Optimize(ctx, hashWriter{pw, whole}, src, o)
		optRes = res
		pw.CloseWithError(err)
		optDone <- err
	}()

	up := newUploader(ctx, upCtx, r, opt.DryRun, cancel)
	m := &chunkplan.Manifest{Version: chunkplan.ManifestVersion, Params: r.Params, Source: baseName(d.Path), VMID: d.VMID}
	// pending holds the new chunks sent to be packed that the index
	// does not hold yet; it is trimmed to those whenever it has doubled.
	pending := map[ID]struct{}{}
	pendingMax := pendingTrim
	// New chunks are copied into batches that a pool of goroutines
	// compresses in parallel; packs are filled from the batches in
	// stream order, so a pack's content does not depend on scheduling.
	cp := newCompressPool(ctx, r.Config.PackSize, opt.Compression, up)
	var cur *blobBatch
	chunkErr := chunkplan.Chunk(pr, r.Params, func(c chunkplan.ChunkRef, data []byte) error {
		m.Chunks = append(m.Chunks, c)
		m.ArchiveSize += uint64(c.Length)
		h := ID(c.Hash)
		if _, ok := r.Lookup(h); ok {
			res.SharedBytes += int64(c.Length)
			return nil
		}
		n := len(pending)
		pending[h] = struct{}{} // one map probe: the length tells whether h was there
		if len(pending) == n {
			res.SharedBytes += int64(c.Length)
			return nil
		}
		res.NewBytes += int64(c.Length)
		res.NewChunks++
		if len(pending) >= pendingMax {
			pending = r.unindexed(pending)
			pendingMax = max(pendingTrim, 2*len(pending))
		}
		if cur != nil && len(cur.raw)+len(data) > batchBytes {
			cp.submit(cur)
			cur = nil
		}
		if cur == nil {
			var err error
			if cur, err = cp.get(); err != nil {
				return err
			}
		}
		cur.add(h, data)
		return nil
	})
	if cur != nil {
		cp.submit(cur)
	}
	packErr := cp.close(chunkErr == nil)
	pr.CloseWithError(errChunkingStopped) // unblock the optimizer if chunking failed
	optErr := <-optDone
	if chunkErr == nil {
		chunkErr = packErr
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

	// The last part of the index of everything this push stored, then
	// sidecars, then the manifest that makes the backup visible.
	var mbuf bytes.Buffer
	if _, err := m.WriteTo(&mbuf); err != nil {
		return nil, err
	}
	if err := up.writeIndex(ctx, up.entries); err != nil {
		return nil, err
	}
	res.Uploaded = up.uploaded
	if !opt.DryRun {
		n, err := r.pushSidecars(ctx, d)
		if err != nil {
			return nil, err
		}
		res.Uploaded += n
		if err := r.B.Save(ctx, backupObject(d.VMID, d.Stem, ManifestExt), mbuf.Bytes()); err != nil {
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

// pendingTrim is the smallest size at which push trims its set of
// pending chunks to those not yet indexed.
var pendingTrim = 1 << 16

// unindexed returns, as a new map (a Go map does not shrink when entries
// are deleted), the hashes of set that the index does not hold.
func (r *Repository) unindexed(set map[ID]struct{}) map[ID]struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[ID]struct{}, len(set)/4)
	for h := range set {
		if !r.index.Has(h) {
			out[h] = struct{}{}
		}
	}
	return out
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
	// The newest earlier backup whose manifest reads: a damaged one is
	// only reported (check, repair), it does not stop this push.
	for i := len(backups) - 1; i >= 0; i-- {
		b := backups[i]
		if b.VMID != d.VMID || b.Stamp >= d.Stamp {
			continue
		}
		m, err := r.Manifest(ctx, b)
		if errors.Is(err, ErrCorruptObject) {
			r.warnf("%v", err)
			continue
		}
		if err != nil {
			return nil, err
		}
		return &prevBackup{name: b.Name, m: m}, nil
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

// uploader uploads sealed packs with Repository.Transfers goroutines.
type uploader struct {
	ctx    context.Context // the push's: done when it stops
	upCtx  context.Context // the uploads'
	r      *Repository
	dry    bool
	cancel context.CancelCauseFunc
	ch     chan sealedPack
	wg     sync.WaitGroup
	// spare holds pack buffers back from the upload goroutines for reuse.
	spare chan []byte

	mu               sync.Mutex
	err              error
	entries          []index.Entry
	stored, uploaded int64
	packs            int
}

type sealedPack struct {
	data     []byte
	blobsEnd int
	entries  []pack.Entry
}

func newUploader(ctx, upCtx context.Context, r *Repository, dry bool, cancel context.CancelCauseFunc) *uploader {
	n := r.Transfers
	if n < 1 {
		n = 4
	}
	u := &uploader{ctx: ctx, upCtx: upCtx, r: r, dry: dry, cancel: cancel, ch: make(chan sealedPack), spare: make(chan []byte, 2)}
	for range n {
		u.wg.Add(1)
		go u.run()
	}
	return u
}

// buffer returns an empty buffer for the next pack, reusing one whose
// upload has finished when there is one.
func (u *uploader) buffer() []byte {
	select {
	case b := <-u.spare:
		return b[:0]
	default:
		return make([]byte, 0, u.r.Config.PackSize+packSlack)
	}
}

// packSlack is what a pack may hold beyond PackSize: the blob that made
// it full (a chunk is at most 64 KiB with the default parameters) and the
// header (41 bytes per blob).
const packSlack = 1 << 20

// send seals the pack and hands it to an upload goroutine, waiting while
// all of them are busy.
func (u *uploader) send(p *pack.Builder) error {
	data, blobsEnd, entries := p.Seal()
	select {
	case u.ch <- sealedPack{data, blobsEnd, entries}:
		return nil
	case <-u.ctx.Done():
		return context.Cause(u.ctx)
	}
}

func (u *uploader) run() {
	defer u.wg.Done()
	ctx := u.upCtx
	for p := range u.ch {
		if u.ctx.Err() != nil {
			continue
		}
		id := pack.IDOf(u.r.Config.Version, p.data, p.blobsEnd)
		if !u.dry {
			if _, err := u.r.saveContent(ctx, packName(id), p.data); err != nil {
				u.fail(err)
				continue
			}
		}
		idx := make([]index.Entry, len(p.entries))
		var stored int64
		for i, e := range p.entries {
			idx[i] = index.Entry{Hash: e.Hash, Location: Location{Pack: id, Offset: e.Offset, Stored: e.Stored, Raw: e.Raw, Type: e.Type}}
			stored += int64(e.Stored)
		}
		// In a dry run too, so that later dumps of the run dedup against it.
		u.r.addIndex(idx, id, int64(len(p.data)))
		u.mu.Lock()
		u.entries = append(u.entries, idx...)
		var full []index.Entry
		if len(u.entries) >= indexEvery {
			full, u.entries = u.entries, nil
		}
		u.stored += stored
		u.uploaded += int64(len(p.data))
		u.packs++
		u.mu.Unlock()
		select {
		case u.spare <- p.data:
		default:
		}
		if full != nil {
			if err := u.writeIndex(ctx, full); err != nil {
				u.fail(err)
			}
		}
	}
}

// indexEvery is how many index entries of uploaded packs a push holds
// before it writes them as an index object (about 1 GiB of new chunks
// at the default chunk size), so that they do not take memory in
// proportion to all the new data; the rest is written at the end.
var indexEvery = 1 << 17

// writeIndex uploads entries as an index object (not in a dry run),
// counting its bytes as uploaded.
func (u *uploader) writeIndex(ctx context.Context, entries []index.Entry) error {
	if u.dry || len(entries) == 0 {
		return nil
	}
	_, n, err := u.r.writeIndex(ctx, entries)
	if err != nil {
		return err
	}
	u.mu.Lock()
	u.uploaded += int64(n)
	u.mu.Unlock()
	return nil
}

// fail records the push's first upload error and stops the push.
func (u *uploader) fail(err error) {
	u.mu.Lock()
	if u.err == nil {
		u.err = err
	}
	u.mu.Unlock()
	u.cancel(err)
}

// wait closes the queue and waits for the uploads; it returns the first
// upload error.
func (u *uploader) wait() error {
	close(u.ch)
	u.wg.Wait()
	return u.err
}

// batchBytes bounds the chunk bytes of one compression batch: large
// enough that handing batches between goroutines costs little against
// compressing them, small enough to keep all workers busy.
const batchBytes = 512 << 10

// blobBatch is a run of new chunks, in stream order, compressed by one
// worker: each chunk is its own zstd frame (or stored raw), so that every
// blob stays independently decodable at its offset in the pack.
type blobBatch struct {
	raw    []byte // the chunks' bytes, one after another
	chunks []batchChunk
	out    []byte // the stored blobs, one after another
	done   chan struct{}
}

type batchChunk struct {
	hash   ID
	raw    uint32
	stored uint32
	typ    uint8
}

func (b *blobBatch) add(h ID, data []byte) {
	b.chunks = append(b.chunks, batchChunk{hash: h, raw: uint32(len(data))})
	b.raw = append(b.raw, data...)
}

// compress fills out with every chunk's blob.
func (b *blobBatch) compress(enc *zstd.Encoder) {
	b.out = b.out[:0]
	raw := b.raw
	for i := range b.chunks {
		c := &b.chunks[i]
		data := raw[:c.raw]
		raw = raw[c.raw:]
		n := len(b.out)
		b.out = enc.EncodeAll(data, b.out)
		if len(b.out)-n < len(data) {
			c.typ = pack.BlobZstd
		} else {
			b.out = append(b.out[:n], data...)
			c.typ = pack.BlobRaw
		}
		c.stored = uint32(len(b.out) - n)
	}
}

// compressPool compresses batches with one goroutine per CPU and packs
// their blobs, in submission order, into packs for the uploader.
type compressPool struct {
	ctx      context.Context
	up       *uploader
	packSize int
	free     chan *blobBatch // batches ready to be filled
	work     chan *blobBatch // to the workers
	order    chan *blobBatch // to the packer, in submission order
	workers  sync.WaitGroup
	packed   chan error // the packer's result
	flush    bool       // send the last, partial pack (set by close)
}

func newCompressPool(ctx context.Context, packSize int, level CompressionLevel, up *uploader) *compressPool {
	enc := blobEncoder(level)
	n := runtime.GOMAXPROCS(0)
	batches := 2*n + 2
	p := &compressPool{ctx: ctx, up: up, packSize: packSize,
		free:   make(chan *blobBatch, batches),
		work:   make(chan *blobBatch, batches),
		order:  make(chan *blobBatch, batches),
		packed: make(chan error, 1)}
	for range batches {
		p.free <- &blobBatch{done: make(chan struct{}, 1)}
	}
	for range n {
		p.workers.Add(1)
		go func() {
			defer p.workers.Done()
			for b := range p.work {
				if ctx.Err() == nil {
					b.compress(enc)
				}
				b.done <- struct{}{}
			}
		}()
	}
	go p.pack()
	return p
}

// get returns an empty batch, waiting for one while all are in flight.
func (p *compressPool) get() (*blobBatch, error) {
	if p.ctx.Err() != nil {
		return nil, context.Cause(p.ctx)
	}
	select {
	case b := <-p.free:
		b.raw, b.chunks = b.raw[:0], b.chunks[:0]
		return b, nil
	case <-p.ctx.Done():
		return nil, context.Cause(p.ctx)
	}
}

// submit queues a filled batch; it never blocks (only len(free) batches
// exist).
func (p *compressPool) submit(b *blobBatch) {
	p.order <- b
	p.work <- b
}

// pack adds the blobs of every batch, in order, to packs and sends the
// full ones (and, at the end, the last one) to the uploader.
func (p *compressPool) pack() {
	var err error
	var pk pack.Builder
	for b := range p.order {
		<-b.done
		if err == nil && p.ctx.Err() != nil {
			err = context.Cause(p.ctx)
		}
		if err == nil {
			out := b.out
			for _, c := range b.chunks {
				if !pk.HasBuffer() {
					pk.SetBuffer(p.up.buffer())
				}
				pk.Add(c.hash, int(c.raw), c.typ, out[:c.stored])
				out = out[c.stored:]
				if pk.Len() >= p.packSize {
					if err = p.up.send(&pk); err != nil {
						break
					}
				}
			}
		}
		p.free <- b
	}
	if err == nil && p.flush && pk.Len() > 0 { // flush is set before order is closed
		err = p.up.send(&pk)
	}
	p.packed <- err
}

// close waits for every submitted batch to be packed and, with flush,
// the last pack to be handed to the uploader.
func (p *compressPool) close(flush bool) error {
	p.flush = flush
	close(p.work)
	close(p.order)
	err := <-p.packed
	p.workers.Wait()
	return err
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
