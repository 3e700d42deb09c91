package pack

import (
	"crypto/sha256"
	"encoding/binary"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// FuzzParsePack feeds arbitrary bytes to the pack parser of both format
// versions (named by the hash of the bytes each version names a pack by,
// so the name check passes): it must return entries that lie within the
// data, or an error, never panic.
func FuzzParsePack(f *testing.F) {
	var pb Builder
	pb.Add(ID{1}, 5, BlobRaw, []byte("hello"))
	pb.Add(ID{2}, 100, BlobZstd, testZstd.EncodeAll(make([]byte, 100), nil))
	data, _, _ := pb.Finish(2)
	f.Add(data)
	f.Add([]byte("VMASYNCPACK1"))
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzParsePack(t, data, 1, sha256.Sum256(data))
		tail := data
		if len(data) >= TrailerLen {
			n := int(binary.BigEndian.Uint32(data[len(data)-TrailerLen:]))
			if n >= 0 && n <= len(data)-TrailerLen {
				tail = data[len(data)-TrailerLen-n:]
			}
		}
		fuzzParsePack(t, data, 2, sha256.Sum256(tail))
	})
}

func fuzzParsePack(t *testing.T, data []byte, v int, id ID) {
	entries, err := Parse(data, id, v)
	if err != nil {
		return
	}
	for _, e := range entries {
		if int(e.Offset)+int(e.Stored) > len(data) {
			t.Fatalf("entry beyond the data: %+v", e)
		}
		loc := Location{Offset: e.Offset, Stored: e.Stored, Raw: e.Raw, Type: e.Type}
		_, _ = DecodeBlob(data[e.Offset:e.Offset+e.Stored], loc, e.Hash, nil)
	}
}

var testZstd, _ = zstd.NewWriter(nil)
