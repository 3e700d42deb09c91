package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmasync/vmasync/internal/vmalayout"
	"github.com/vmasync/vmasync/remote"
	"github.com/vmasync/vmasync/remote/backend/rclonebe"
	"github.com/vmasync/vmasync/vma"
)

// needFUSE skips the test where FUSE cannot be used, and fails it in CI
// (CI=true), where it must work.
func needFUSE(t *testing.T) {
	t.Helper()
	why := ""
	if _, err := os.Stat("/dev/fuse"); err != nil {
		why = "/dev/fuse is missing (modprobe fuse)"
	} else if os.Geteuid() != 0 {
		if _, err := exec.LookPath("fusermount3"); err != nil {
			why = "not root and no fusermount3 (Debian package fuse3)"
		}
	}
	if why == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("FUSE is not usable: %s", why)
	}
	t.Skipf("FUSE is not usable: %s", why)
}

// mounted runs `vmasync mount` of rem on a new directory and returns it
// and a function that stops the command with SIGINT (mountedSig: another
// signal) and checks that it unmounted cleanly.
func mounted(t *testing.T, rem string, args ...string) (string, func() string) {
	return mountedSig(t, os.Interrupt, rem, args...)
}

// mountedSig is mounted, stopped with sig.
func mountedSig(t *testing.T, sig os.Signal, rem string, args ...string) (string, func() string) {
	t.Helper()
	needFUSE(t)
	mnt := t.TempDir()
	var stderr bytes.Buffer
	cmd := exec.Command(builtBinary(t), append(append([]string{"mount"}, args...), rem, mnt)...)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for !isMountpoint(mnt) {
		select {
		case err := <-exited:
			t.Fatalf("mount exited: %v\n%s", err, stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("not mounted after 30s:\n%s", stderr.String())
		}
	}
	stopped := false
	stop := func() string {
		if stopped {
			return stderr.String()
		}
		stopped = true
		cmd.Process.Signal(sig)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			syscall.Unmount(mnt, syscall.MNT_DETACH)
			t.Fatalf("mount did not stop on %v:\n%s", sig, stderr.String())
		}
		if isMountpoint(mnt) {
			syscall.Unmount(mnt, syscall.MNT_DETACH)
			t.Fatalf("%s still mounted after %v:\n%s", mnt, sig, stderr.String())
		}
		if !strings.Contains(stderr.String(), "unmounted "+mnt) {
			t.Errorf("no 'unmounted' line:\n%s", stderr.String())
		}
		return stderr.String()
	}
	t.Cleanup(func() { stop() })
	return mnt, stop
}

// isMountpoint reports whether dir is in the mount table.
func isMountpoint(dir string) bool {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == dir {
			return true
		}
	}
	return false
}

func fileSHA(t *testing.T, p string) [32]byte {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	return [32]byte(h.Sum(nil))
}

