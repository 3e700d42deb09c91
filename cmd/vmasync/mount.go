package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	rfs "github.com/rclone/rclone/fs"
	"github.com/urfave/cli/v2"

	"github.com/vmasync/vmasync/internal/chunkcache"
	"github.com/vmasync/vmasync/internal/vmalayout"
	"github.com/vmasync/vmasync/remote"
	"github.com/vmasync/vmasync/vma"
)

func mountCommand(e *env) *cli.Command {
	return withRemoteFlags(&cli.Command{
		Name:        "mount",
		Usage:       "mount the backups on a remote read-only (FUSE): every disk as a raw image, read on demand",
		UsageText:   "vmasync mount [--vmid ID]... [--cache-size SIZE] [--allow-other] [rclone options] REMOTE MOUNTPOINT",
		Description: help("mount"),
		Flags: []cli.Flag{
			vmidFlag("only the backups of VM `ID` (repeatable)"),
			&cli.StringFlag{Name: "cache-size", Value: "256M", Usage: "keep up to `SIZE` of chunks in memory (256M, 1G)"},
			&cli.BoolFlag{Name: "allow-other", Usage: "let other users than the one mounting read the files (FUSE allow_other)"},
			verboseFlag(sayMoreRclone),
		},
		Action: func(cCtx *cli.Context) error { return mountAction(e, cCtx) },
	})
}

// parseMount checks mount's flags and MOUNTPOINT.
func parseMount(cCtx *cli.Context) (o opts, rem, mnt string, cache int64, err error) {
	if o, err = globalOpts(cCtx); err != nil {
		return
	}
	args, err := checkArgs(cCtx, 2, 2)
	if err != nil {
		return
	}
	var size rfs.SizeSuffix
	if err = size.Set(cCtx.String("cache-size")); err != nil || size < 0 {
		err = usageError("mount", "--cache-size %q: want a size such as 256M or 1G", cCtx.String("cache-size"))
		return
	}
	rem, mnt, cache = args[0], args[1], int64(size)
	if st, serr := os.Stat(mnt); serr != nil {
		err = &fileError{mnt, serr}
	} else if !st.IsDir() {
		err = &fileError{mnt, errors.New("not a directory")}
	} else if des, _ := os.ReadDir(mnt); len(des) > 0 {
		// Also a mount point already in use, e.g. by another mount.
		err = &fileError{mnt, errors.New("not empty: mount on an empty directory")}
	}
	return
}

// mountAction is vmasync mount: it serves the backups until a signal, a
// lost lock or an umount from outside.
func mountAction(e *env, cCtx *cli.Context) error {
	o, rem, mnt, size, err := parseMount(cCtx)
	if err != nil {
		return err
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		// The cache comes on top of what main's limit is for.
		debug.SetMemoryLimit(memoryLimit + size)
	}
	ctx, r, release, err := openLocked(e, cCtx, o, rem, sharedLock)
	if err != nil {
		return err
	}
	defer release()
	backups, err := mountedBackups(ctx, r, cCtx.StringSlice("vmid"))
	if err != nil {
		return err
	}
	var logMu sync.Mutex
	logf := func(format string, args ...any) {
		logMu.Lock()
		defer logMu.Unlock()
		fmt.Fprintf(e.stderr, "vmasync: "+format+"\n", args...)
	}
	cache := chunkcache.New(size)
	cache.Fetch = cCtx.Int("transfers")
	cache.Log = func(msg string) { logf("%s", msg) }
	root := &mountRoot{m: &mounter{ctx: ctx, r: r, cache: cache, logf: logf}, backups: backups}
	ttl := time.Hour // nothing changes while mounted
	mo := fuse.MountOptions{
		FsName: "vmasync", Name: "vmasync", Options: []string{"ro"},
		DirectMount: true, DirectMountFlags: syscall.MS_NOSUID | syscall.MS_NODEV | syscall.MS_RDONLY,
		MaxReadAhead: 1 << 20, AllowOther: cCtx.Bool("allow-other"),
	}
	srv, err := fs.Mount(mnt, root, &fs.Options{MountOptions: mo, EntryTimeout: &ttl, AttrTimeout: &ttl})
	if err != nil {
		return &fileError{mnt, fmt.Errorf("mounting: %w (is /dev/fuse there, and are you root or is fusermount3 installed?)", err)}
	}
	vms := map[string]bool{}
	for _, b := range backups {
		vms[b.VMID] = true
	}
	if !o.quiet {
		fmt.Fprintf(e.stderr, "mounted %s of %s at %s (read-only); Ctrl-C or 'umount %s' unmounts\n",
			count(len(backups), "backup", "backups"), count(len(vms), "VM", "VMs"), mnt, mnt)
	}
	serve(ctx, srv, mnt, logf)
	if !o.quiet {
		hits, misses := cache.Stats()
		fmt.Fprintf(e.stderr, "unmounted %s (%s fetched, %d chunk reads from the cache, %d from the remote)\n", mnt, humanBytes(uint64(cache.Fetched())), hits, misses)
	}
	if ctx.Err() != nil && e.ctx.Err() == nil {
		return fmt.Errorf("unmounted %s: %w", mnt, context.Cause(ctx)) // the lock was lost
	}
	return nil
}

