package remote

import (
	"crypto/sha256"
	"encoding/binary"
	"testing"
)

// FuzzParsePack feeds arbitrary bytes to the pack parser of both format
// versions (named by the hash of the bytes each version names a pack by,
// so the name check passes): it must return entries that lie within the
// data, or an error, never panic.
func FuzzParsePack(f *testing.F) {
	var pb packBuilder
	pb.add(ID{1}, 5, blobRaw, []byte("hello"))
	pb.add(ID{2}, 100, blobZstd, zstdEncoder.EncodeAll(make([]byte, 100), nil))
	data, _, _ := pb.finish(FormatVersion)
	f.Add(data)
	f.Add([]byte("VMASYNCPACK1"))
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzParsePack(t, data, 1, sha256.Sum256(data))
		tail := data
		if len(data) >= packTrailer {
			n := int(binary.BigEndian.Uint32(data[len(data)-packTrailer:]))
			if n >= 0 && n <= len(data)-packTrailer {
				tail = data[len(data)-packTrailer-n:]
			}
		}
		fuzzParsePack(t, data, 2, sha256.Sum256(tail))
	})
}

func fuzzParsePack(t *testing.T, data []byte, v int, id ID) {
	entries, err := parsePack(data, id, v)
	if err != nil {
		return
	}
	for _, e := range entries {
		if int(e.Offset)+int(e.Stored) > len(data) {
			t.Fatalf("entry beyond the data: %+v", e)
		}
		loc := Location{Offset: e.Offset, Stored: e.Stored, Raw: e.Raw, Type: e.Type}
		_, _ = decodeBlob(data[e.Offset:e.Offset+e.Stored], loc, e.Hash, nil)
	}
}

// FuzzDecodeIndex: arbitrary (zstd-compressed) index objects decode or
// fail, never panic or allocate without bound.
func FuzzDecodeIndex(f *testing.F) {
	f.Add(encodeIndex([]indexEntryOf{{Hash: ID{1}, Location: Location{Pack: ID{2}, Offset: 3, Stored: 4, Raw: 5, Type: 1}}}))
	f.Add(zstdEncoder.EncodeAll([]byte(indexMagic+"\xff\xff\xff\xff"), nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := decodeIndex(data, sha256.Sum256(data))
		if err == nil && len(entries) > len(data)*1000 {
			t.Fatalf("%d entries from %d bytes", len(entries), len(data))
		}
	})
}
