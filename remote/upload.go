package remote

import (
	"context"
	"fmt"
	"runtime"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/vmasync/vmasync/remote/index"
	"github.com/vmasync/vmasync/remote/pack"
)

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
// 1.5 % of a first push's CPU. The window is blobWindow instead of the
// level's default (8 MiB from SpeedDefault up), which each of the
// encoder's GOMAXPROCS states would allocate as history although a frame
// holds one chunk: the frames of chunks up to blobWindow are the same
// bytes either way.
var blobEncoders = map[CompressionLevel]func() *zstd.Encoder{
	CompressFastest: newBlobEncoder(zstd.SpeedFastest),
	CompressDefault: newBlobEncoder(zstd.SpeedDefault),
	CompressBetter:  newBlobEncoder(zstd.SpeedBetterCompression),
}

func newBlobEncoder(level zstd.EncoderLevel) func() *zstd.Encoder {
	return sync.OnceValue(func() *zstd.Encoder {
		e, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(level), zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)), zstd.WithEncoderCRC(false), zstd.WithWindowSize(blobWindow))
		return e
	})
}

// blobWindow is the blob encoders' window: 4 times the largest chunk of
// the default chunker parameters.
const blobWindow = 256 << 10

// blobEncoder returns the encoder of level l ("" is CompressFastest).
func blobEncoder(l CompressionLevel) *zstd.Encoder {
	if l == "" {
		l = CompressFastest
	}
	return blobEncoders[l]()
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
	// spare holds pack buffers back from the upload goroutines for reuse;
	// made counts the buffers made (packBuffers at most; only the packing
	// goroutine calls buffer).
	spare chan []byte
	made  int

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
	reuse    bool // a buffer of the packs of chunks, back to spare when uploaded
}

func newUploader(ctx, upCtx context.Context, r *Repository, dry bool, cancel context.CancelCauseFunc) *uploader {
	n := r.Transfers
	if n < 1 {
		n = 4
	}
	u := &uploader{ctx: ctx, upCtx: upCtx, r: r, dry: dry, cancel: cancel, ch: make(chan sealedPack), spare: make(chan []byte, packBuffers)}
	for range n {
		u.wg.Add(1)
		go u.run()
	}
	return u
}

// buffer returns an empty buffer for the next pack of chunks, reusing
// one whose upload has finished; once packBuffers exist it waits for one.
func (u *uploader) buffer() ([]byte, error) {
	select {
	case b := <-u.spare:
		return b[:0], nil
	default:
	}
	if u.made < packBuffers {
		u.made++
		// Small at first: a night's push often fills one pack partly.
		// The packer grows it (Builder.Grow) up to bufferCap; every
		// buffer comes back through spare once its pack is uploaded.
		return make([]byte, 0, min(firstBuffer, u.bufferCap())), nil
	}
	select {
	case b := <-u.spare:
		return b[:0], nil
	case <-u.ctx.Done():
		return nil, context.Cause(u.ctx)
	}
}

// bufferCap is what a buffer of a pack of chunks grows to.
func (u *uploader) bufferCap() int { return u.r.Config.PackSize + packSlack }

// firstBuffer is the capacity a pack buffer starts with.
const firstBuffer = 256 << 10

// packBuffers is how many packs of chunks a push holds in memory at
// most (17 MiB each at the default pack size): the one being filled and
// two being uploaded, whatever --transfers says, so that a slow remote
// makes the push wait instead of growing its memory. (Packs of tree
// nodes, at most metaPackSize each, come on top.)
const packBuffers = 3

// packSlack is what a pack may hold beyond PackSize: the blob that made
// it full (a chunk is at most 64 KiB with the default parameters) and the
// header (41 bytes per blob).
const packSlack = 1 << 20

// send seals the pack and hands it to an upload goroutine, waiting while
// all of them are busy. reuse is set for packs of chunks, whose buffers
// (from buffer) go back to spare once uploaded, whatever size they grew
// to; the packs of tree nodes have buffers of their own.
func (u *uploader) send(p *pack.Builder, reuse bool) error {
	data, blobsEnd, entries := p.Seal()
	select {
	case u.ch <- sealedPack{data, blobsEnd, entries, reuse}:
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
		if p.reuse {
			select {
			case u.spare <- p.data:
			default:
			}
		}
		if full != nil {
			if err := u.writeIndex(ctx, full); err != nil {
				u.fail(err)
			}
		}
	}
}

// indexEvery is how many index entries of uploaded packs a push holds
// (80 bytes each) before it writes them as an index object of about
// 1.6 MB (256 MiB of new chunks at the default chunk size), so that they
// do not take memory in proportion to all the new data; the rest is
// written at the end.
var indexEvery = 1 << 15

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
		b.out, c.typ = appendBlob(enc, b.out, data)
		c.stored = uint32(len(b.out) - n)
	}
}

// appendBlob appends data's blob to dst: one zstd frame when that is
// smaller and declares its length (as readers require), else data as is.
func appendBlob(enc *zstd.Encoder, dst, data []byte) ([]byte, uint8) {
	n := len(dst)
	dst = enc.EncodeAll(data, dst)
	if len(dst)-n < len(data) && declaresSize(dst[n:], len(data)) {
		return dst, pack.BlobZstd
	}
	return append(dst[:n], data...), pack.BlobRaw
}

// declaresSize reports whether the zstd frame z declares n bytes of
// content, as readers require (DecodeBlob); the encoder leaves the size
// out of the frames of some inputs of a few hundred bytes.
func declaresSize(z []byte, n int) bool {
	var h zstd.Header
	return h.Decode(z) == nil && h.HasFCS && h.FrameContentSize == uint64(n)
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
					var buf []byte
					if buf, err = p.up.buffer(); err != nil {
						break
					}
					pk.SetBuffer(buf)
				}
				pk.Grow(int(c.stored), p.up.bufferCap())
				pk.Add(c.hash, int(c.raw), c.typ, out[:c.stored])
				out = out[c.stored:]
				if pk.Len() >= p.packSize {
					if err = p.up.send(&pk, true); err != nil {
						break
					}
				}
			}
		}
		p.free <- b
	}
	if err == nil && p.flush && pk.Len() > 0 { // flush is set before order is closed
		err = p.up.send(&pk, true)
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