// mountedBackups lists the backups to show (those of the VMs ids, all
// when empty) and loads the chunk index.
func mountedBackups(ctx context.Context, r *remote.Repository, ids []string) ([]remote.Backup, error) {
	backups, err := r.Backups(ctx)
	if err != nil {
		return nil, err
	}
	if len(ids) > 0 {
		var sel []remote.Backup
		for _, b := range backups {
			if slices.Contains(ids, b.VMID) {
				sel = append(sel, b)
			}
		}
		if len(sel) == 0 {
			return nil, fmt.Errorf("no backup of VM %s on the remote", strings.Join(ids, ", "))
		}
		backups = sel
	}
	if _, err := r.LoadIndex(ctx, false); err != nil {
		return nil, err
	}
	return backups, nil
}

// serve waits until the file system is unmounted from outside or ctx is
// done; then it unmounts, trying again every second while the mount point
// is busy.
func serve(ctx context.Context, srv *fuse.Server, mnt string, logf func(string, ...any)) {
	served := make(chan struct{})
	go func() { srv.Wait(); close(served) }()
	select {
	case <-served: // umount from outside
		return
	case <-ctx.Done():
	}
	for i := 0; ; i++ {
		err := unmount(srv, mnt)
		if err == nil {
			break
		}
		if i == 0 {
			logf("unmounting %s: %v: close the files in it and detach its loop devices (losetup -d); retrying every second (a second Ctrl-C stops without unmounting)", mnt, err)
		}
		select {
		case <-served:
			return
		case <-time.After(time.Second):
		}
	}
	<-served
}

// unmount unmounts mnt: as root with umount(2) itself, whose EBUSY says
// what is wrong (go-fuse would fall back to fusermount and report that
// it is missing), else through go-fuse (fusermount3 -u).
func unmount(srv *fuse.Server, mnt string) error {
	if os.Geteuid() != 0 {
		return srv.Unmount()
	}
	if err := syscall.Unmount(mnt, 0); err != nil {
		if errors.Is(err, syscall.EBUSY) {
			return errors.New("the mount point is in use")
		}
		return err
	}
	return nil
}

// mounter is what the nodes of one mount share.
type mounter struct {
	ctx   context.Context // the command's: read-ahead runs under it
	r     *remote.Repository
	cache *chunkcache.Cache
	logf  func(format string, args ...any)
}

// mountRoot is the mount's root: a directory per VM.
type mountRoot struct {
	fs.Inode
	m       *mounter
	backups []remote.Backup
}

var _ = (fs.NodeOnAdder)((*mountRoot)(nil))

