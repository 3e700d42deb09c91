package remote

import (
	"testing"

	"github.com/vmasync/vmasync/chunkplan"
	"github.com/vmasync/vmasync/remote/tree"
)

// FuzzDecodeRoot: any bytes decode to a root object that is consistent
// (tree bytes equal the archive size, a plausible chunk count, bounded
// strings and devices) or fail; never a panic.
func FuzzDecodeRoot(f *testing.F) {
	m := &chunkplan.Manifest{Source: "vzdump-qemu-105-2026_11_21-01_00_02.vma.zst", VMID: "105", BackupTime: 1763686802,
		Devices: []chunkplan.Device{{Name: "drive-scsi0", Size: 1 << 30}}, ArchiveSize: 1 << 20, Params: chunkplan.DefaultParams()}
	b, err := encodeRoot(m, tree.Ref{ID: [32]byte{1}, Level: 2, Bytes: 1 << 20, Chunks: 100})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(`{"format":"vmasync-backup","version":3}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, r, err := decodeRoot(b)
		if err != nil {
			return
		}
		if r.Bytes != m.ArchiveSize || r.Chunks == 0 || r.Chunks > r.Bytes || r.Level > tree.MaxLevel ||
			len(m.Devices) > chunkplan.MaxDevices || len(m.Source) > chunkplan.MaxStringLen {
			t.Fatalf("decoded an inconsistent root: %+v %+v", m, r)
		}
		if _, err := encodeRoot(m, r); err != nil {
			t.Fatalf("a decoded root does not encode again: %v", err)
		}
	})
}
