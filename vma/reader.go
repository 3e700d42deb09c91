package vma

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"
	"slices"
)

// Cluster is one 64 KiB cluster as stored in an archive.
type Cluster struct {
	// DevID is the device id (see Header.Devices).
	DevID int
	// Num is the cluster number: the cluster covers device bytes
	// [Num*ClusterSize, (Num+1)*ClusterSize).
	Num uint32
	// Mask has bit i set when 4 KiB block i is stored; unset blocks are
	// zero. A mask of 0 is an all-zero cluster.
	Mask uint16
	// Data holds the stored blocks in increasing block order,
	// popcount(Mask)*BlockSize bytes. It aliases the Reader's buffer and is
	// valid only until the next call to Next.
	Data []byte
	// Offset is the byte offset of Data in the archive.
	Offset int64
	// Extent is the index of the extent holding the cluster.
	Extent int
}

// Block returns the stored bytes of block i (0..15), or nil when the block
// is not stored (zero).
func (c *Cluster) Block(i int) []byte {
	bit := uint16(1) << i
	if c.Mask&bit == 0 {
		return nil
	}
	k := bits.OnesCount16(c.Mask & (bit - 1))
	return c.Data[k*BlockSize : (k+1)*BlockSize]
}

// readDev is the reader's per-device state.
type readDev struct {
	dev       Device
	clusters  uint64
	seen      clusterSet
	vmstate   bool
	nextState uint32
}

// Reader reads a VMA archive in one forward pass. It checks everything
// Proxmox's reader checks and, at the end, that every cluster of every
// disk was present exactly once (see AllowIncomplete).
type Reader struct {
	r   io.Reader
	hdr Header
	off int64
	dev [MaxDeviceID + 1]*readDev

	allowIncomplete bool

	// skip mode (NewIndexReader): data is seeked over, not read.
	seeker io.Seeker
	size   int64
	// discard mode: data is read through a small buffer and dropped.
	discard bool
	// deferred mode: data stays in the input until ReadData asks for it.
	deferred bool
	pending  int // data bytes of the current cluster not yet read
	extLeft  int // data bytes of the current extent not yet read

	buf     []byte // current extent: header then data
	infos   [ExtentSlots]blockinfo
	slot    int   // next slot to yield
	dataOff int   // offset in buf of the next cluster's data
	extOff  int64 // archive offset of the current extent
	extents int   // extents read so far
	inExt   bool
	cur     Cluster
	err     error
}

// NewReader reads and checks the archive header from r. Clusters are read
// with Next. r is read sequentially and never seeked; wrap it in a
// bufio.Reader only if it makes many tiny reads expensive (a Reader reads
// whole extents at a time).
func NewReader(r io.Reader) (*Reader, error) {
	vr := &Reader{r: r}
	if err := vr.readHeader(); err != nil {
		return nil, err
	}
	return vr, nil
}

// NewIndexReader reads the archive in f (of the given total size) like
// NewReader but seeks over the data blocks instead of reading them: Next
// yields clusters with a nil Data and their Offset, so a caller can read
// them later with positioned reads. Every check that does not need the
// data is made, including truncation against size.
func NewIndexReader(f io.ReadSeeker, size int64) (*Reader, error) {
	vr := &Reader{r: f, seeker: f, size: size}
	if err := vr.readHeader(); err != nil {
		return nil, err
	}
	return vr, nil
}

// Header returns the parsed archive header.
func (r *Reader) Header() *Header { return &r.hdr }

// Offset returns the number of archive bytes consumed so far.
func (r *Reader) Offset() int64 { return r.off }

// Extents returns the number of extents read so far.
func (r *Reader) Extents() int { return r.extents }

// DiscardData makes the Reader read the data blocks through a small,
// cache-friendly buffer and drop them: Next then yields clusters with a
// nil Data. Every check is still made and every byte still read. Call it
// before the first Next; it suits a verification pass.
func (r *Reader) DiscardData() { r.discard = true }