func (root *mountRoot) OnAdd(ctx context.Context) {
	dirs := map[string]*fs.Inode{}
	for _, b := range root.backups {
		vm := dirs[b.VMID]
		if vm == nil {
			vm = root.NewPersistentInode(ctx, &staticDir{mtime: b.Time}, fs.StableAttr{Mode: syscall.S_IFDIR})
			root.AddChild(b.VMID, vm, false)
			dirs[b.VMID] = vm
		}
		vm.Operations().(*staticDir).mtime = b.Time // the newest
		bd := vm.NewPersistentInode(ctx, &backupDir{m: root.m, b: b}, fs.StableAttr{Mode: syscall.S_IFDIR})
		vm.AddChild(b.Stamp, bd, false)
	}
}

// staticDir is a read-only directory whose children are added up front.
type staticDir struct {
	fs.Inode
	mtime time.Time
}

var _ = (fs.NodeGetattrer)((*staticDir)(nil))

func (d *staticDir) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = syscall.S_IFDIR | 0o555
	out.SetTimes(nil, &d.mtime, &d.mtime)
	return 0
}

// backupDir is one backup: its files are known once its header has been
// read, on the first lookup or listing.
type backupDir struct {
	fs.Inode
	m *mounter
	b remote.Backup

	mu     sync.Mutex
	loaded bool
}

var (
	_ = (fs.NodeGetattrer)((*backupDir)(nil))
	_ = (fs.NodeLookuper)((*backupDir)(nil))
	_ = (fs.NodeReaddirer)((*backupDir)(nil))
)

func (d *backupDir) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = syscall.S_IFDIR | 0o555
	out.SetTimes(nil, &d.b.Time, &d.b.Time)
	return 0
}

// load reads the backup's manifest, archive header and sidecars and adds
// its files. A failure is logged and tried again on the next access.
func (d *backupDir) load(ctx context.Context) syscall.Errno {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.loaded {
		return 0
	}
	if err := d.add(ctx); err != nil {
		if ctx.Err() == nil {
			d.m.logf("backup %s: %v", d.b.Name, err)
		}
		return syscall.EIO
	}
	d.loaded = true
	return 0
}

func (d *backupDir) add(ctx context.Context) error {
	x, err := d.m.cache.OpenBackup(ctx, d.m.r, d.b) // a chunk tree is descended, not held
	if err != nil {
		return err
	}
	l, err := vmalayout.Open(ctx, x, x.Size())
	if err != nil {
		return err
	}
	l.Speculate = 16 // random reads deep into a disk: see vmalayout
	files := map[string]fs.InodeEmbedder{}
	claim := func(name, what string, node fs.InodeEmbedder) {
		if err := vma.CheckName(name); err != nil {
			d.m.logf("backup %s: not showing %s: %v", d.b.Name, what, err)
			return
		}
		if _, dup := files[name]; dup {
			d.m.logf("backup %s: not showing %s: the name %q is taken", d.b.Name, what, name)
			return
		}
		files[name] = node
	}
	t := d.b.Time
	for _, c := range l.Header().Configs {
		claim(c.Name, fmt.Sprintf("config %q", c.Name), &fs.MemRegularFile{Data: c.Data, Attr: fuse.Attr{Mode: 0o444, Mtime: uint64(t.Unix())}})
	}
	for _, dev := range l.Header().Devices {
		if err := vma.CheckName(dev.Name); err != nil {
			d.m.logf("backup %s: not showing device %q: %v", d.b.Name, dev.Name, err)
			continue
		}
		claim(diskFileName(dev), fmt.Sprintf("disk %q", dev.Name), &diskFile{m: d.m, x: x, l: l, dev: dev, mtime: t})
	}
	for _, ext := range []string{".log", ".notes"} {
		obj, ok := d.b.Sidecars[ext]
		if !ok {
			continue
		}
		data, err := d.m.r.Object(ctx, obj)
		if err != nil {
			return err
		}
		claim(d.b.Name+ext, "the "+ext+" file", &fs.MemRegularFile{Data: data, Attr: fuse.Attr{Mode: 0o444, Mtime: uint64(t.Unix())}})
	}
	for name, node := range files {
		d.AddChild(name, d.NewPersistentInode(ctx, node, fs.StableAttr{Mode: syscall.S_IFREG}), false)
	}
	return nil
}

