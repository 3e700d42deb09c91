package chunkcache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmasync/vmasync/internal/vmafile"
	"github.com/vmasync/vmasync/internal/vmalayout"
	"github.com/vmasync/vmasync/remote"
	"github.com/vmasync/vmasync/remote/tree"
	"github.com/vmasync/vmasync/vma"
)

// TestOpenBackupTree (issue 15): a format 3 backup opened with
// OpenBackup (its chunk tree descended, no chunk list held) gives every
// disk as unpack writes it, to concurrent readers as well, and fetches
// each chunk once.
func TestOpenBackupTree(t *testing.T) {
	ctx := context.Background()
	_, r, m, arch := pushed(t)
	if r.Config.Version != 3 {
		t.Fatalf("repository format %d, want 3", r.Config.Version)
	}
	images := filepath.Join(t.TempDir(), "x")
	if err := vmafile.Unpack(bytes.NewReader(arch), images, vmafile.UnpackOptions{}); err != nil {
		t.Fatal(err)
	}
	backups, _ := r.Backups(ctx)
	cache := New(64 << 20)
	x, err := cache.OpenBackup(ctx, r, backups[0])
	if err != nil {
		t.Fatal(err)
	}
	if x.Size() != int64(m.ArchiveSize) || x.Name != backups[0].Name {
		t.Fatalf("size %d, name %q", x.Size(), x.Name)
	}
	l, err := vmalayout.Open(ctx, x, x.Size())
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range l.Header().Devices {
		out, _ := os.Create(filepath.Join(t.TempDir(), "disk.raw"))
		if err := l.WriteDisk(ctx, d.ID, nil, out, vmalayout.CopyOptions{Window: 256 << 10, Prefetch: x.Prefetch}); err != nil {
			t.Fatal(err)
		}
		out.Truncate(int64(d.Size))
		out.Close()
		want, _ := os.ReadFile(filepath.Join(images, vma.ImageName(d.Name)))
		if got, _ := os.ReadFile(out.Name()); !bytes.Equal(got, want) {
			t.Fatalf("%s differs from unpack's image", d.Name)
		}
	}
	if hits, misses := cache.Stats(); misses > int64(len(m.Chunks)) {
		t.Fatalf("%d misses (%d hits) for %d chunks", misses, hits, len(m.Chunks))
	}

	// Concurrent readers through a small cache of a second open.
	cache = New(256 << 10)
	x, err = cache.OpenBackup(ctx, r, backups[0])
	if err != nil {
		t.Fatal(err)
	}
	l, err = vmalayout.Open(ctx, x, x.Size())
	if err != nil {
		t.Fatal(err)
	}
	readConcurrently(t, ctx, l, x, images, 6, 40, 21)
}

// TestOpenBackupDamagedNode: a leaf of the chunk tree damaged in its
// pack fails the reads of the archive bytes below it, is logged once
// naming the backup and the node, and leaves the other reads alone.
func TestOpenBackupDamagedNode(t *testing.T) {
	ctx := context.Background()
	mem, r, m, arch := pushed(t)
	backups, _ := r.Backups(ctx)
	// A leaf is stored as it is (its hashes do not compress): "VMASYNC-
	// TREE", version 1, level 0, its entry count, then its first chunk's
	// hash. Find the leaf that starts at the first chunk past the middle
	// of the archive.
	var start int64
	mid := 0
	for i, c := range m.Chunks {
		if start >= int64(m.ArchiveSize)/2 {
			mid = i
			break
		}
		start += int64(c.Length)
	}
	var obj string
	at := -1
	for ; mid < len(m.Chunks) && at < 0; mid++ {
		for _, n := range mem.Names() {
			if !strings.HasPrefix(n, remote.PacksDir+"/") {
				continue
			}
			data, _ := mem.Get(n)
			for k := 0; ; {
				j := bytes.Index(data[k:], []byte(tree.Magic+"\x01\x00"))
				if j < 0 {
					break
				}
				k += j + 1
				if e := k - 1 + tree.HeaderSize; e+32 <= len(data) && bytes.Equal(data[e:e+32], m.Chunks[mid].Hash[:]) {
					obj, at = n, k-1
				}
			}
		}
		if at < 0 {
			start += int64(m.Chunks[mid].Length)
		}
	}
	if at < 0 {
		t.Fatal("no leaf stored as it is past the middle")
	}
	data, _ := mem.Get(obj)
	data = bytes.Clone(data)
	node := sha256.Sum256(data[at : at+tree.HeaderSize+int(binary.BigEndian.Uint32(data[at+tree.HeaderSize-4:]))*tree.LeafEntrySize])
	data[at+tree.HeaderSize+5] ^= 0xff
	mem.Put(obj, data)

	var logged []string
	cache := New(0)
	cache.Log = func(s string) { logged = append(logged, s) }
	x, err := cache.OpenBackup(ctx, r, backups[0])
	if err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 100)
	for range 2 {
		if _, err := x.ReadAtContext(ctx, p, start+10); !errors.Is(err, remote.ErrCorruptObject) {
			t.Fatalf("read below a damaged leaf: %v", err)
		}
	}
	name := fmt.Sprintf("tree node %x (level 0)", node[:4])
	if len(logged) != 1 || !strings.Contains(logged[0], name) || !strings.Contains(logged[0], backups[0].Name) {
		t.Fatalf("log: %q, want one line naming %s", logged, name)
	}
	if _, err := x.ReadAtContext(ctx, p, 0); err != nil || !bytes.Equal(p, arch[:100]) {
		t.Fatalf("a read before the damaged leaf: %v", err)
	}
	end := x.Size() - 100
	if _, err := x.ReadAtContext(ctx, p, end); err != nil || !bytes.Equal(p, arch[end:]) {
		t.Fatalf("a read after the damaged leaf: %v", err)
	}
}
