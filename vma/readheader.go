package vma

// The archive header: reading and checking it (Reader.readHeader) and its blob table.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
)

func (r *Reader) headerErr(off int64, err error, format string, args ...any) *FormatError {
	return &FormatError{Offset: off, Extent: -1, Cluster: -1, Msg: fmt.Sprintf(format, args...), Err: err}
}

// Kept as one function: it follows the VMA header field by field, with Proxmox's checks in their order.
func (r *Reader) readHeader() error {
	fixed := make([]byte, HeaderFixedSize)
	n, err := io.ReadFull(r.r, fixed)
	r.off += int64(n)
	if err != nil {
		if n == 0 && err == io.EOF {
			return r.headerErr(0, io.ErrUnexpectedEOF, "not a vma file: input is empty")
		}
		if n >= 4 && !bytes.Equal(fixed[:4], headerMagic[:]) {
			return r.headerErr(0, nil, "not a vma file: wrong magic number % x", fixed[:4])
		}
		return r.headerErr(int64(n), ioCause(err), "truncated header: input ends after %d of %d bytes", n, HeaderFixedSize)
	}
	if !bytes.Equal(fixed[:4], headerMagic[:]) {
		return r.headerErr(0, nil, "not a vma file: wrong magic number % x", fixed[:4])
	}
	size := int64(binary.BigEndian.Uint32(fixed[56:60]))
	if size <= HeaderFixedSize {
		return r.headerErr(56, nil, "wrong header size %d (must be larger than %d)", size, HeaderFixedSize)
	}
	if size > MaxHeaderSize {
		return r.headerErr(56, nil, "header size %d exceeds the limit of %d bytes", size, MaxHeaderSize)
	}
	// Read the rest without trusting the claimed size for the allocation:
	// the buffer grows only as data actually arrives.
	var hb bytes.Buffer
	hb.Write(fixed)
	m, err := hb.ReadFrom(io.LimitReader(r.r, size-HeaderFixedSize))
	r.off += m
	if err != nil {
		return r.headerErr(r.off, err, "reading header: %v", err)
	}
	if m != size-HeaderFixedSize {
		return r.headerErr(r.off, io.ErrUnexpectedEOF, "truncated header: input ends after %d of %d header bytes", r.off, size)
	}
	h := hb.Bytes()
	if sum := headerMD5(h); !bytes.Equal(sum[:], h[32:48]) {
		return r.headerErr(32, nil, "wrong header checksum (md5 %x, stored %x)", sum, h[32:48])
	}
	if v := binary.BigEndian.Uint32(h[4:8]); v != 1 {
		return r.headerErr(4, nil, "wrong vma version %d (only version 1 exists)", v)
	}
	blobOff := uint64(binary.BigEndian.Uint32(h[48:52]))
	blobSize := uint64(binary.BigEndian.Uint32(h[52:56]))
	if blobOff+1 <= HeaderFixedSize {
		return r.headerErr(48, nil, "wrong blob buffer offset %d (must be at least %d)", blobOff, HeaderFixedSize)
	}
	if blobOff+blobSize > uint64(size) {
		return r.headerErr(52, nil, "wrong blob buffer size %d at offset %d: ends past the header size %d", blobSize, blobOff, size)
	}
	copy(r.hdr.UUID[:], h[8:24])
	r.hdr.CTime = int64(binary.BigEndian.Uint64(h[24:32]))
	r.hdr.Size = size
	blobs := parseBlobs(h[blobOff:blobOff+blobSize], h)

	// Devices 1..255, registered when the size is not zero and the name
	// resolves, as Proxmox's reader does.
	for id := 1; id <= MaxDeviceID; id++ {
		di := h[4096+32*id : 4096+32*(id+1)]
		ptr := binary.BigEndian.Uint32(di[0:4])
		dsize := binary.BigEndian.Uint64(di[8:16])
		if dsize == 0 {
			continue
		}
		name, ok := blobs.str(ptr)
		if !ok {
			continue
		}
		if dsize > MaxDeviceSize {
			e := r.headerErr(int64(4096+32*id+8), nil, "%s: size %d exceeds the format's limit of %d bytes", devLabel(id, name), dsize, uint64(MaxDeviceSize))
			e.DevID, e.Device = id, name
			return e
		}
		d := Device{ID: id, Name: name, Size: dsize}
		r.hdr.Devices = append(r.hdr.Devices, d)
		r.dev[id] = &readDev{dev: d, clusters: d.Clusters(), vmstate: d.IsVMState()}
	}
	for i := range MaxConfigs {
		np := binary.BigEndian.Uint32(h[2044+4*i:])
		dp := binary.BigEndian.Uint32(h[3068+4*i:])
		if np == 0 || dp == 0 {
			continue
		}
		name, ok := blobs.str(np)
		if !ok {
			return r.headerErr(int64(2044+4*i), nil, "config slot %d has an invalid name pointer %d (data pointer %d)", i, np, dp)
		}
		data, ok := blobs.get(dp)
		if !ok {
			return r.headerErr(int64(3068+4*i), nil, "config slot %d (%q) has an invalid data pointer %d", i, name, dp)
		}
		r.hdr.Configs = append(r.hdr.Configs, Config{Name: name, Data: bytes.Clone(data)})
	}
	return nil
}

// blobTable resolves blob pointers (offsets relative to the blob buffer).
type blobTable struct {
	buf   []byte
	start map[uint32]bool
}

// parseBlobs walks the blob buffer as Proxmox's reader does (from offset 1,
// u16 little-endian length then data) and keeps the starts that the header
// refers to; a blob that would run past the buffer ends the walk.
func parseBlobs(buf, h []byte) blobTable {
	refs := map[uint32]bool{}
	for id := 1; id <= MaxDeviceID; id++ {
		if p := binary.BigEndian.Uint32(h[4096+32*id:]); p != 0 {
			refs[p] = true
		}
	}
	for i := range MaxConfigs {
		for _, base := range []int{2044, 3068} {
			if p := binary.BigEndian.Uint32(h[base+4*i:]); p != 0 {
				refs[p] = true
			}
		}
	}
	t := blobTable{buf: buf, start: map[uint32]bool{}}
	for pos := uint64(1); pos+2 <= uint64(len(buf)); {
		n := uint64(binary.LittleEndian.Uint16(buf[pos:]))
		if pos+2+n > uint64(len(buf)) {
			break
		}
		if refs[uint32(pos)] {
			t.start[uint32(pos)] = true
		}
		pos += 2 + n
	}
	return t
}

func (t blobTable) get(p uint32) ([]byte, bool) {
	if !t.start[p] {
		return nil, false
	}
	n := uint32(binary.LittleEndian.Uint16(t.buf[p:]))
	return t.buf[p+2 : p+2+n], true
}

// str returns a NUL-terminated string blob without its NUL.
func (t blobTable) str(p uint32) (string, bool) {
	b, ok := t.get(p)
	if !ok || len(b) == 0 || b[len(b)-1] != 0 {
		return "", false
	}
	return string(b[:len(b)-1]), true
}
