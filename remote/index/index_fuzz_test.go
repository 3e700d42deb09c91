package index

import (
	"crypto/sha256"
	"testing"
)

// FuzzDecodeIndex: arbitrary (zstd-compressed) index objects decode or
// fail, never panic or allocate without bound.
func FuzzDecodeIndex(f *testing.F) {
	f.Add(Encode([]Entry{{Hash: ID{1}, Location: Location{Pack: ID{2}, Offset: 3, Stored: 4, Raw: 5, Type: 1}}}))
	f.Add(encoder.EncodeAll([]byte(Magic+"\xff\xff\xff\xff"), nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := Decode(data, sha256.Sum256(data))
		if err == nil && len(entries) > len(data)*1000 {
			t.Fatalf("%d entries from %d bytes", len(entries), len(data))
		}
	})
}