func (d *backupDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if errno := d.load(ctx); errno != 0 {
		return nil, errno
	}
	ch := d.GetChild(name)
	if ch == nil {
		return nil, syscall.ENOENT
	}
	if ga, ok := ch.Operations().(fs.NodeGetattrer); ok {
		var a fuse.AttrOut
		if errno := ga.Getattr(ctx, nil, &a); errno == 0 {
			out.Attr = a.Attr
		}
	}
	return ch, 0
}

func (d *backupDir) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	if errno := d.load(ctx); errno != 0 {
		return nil, errno
	}
	var list []fuse.DirEntry
	for name, ch := range d.Children() {
		list = append(list, fuse.DirEntry{Name: name, Mode: ch.Mode(), Ino: ch.StableAttr().Ino})
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	return fs.NewListDirStream(list), 0
}

// diskFile is a disk's raw image, read from the archive on demand.
type diskFile struct {
	fs.Inode
	m     *mounter
	x     *chunkcache.Archive
	l     *vmalayout.Layout
	dev   vma.Device
	mtime time.Time
}

var (
	_ = (fs.NodeGetattrer)((*diskFile)(nil))
	_ = (fs.NodeOpener)((*diskFile)(nil))
	_ = (fs.NodeReader)((*diskFile)(nil))
)

func (f *diskFile) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = syscall.S_IFREG | 0o444
	out.Size = f.dev.Size
	out.Blocks = (f.dev.Size + 511) / 512
	out.SetTimes(nil, &f.mtime, &f.mtime)
	return 0
}

// diskHandle is an open disk file: it notices sequential reads.
type diskHandle struct {
	next    atomic.Int64 // where a sequential read would start
	ahead   atomic.Int64 // read ahead up to here
	window  atomic.Int64
	running atomic.Bool
}

func (f *diskFile) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR) != 0 {
		return nil, 0, syscall.EROFS
	}
	h := &diskHandle{}
	h.next.Store(-1)
	return h, fuse.FOPEN_KEEP_CACHE, 0
}

// Read-ahead on sequential access: the window doubles from 1 MiB up to
// 16 MiB while the reads stay sequential.
const (
	readAheadMin = 1 << 20
	readAheadMax = 16 << 20
)

func (f *diskFile) Read(ctx context.Context, fh fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	n, err := f.l.ReadDisk(ctx, f.dev.ID, dest, off)
	if err != nil && err != io.EOF {
		if ctx.Err() == nil && !errors.Is(err, remote.ErrCorruptObject) {
			// Damaged chunks and tree nodes are logged by the cache, by name.
			f.m.logf("%s: reading bytes %d-%d: %v", f.dev.Name, off, off+int64(len(dest)), err)
		}
		return nil, syscall.EIO
	}
	if h, ok := fh.(*diskHandle); ok {
		f.readAhead(h, off, int64(n))
	}
	return fuse.ReadResultData(dest[:n]), 0
}

// readAhead fetches, in the background, the chunks of the disk bytes
// after a sequential read.
func (f *diskFile) readAhead(h *diskHandle, off, n int64) {
	seq := h.next.Swap(off+n) == off
	if !seq {
		h.window.Store(0)
		return
	}
	w := h.window.Load()
	w = min(max(2*w, readAheadMin), readAheadMax)
	h.window.Store(w)
	from := max(off+n, h.ahead.Load())
	to := min(off+n+w, int64(f.dev.Size))
	if from >= to || to-from < w/2 || !h.running.CompareAndSwap(false, true) {
		return
	}
	h.ahead.Store(to)
	go func() {
		defer h.running.Store(false)
		if lo, hi, err := f.l.ArchiveSpan(f.m.ctx, f.dev.ID, from, to-from); err == nil && lo < hi {
			f.x.Prefetch(f.m.ctx, lo, min(hi-lo, 2*(to-from)))
		}
	}()
}
