package tree

import (
	"crypto/sha256"
	"testing"

	"github.com/vmasync/vmasync/chunkplan"
)

// FuzzParse: any bytes parse or fail with ErrCorrupt, never panic, and a
// node that parses is the size its count says.
func FuzzParse(f *testing.F) {
	s := memStore{}
	w := NewWriter(s.store)
	for i := range 300 {
		w.Add(chunkplan.ChunkRef{Hash: sha256.Sum256([]byte{byte(i), byte(i >> 8)}), Length: 4096})
	}
	w.Close()
	for _, b := range s {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		nd, err := Parse(b, 65536)
		if err != nil {
			return
		}
		n := len(nd.Chunks) + len(nd.Children)
		if n == 0 || n > MaxEntries || len(b) > MaxNode {
			t.Fatalf("parsed a node of %d entries from %d bytes", n, len(b))
		}
	})
}