// DeferData makes Next leave each cluster's data in the input: Next yields
// clusters with a nil Data, and ReadData reads the current cluster's
// blocks into a buffer of the caller's (data not asked for is skipped).
// This saves a copy when the caller has its own place for the data. The
// extent header is checked before its clusters are yielded, but a
// truncated extent is only noticed when its data is read, after some of
// its clusters may have been yielded.
func (r *Reader) DeferData() { r.deferred = true }

// ReadData reads the stored blocks of the cluster Next returned last into
// dst, which must be popcount(Mask)*BlockSize bytes. Only in DeferData
// mode, once per cluster.
func (r *Reader) ReadData(dst []byte) error {
	if r.err != nil {
		return r.err
	}
	if !r.deferred || len(dst) != r.pending {
		return fmt.Errorf("vma: ReadData of %d bytes, %d pending", len(dst), r.pending)
	}
	n, err := io.ReadFull(r.r, dst)
	r.off += int64(n)
	r.pending -= n
	r.extLeft -= n
	if err != nil {
		r.err = r.extErr(r.off, ioCause(err), "short extent: input ends %d bytes before the end of the extent's data", r.extLeft)
		r.err.(*FormatError).Extent = r.extents - 1
		return r.err
	}
	return nil
}

// skip reads and drops n bytes of extent data.
func (r *Reader) skip(n int) error {
	if cap(r.buf) < ExtentHeaderSize+discardChunk {
		nb := make([]byte, ExtentHeaderSize, ExtentHeaderSize+discardChunk)
		copy(nb, r.buf[:ExtentHeaderSize])
		r.buf = nb
	}
	scratch := r.buf[ExtentHeaderSize : ExtentHeaderSize+discardChunk]
	for left := n; left > 0; {
		m, err := io.ReadFull(r.r, scratch[:min(left, discardChunk)])
		r.off += int64(m)
		left -= m
		if err != nil {
			return r.extErr(r.off, ioCause(err), "short extent: input ends %d bytes before the end of the extent's data", left)
		}
	}
	return nil
}

// AllowIncomplete turns off the end-of-archive check that every cluster of
// every disk was present. Proxmox's `vma verify` does not make that check
// (so it accepts truncated archives); `vma extract` does.
func (r *Reader) AllowIncomplete() { r.allowIncomplete = true }

// Missing reports the first cluster that has not been seen so far for each
// device that is incomplete, keyed by device id. After Next has returned
// io.EOF it describes the whole archive.
func (r *Reader) Missing() map[int]int64 {
	m := map[int]int64{}
	for id, d := range r.dev {
		if d == nil || d.vmstate {
			continue
		}
		if c := d.seen.firstMissing(d.clusters); c >= 0 {
			m[id] = c
		}
	}
	return m
}

// Seen returns how many distinct clusters of device id have been read.
func (r *Reader) Seen(id int) uint64 {
	if id < 0 || id > MaxDeviceID || r.dev[id] == nil {
		return 0
	}
	return r.dev[id].seen.count
}

// discardChunk is the read size in discard mode: small enough to stay in
// the CPU cache, large enough to keep system calls few.
const discardChunk = 128 << 10