// TestMountMatchesUnpack mounts a repository with two backups of a
// 3-disk VM: every file of each backup directory has the bytes unpack
// writes, 1,000 random preads equal the unpacked image, and SIGINT
// unmounts.
func TestMountMatchesUnpack(t *testing.T) {
	needFUSE(t)
	dumps := t.TempDir()
	rem := filepath.Join(t.TempDir(), "remote")
	stamps := []string{"2026_11_20-01_00_00", "2026_11_21-01_00_00"}
	var paths []string
	for gen, s := range stamps {
		paths = append(paths, nightly(t, dumps, "105", uint64(gen), s, false))
	}
	os.WriteFile(strings.TrimSuffix(paths[1], ".vma")+".notes", []byte("before the upgrade\n"), 0o644)
	if r := runCLI(t, nil, "push", "-q", dumps, rem); r.code != 0 {
		t.Fatalf("push: %v", r)
	}
	mnt, stop := mounted(t, rem, "--cache-size", "8M")
	if locks := lockFiles(t, rem); len(locks) != 1 {
		t.Errorf("locks while mounted: %v", locks)
	}
	if got := dirNames(t, filepath.Join(mnt, "105")); !slices.Equal(got, stamps) {
		t.Fatalf("105/: %v", got)
	}
	for i, s := range stamps {
		want := filepath.Join(t.TempDir(), "u")
		if r := runCLI(t, nil, "unpack", paths[i], want); r.code != 0 {
			t.Fatalf("unpack: %v", r)
		}
		dir := filepath.Join(mnt, "105", s)
		names := dirNames(t, want)
		stem := "vzdump-qemu-105-" + s
		if i == 1 {
			names = append(names, stem+".notes")
		}
		slices.Sort(names)
		if got := dirNames(t, dir); !slices.Equal(got, names) {
			t.Fatalf("%s: %v, want %v", dir, got, names)
		}
		for _, n := range names {
			if strings.HasSuffix(n, ".notes") {
				if b, _ := os.ReadFile(filepath.Join(dir, n)); string(b) != "before the upgrade\n" {
					t.Errorf("%s: %q", n, b)
				}
				continue
			}
			st, _ := os.Stat(filepath.Join(dir, n))
			wst, _ := os.Stat(filepath.Join(want, n))
			if st.Size() != wst.Size() || fileSHA(t, filepath.Join(dir, n)) != fileSHA(t, filepath.Join(want, n)) {
				t.Errorf("%s/%s differs from unpack's", s, n)
			}
		}
		if i == 1 {
			img, _ := os.ReadFile(filepath.Join(want, "disk-drive-scsi0.raw"))
			f, err := os.Open(filepath.Join(dir, "disk-drive-scsi0.raw"))
			if err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(3, 4))
			buf := make([]byte, 1<<20)
			for k := range 1000 {
				off := rng.Int64N(int64(len(img)))
				n := 1 + rng.IntN(256<<10)
				got, err := f.ReadAt(buf[:n], off)
				wantN := min(n, len(img)-int(off))
				if got != wantN || (err != nil && err != io.EOF) || !bytes.Equal(buf[:got], img[off:int(off)+wantN]) {
					t.Fatalf("pread %d: %d bytes at %d: %d, %v", k, n, off, got, err)
				}
			}
			f.Close()
		}
	}
	if _, err := os.Create(filepath.Join(mnt, "105", "x")); err == nil {
		t.Error("created a file in the mount")
	}
	if r := runCLI(t, nil, "mount", rem, mnt); r.code != 1 || !strings.Contains(r.stderr, "not empty") {
		t.Errorf("a second mount on the mount point: %v", r)
	}
	out := stop()
	if locks := lockFiles(t, rem); len(locks) != 0 {
		t.Errorf("locks after unmounting: %v", locks)
	}
	t.Log(out)
}

