package vmafile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/vmasync/vmasync/vma"
)

// UnpackOptions tunes Unpack.
type UnpackOptions struct {
	// Devices limits extraction to the named devices (all when empty).
	// Configs are always written.
	Devices []string
	// Header, if set, is called with the archive header as soon as it
	// has been read and checked.
	Header func(h *vma.Header)
	// Progress, if set, is called now and then with the archive bytes
	// read so far.
	Progress func(offset int64)
	// Sync makes the files durable (fsync) before they get their final
	// names. Off by default, as with vma extract and cp.
	Sync bool
}

// Unpack extracts an archive into dir: each config under its name and each
// device as a sparse raw image disk-<name>.raw of exactly the device size
// (VM state as vmstate.bin). dir is created if missing; existing files are
// never overwritten. Everything is written under temporary names and
// renamed only after the whole archive has been read and checked, so a
// failure leaves no final file behind (and removes dir if Unpack created
// it). Like `vma extract`, it fails when an extracted device misses a
// cluster.
func Unpack(r io.Reader, dir string, opt UnpackOptions) (err error) {
	vr, err := vma.NewReader(r)
	if err != nil {
		return err
	}
	vr.AllowIncomplete() // checked below, for the extracted devices only
	if opt.Header != nil {
		opt.Header(vr.Header())
	}
	u := &unpacker{dir: dir, opt: opt, h: vr.Header(), seen: map[string]string{}, devOut: map[int]*unpackFile{}}
	// Decide every output name before touching the file system.
	if err := u.plan(); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			u.cleanup()
		}
	}()
	if err := u.create(); err != nil {
		return err
	}
	if err := u.extract(vr); err != nil {
		return err
	}
	return u.finish()
}

// unpackFile is a file Unpack writes: under a temporary name until the
// whole archive has been read.
type unpackFile struct {
	final string
	tmp   *os.File
}

// unpacker is the state of one Unpack.
type unpacker struct {
	dir     string
	opt     UnpackOptions
	h       *vma.Header
	seen    map[string]string // file name → what it holds
	devs    []*unpackFile     // the extracted devices', in header order
	devOut  map[int]*unpackFile
	ids     []int // the extracted devices
	cfgs    []*unpackFile
	created bool // dir was created by Unpack
}

// claim reserves a file name in dir for what, refusing a name that is not
// a plain file name or is taken.
func (u *unpacker) claim(name, what string) (string, error) {
	if err := vma.CheckName(name); err != nil {
		return "", fmt.Errorf("vma: refusing to unpack %s: %v", what, err)
	}
	if prev, ok := u.seen[name]; ok {
		return "", fmt.Errorf("vma: refusing to unpack %s: file name %q is also used by %s", what, name, prev)
	}
	u.seen[name] = what
	return filepath.Join(u.dir, name), nil
}

// plan names every file to write, and fails if one exists.
func (u *unpacker) plan() error {
	for _, c := range u.h.Configs {
		if _, err := u.claim(c.Name, fmt.Sprintf("config %q", c.Name)); err != nil {
			return err
		}
	}
	for _, want := range u.opt.Devices {
		if !slices.ContainsFunc(u.h.Devices, func(d vma.Device) bool { return d.Name == want }) {
			return fmt.Errorf("vma: the archive has no device %q", want)
		}
	}
	for _, d := range u.h.Devices {
		if len(u.opt.Devices) > 0 && !slices.Contains(u.opt.Devices, d.Name) {
			continue
		}
		if err := vma.CheckName(d.Name); err != nil {
			return fmt.Errorf("vma: refusing to unpack %s: %v", devLabel(d.ID, d.Name), err)
		}
		name := vma.ImageName(d.Name)
		if d.IsVMState() {
			name = "vmstate.bin"
		}
		p, err := u.claim(name, devLabel(d.ID, d.Name))
		if err != nil {
			return err
		}
		o := &unpackFile{final: p}
		u.devs = append(u.devs, o)
		u.devOut[d.ID] = o
		u.ids = append(u.ids, d.ID)
	}
	for name := range u.seen {
		if _, err := os.Lstat(filepath.Join(u.dir, name)); err == nil {
			return fmt.Errorf("vma: %s already exists; not overwriting", filepath.Join(u.dir, name))
		}
	}
	return nil
}