// ioCause maps a short read to io.ErrUnexpectedEOF and keeps other errors.
func ioCause(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Next returns the next cluster in stored order. At the end of the archive
// it returns io.EOF, or a *FormatError if a disk is incomplete. Any error
// is final: later calls return it again.
func (r *Reader) Next() (*Cluster, error) {
	if r.err != nil {
		return nil, r.err
	}
	if r.pending > 0 {
		n := r.pending
		r.pending, r.extLeft = 0, r.extLeft-n
		if err := r.skip(n); err != nil {
			err.(*FormatError).Extent = r.extents - 1
			r.err = err
			return nil, err
		}
	}
	for {
		if r.inExt {
			for r.slot < ExtentSlots {
				bi := r.infos[r.slot]
				r.slot++
				if bi.dev() == 0 {
					continue
				}
				n := bi.blocks() * BlockSize
				r.cur = Cluster{
					DevID:  int(bi.dev()),
					Num:    bi.cluster(),
					Mask:   bi.mask(),
					Offset: r.extOff + int64(r.dataOff),
					Extent: r.extents - 1,
				}
				if r.deferred {
					r.pending = n
				} else if r.seeker == nil && !r.discard {
					r.cur.Data = r.buf[r.dataOff : r.dataOff+n : r.dataOff+n]
				}
				r.dataOff += n
				return &r.cur, nil
			}
			r.inExt = false
		}
		if err := r.readExtent(); err != nil {
			r.err = err
			return nil, err
		}
	}
}

func (r *Reader) extErr(off int64, err error, format string, args ...any) *FormatError {
	return &FormatError{Offset: off, Extent: r.extents, Cluster: -1, Msg: fmt.Sprintf(format, args...), Err: err}
}

func (r *Reader) clusterErr(off int64, d *readDev, c uint32, format string, args ...any) *FormatError {
	e := r.extErr(off, nil, "%s: cluster %d: %s", devLabel(d.dev.ID, d.dev.Name), c, fmt.Sprintf(format, args...))
	e.DevID, e.Device, e.Cluster = d.dev.ID, d.dev.Name, int64(c)
	return e
}

// readExtent reads and checks the next extent, or ends the archive.
func (r *Reader) readExtent() error {
	if cap(r.buf) < ExtentHeaderSize {
		// The header only: room for the data is made below, when it is
		// read into the buffer (not when it is seeked over, deferred or
		// discarded).
		r.buf = make([]byte, ExtentHeaderSize)
	}
	eh := r.buf[:ExtentHeaderSize]
	r.extOff = r.off
	n, err := io.ReadFull(r.r, eh)
	r.off += int64(n)
	if err != nil {
		if n == 0 && err == io.EOF {
			return r.finish()
		}
		return r.extErr(r.extOff, ioCause(err), "short extent header: input ends after %d of %d bytes", n, ExtentHeaderSize)
	}
	if sum := extentMD5(eh); !bytes.Equal(sum[:], eh[24:40]) {
		return r.extErr(r.extOff+24, nil, "wrong extent header checksum (md5 %x, stored %x)", sum, eh[24:40])
	}
	if !bytes.Equal(eh[8:24], r.hdr.UUID[:]) {
		return r.extErr(r.extOff+8, nil, "wrong extent uuid %s (archive uuid %s)", UUID(eh[8:24]), r.hdr.UUID)
	}
	if !bytes.Equal(eh[0:4], extentMagic[:]) {
		return r.extErr(r.extOff, nil, "wrong extent header magic % x", eh[0:4])
	}
	if eh[4] != 0 || eh[5] != 0 {
		return r.extErr(r.extOff+4, nil, "extent header reserved field is % x, must be zero", eh[4:6])
	}
	count := int(binary.BigEndian.Uint16(eh[6:8]))
	if count > MaxExtentBlocks {
		return r.extErr(r.extOff+6, nil, "extent block_count %d exceeds the maximum of %d", count, MaxExtentBlocks)
	}
	for i := range ExtentSlots {
		r.infos[i] = blockinfo(binary.BigEndian.Uint64(eh[40+8*i:]))
	}
	need := ExtentHeaderSize + count*BlockSize
	if r.seeker != nil {
		if avail := r.size - r.off; avail < int64(count*BlockSize) {
			return r.extErr(r.size, io.ErrUnexpectedEOF, "short extent: input ends after %d of %d data bytes", max(avail, 0), count*BlockSize)
		}
		if _, err := r.seeker.Seek(int64(count*BlockSize), io.SeekCurrent); err != nil {
			return r.extErr(r.off, err, "seeking over extent data: %v", err)
		}
		r.off += int64(count * BlockSize)
		return r.acceptExtent(count)
	}
	if r.deferred {
		r.extLeft = count * BlockSize
		return r.acceptExtent(count)
	}
	if r.discard {
		if err := r.skip(count * BlockSize); err != nil {
			return err
		}
		return r.acceptExtent(count)
	}
	if cap(r.buf) < need {
		nb := make([]byte, need, max(need, ExtentHeaderSize+ProxmoxClustersPerExtent*ClusterSize))
		copy(nb, r.buf[:ExtentHeaderSize])
		r.buf = nb
	}
	r.buf = r.buf[:need]
	n, err = io.ReadFull(r.r, r.buf[ExtentHeaderSize:need])
	r.off += int64(n)
	if err != nil {
		return r.extErr(r.off, ioCause(err), "short extent: input ends after %d of %d data bytes", n, count*BlockSize)
	}
	return r.acceptExtent(count)
}

func (r *Reader) acceptExtent(count int) error {
	if err := r.checkExtent(count); err != nil {
		return err
	}
	r.extents++
	r.inExt = true
	r.slot = 0
	r.dataOff = ExtentHeaderSize
	return nil
}

// checkExtent checks the blockinfos of the extent just read, in slot order,
// as Proxmox's restore_extent does.
func (r *Reader) checkExtent(count int) error {
	used := 0
	for i, bi := range r.infos {
		id := int(bi.dev())
		if id == 0 {
			continue
		}
		slotOff := r.extOff + 40 + 8*int64(i)
		d := r.dev[id]
		if d == nil {
			e := r.extErr(slotOff, nil, "blockinfo %d: cluster %d of unknown device id %d (not in the header)", i, bi.cluster(), id)
			e.DevID, e.Cluster = id, int64(bi.cluster())
			return e
		}
		c := bi.cluster()
		if d.vmstate {
			if c != d.nextState {
				return r.clusterErr(slotOff, d, c, "out of order vmstate data (expected cluster %d)", d.nextState)
			}
			d.nextState++
		} else if uint64(c) >= d.clusters {
			return r.clusterErr(slotOff, d, c, "beyond the device end (device size %d bytes, %d clusters)", d.dev.Size, d.clusters)
		}
		if d.seen.add(c) {
			return r.clusterErr(slotOff, d, c, "duplicate cluster")
		}
		mask := bi.mask()
		used += bits.OnesCount16(mask)
		if used > count {
			return r.clusterErr(slotOff, d, c, "too many blocks: masks need more than the extent's block_count %d", count)
		}
		if !d.vmstate && mask != 0 {
			last := 15 - bits.LeadingZeros16(mask)
			if uint64(c)*ClusterSize+uint64(last)*BlockSize >= d.dev.Size {
				return r.clusterErr(slotOff, d, c, "block %d lies beyond the device end (device size %d bytes)", last, d.dev.Size)
			}
		}
	}
	if used != count {
		return r.extErr(r.extOff+6, nil, "missing blocks: block_count %d but the masks account for %d", count, used)
	}
	return nil
}

// finish runs the end-of-archive checks.
func (r *Reader) finish() error {
	if !r.allowIncomplete {
		if err := r.CompletenessError(); err != nil {
			return err
		}
	}
	return io.EOF
}

// CompletenessError returns a *FormatError naming the first missing
// cluster of the first incomplete device among ids (all devices when ids
// is empty), or nil. VM state is not checked, as in Proxmox's reader. It is
// meant for after Next returned io.EOF with AllowIncomplete set, e.g. to
// check only the devices being extracted.
func (r *Reader) CompletenessError(ids ...int) error {
	for id, d := range r.dev {
		if d == nil || d.vmstate || (len(ids) > 0 && !slices.Contains(ids, id)) {
			continue
		}
		if c := d.seen.firstMissing(d.clusters); c >= 0 {
			return &FormatError{
				Offset: r.off, Extent: -1, DevID: id, Device: d.dev.Name, Cluster: c,
				Msg: fmt.Sprintf("%s: missing cluster %d (%d of %d clusters missing; the archive is incomplete or truncated)",
					devLabel(id, d.dev.Name), c, d.clusters-d.seen.count, d.clusters),
			}
		}
	}
	return nil
}