// openLocalRepo opens the repository in the local directory dir in
// process.
func openLocalRepo(t *testing.T, dir string) *remote.Repository {
	t.Helper()
	ctx, err := rclonebe.Setup(context.Background(), rclonebe.Settings{Transfers: 4})
	if err != nil {
		t.Fatal(err)
	}
	f, err := rclonebe.NewFs(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := remote.Open(ctx, rclonebe.New(f))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.LoadIndex(ctx, false); err != nil {
		t.Fatal(err)
	}
	return r
}

// memArchive is an archive in memory as a vmalayout.ReaderAt.
type memArchive []byte

func (m memArchive) ReadAtContext(_ context.Context, p []byte, off int64) (int, error) {
	if off >= int64(len(m)) {
		return 0, io.EOF
	}
	n := copy(p, m[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// TestMountDamagedChunk: after one chunk's bytes in its pack are
// damaged, the 4 KiB blocks of the mounted disks whose data lies in that
// chunk fail with EIO, every other block reads the right bytes, and the
// mount says which chunk.
func TestMountDamagedChunk(t *testing.T) {
	needFUSE(t)
	ctx := context.Background()
	dumps := t.TempDir()
	rem := filepath.Join(t.TempDir(), "remote")
	dump := nightly(t, dumps, "105", 0, "2026_11_20-01_00_00", false)
	if r := runCLI(t, nil, "push", "-q", dumps, rem); r.code != 0 {
		t.Fatalf("push: %v", r)
	}
	images := filepath.Join(t.TempDir(), "u")
	if r := runCLI(t, nil, "unpack", dump, images); r.code != 0 {
		t.Fatalf("unpack: %v", r)
	}
	r := openLocalRepo(t, rem)
	backups, _ := r.Backups(ctx)
	m, err := r.Manifest(ctx, backups[0])
	if err != nil {
		t.Fatal(err)
	}
	var arch bytes.Buffer
	if err := r.Restore(ctx, m, &arch, nil); err != nil {
		t.Fatal(err)
	}
	// Damage the chunk that holds the middle of the first disk's data.
	l, err := vmalayout.Open(ctx, memArchive(arch.Bytes()), int64(arch.Len()))
	if err != nil {
		t.Fatal(err)
	}
	first := l.Header().Devices[0]
	var target int64 = -1
	l.Map(ctx, first.ID, int64(first.Size)/2, int64(first.Size)/2, func(e vmalayout.Extent) error {
		if target < 0 && e.Archive >= 0 {
			target = e.Archive
		}
		return nil
	})
	var start int64
	bad := -1
	for i, c := range m.Chunks {
		if target >= start && target < start+int64(c.Length) {
			bad = i
			break
		}
		start += int64(c.Length)
	}
	badHash := m.Chunks[bad].Hash
	loc, _ := r.Lookup(remote.ID(badHash))
	var packPath string
	filepath.Walk(rem, func(p string, info os.FileInfo, err error) error {
		if err == nil && strings.Contains(filepath.Base(p), loc.Pack.String()) {
			packPath = p
		}
		return nil
	})
	pack, err := os.ReadFile(packPath)
	if err != nil {
		t.Fatal(err)
	}
	pack[loc.Offset+loc.Stored/2] ^= 0xff
	if err := os.WriteFile(packPath, pack, 0o644); err != nil {
		t.Fatal(err)
	}
	// The archive ranges of every chunk with that hash.
	type span struct{ a, b int64 }
	var damaged []span
	start = 0
	for _, c := range m.Chunks {
		if c.Hash == badHash {
			damaged = append(damaged, span{start, start + int64(c.Length)})
		}
		start += int64(c.Length)
	}

	mnt, stop := mountedSig(t, syscall.SIGTERM, rem, "--cache-size", "1M")
	dir := filepath.Join(mnt, "105", "2026_11_20-01_00_00")
	eio := 0
	for _, d := range l.Header().Devices {
		// Which blocks must fail: those whose stored bytes overlap.
		failing := map[int64]bool{}
		l.Map(ctx, d.ID, 0, int64(d.Size), func(e vmalayout.Extent) error {
			if e.Archive < 0 {
				return nil
			}
			for _, s := range damaged {
				lo, hi := max(e.Archive, s.a), min(e.Archive+e.Len, s.b)
				for a := lo; a < hi; a++ {
					failing[(e.Disk+a-e.Archive)/vma.BlockSize] = true
				}
			}
			return nil
		})
		img, _ := os.ReadFile(filepath.Join(images, vma.ImageName(d.Name)))
		f, err := os.Open(filepath.Join(dir, vma.ImageName(d.Name)))
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, vma.BlockSize)
		for blk := int64(0); blk*vma.BlockSize < int64(d.Size); blk++ {
			off := blk * vma.BlockSize
			n, err := f.ReadAt(buf, off)
			if failing[blk] {
				if !errors.Is(err, syscall.EIO) {
					t.Fatalf("%s block %d: %v, want EIO", d.Name, blk, err)
				}
				eio++
				continue
			}
			want := img[off:min(off+vma.BlockSize, int64(len(img)))]
			if (err != nil && err != io.EOF) || !bytes.Equal(buf[:n], want) {
				t.Fatalf("%s block %d: %d bytes, %v", d.Name, blk, n, err)
			}
		}
		f.Close()
	}
	if eio == 0 {
		t.Fatal("no block failed")
	}
	out := stop()
	if !strings.Contains(out, remote.ID(badHash).Short()) {
		t.Errorf("the damaged chunk %s is not named:\n%s", remote.ID(badHash).Short(), out)
	}
	t.Logf("%d blocks failed with EIO\n%s", eio, out)
}