// create makes dir if missing, the devices' temporary files at their
// sizes and the configs' with their contents.
func (u *unpacker) create() error {
	if _, err := os.Stat(u.dir); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(u.dir, 0o755); err != nil {
			return err
		}
		u.created = true
	}
	newTmp := func(o *unpackFile, size int64) error {
		f, err := os.CreateTemp(u.dir, ".tmp-"+filepath.Base(o.final)+"-*")
		if err != nil {
			return err
		}
		o.tmp = f
		return f.Truncate(size)
	}
	for _, d := range u.h.Devices {
		if o := u.devOut[d.ID]; o != nil {
			if err := newTmp(o, int64(d.Size)); err != nil {
				return err
			}
		}
	}
	for _, c := range u.h.Configs {
		o := &unpackFile{final: filepath.Join(u.dir, c.Name)}
		u.cfgs = append(u.cfgs, o)
		if err := newTmp(o, 0); err != nil {
			return err
		}
		if _, err := o.tmp.Write(c.Data); err != nil {
			return err
		}
	}
	return nil
}

// extract reads the clusters into the devices' files and checks that the
// extracted devices are complete.
func (u *unpacker) extract(vr *vma.Reader) error {
	sizes := map[int]uint64{}
	for _, d := range u.h.Devices {
		sizes[d.ID] = d.Size
	}
	lastExt := -1
	for {
		c, err := vr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if u.opt.Progress != nil && c.Extent != lastExt {
			lastExt = c.Extent
			u.opt.Progress(c.Offset)
		}
		o := u.devOut[c.DevID]
		if o == nil || c.Mask == 0 {
			continue
		}
		if err := writeCluster(o.tmp, c, sizes[c.DevID]); err != nil {
			return fmt.Errorf("vma: writing %s: %w", o.final, err)
		}
	}
	if err := vr.CompletenessError(u.ids...); err != nil {
		return err
	}
	if u.opt.Progress != nil {
		u.opt.Progress(vr.Offset())
	}
	return nil
}

// finish gives every file its final name.
func (u *unpacker) finish() error {
	all := append(u.devs, u.cfgs...)
	for _, o := range all {
		if !u.opt.Sync {
			break
		}
		if err := o.tmp.Sync(); err != nil {
			return err
		}
	}
	for _, o := range all {
		if err := o.tmp.Close(); err != nil {
			return err
		}
	}
	for i, o := range all {
		// Link rather than rename so that a file that appeared meanwhile
		// is not replaced.
		err := os.Link(o.tmp.Name(), o.final)
		if err != nil && !errors.Is(err, os.ErrExist) {
			err = os.Rename(o.tmp.Name(), o.final) // no hard links here
		}
		if err != nil {
			for _, done := range all[:i] {
				os.Remove(done.final)
			}
			return fmt.Errorf("vma: %w", err)
		}
	}
	for _, o := range all {
		os.Remove(o.tmp.Name())
		o.tmp = nil
	}
	if u.opt.Sync {
		if d, err := os.Open(u.dir); err == nil {
			d.Sync()
			d.Close()
		}
	}
	return nil
}

// cleanup removes the temporary files, and dir if Unpack created it.
func (u *unpacker) cleanup() {
	for _, o := range append(u.devs, u.cfgs...) {
		if o.tmp != nil {
			o.tmp.Close()
			os.Remove(o.tmp.Name())
		}
	}
	if u.created {
		os.Remove(u.dir) // only succeeds if empty
	}
}

// writeCluster writes the non-zero stored blocks of c to f at their device
// offsets, merging adjacent blocks, and clipping at the device size.
// Zero blocks are not written, so the image stays sparse.
func writeCluster(f *os.File, c *vma.Cluster, size uint64) error {
	base := uint64(c.Num) * vma.ClusterSize
	k := 0
	runStart, runData := -1, []byte(nil)
	flush := func() error {
		if runStart < 0 {
			return nil
		}
		off := base + uint64(runStart)*vma.BlockSize
		if off < size {
			n := min(uint64(len(runData)), size-off)
			if _, err := f.WriteAt(runData[:n], int64(off)); err != nil {
				return err
			}
		}
		runStart, runData = -1, nil
		return nil
	}
	for i := range vma.BlocksPerCluster {
		if c.Mask&(1<<i) == 0 {
			if err := flush(); err != nil {
				return err
			}
			continue
		}
		blk := c.Data[k*vma.BlockSize : (k+1)*vma.BlockSize]
		start := k * vma.BlockSize
		k++
		if isZero(blk) {
			if err := flush(); err != nil {
				return err
			}
			continue
		}
		if runStart < 0 {
			runStart, runData = i, c.Data[start:start+vma.BlockSize]
		} else {
			runData = c.Data[start-len(runData) : start+vma.BlockSize]
		}
	}
	return flush()
}

var zeroBlock [vma.BlockSize]byte

// isZero reports whether b (at most BlockSize bytes) is all zero.
func isZero(b []byte) bool {
	return bytes.Equal(b, zeroBlock[:len(b)])
}

// devLabel formats a device for messages, as package vma does:
// `device "drive-scsi0" (id 1)`.
func devLabel(id int, name string) string {
	if name == "" {
		return fmt.Sprintf("device id %d", id)
	}
	return fmt.Sprintf("device %q (id %d)", name, id)
}
