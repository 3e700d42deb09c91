// Package chunkplan measures how well vmasync's canonical VMA ordering
// deduplicates: it splits a backup stream into content-defined chunks
// (github.com/restic/chunker v0.4.0, Rabin fingerprints), hashes each chunk
// with SHA-256, records the result in a Manifest, and compares manifests.
//
// With ResticParams and a restic repository's chunker polynomial (restic
// cat config → chunker_polynomial), the chunk boundaries are exactly
// restic's, so Compare(a, b).NewBytes predicts restic's data_added for
// backing up b after a (restic adds a little blob and pack overhead on
// top). DefaultPolynomial is a fixed polynomial for manifests that are only
// compared with each other, and DefaultParams (about 8 KiB chunks, chosen
// by measurement) are vmasync's own parameters, close to the physical floor
// of scattered 64 KiB cluster changes.
//
// # Manifest format, version 1
//
// All integers are big-endian and unsigned unless noted. Strings are a u16
// byte length followed by that many bytes (UTF-8 expected, not enforced),
// at most 4096 bytes.
//
//	offset  size  field
//	0       16    magic "VMASYNC-MANIFEST" (ASCII)
//	16      4     format version (u32) = 1
//	20      8     chunker polynomial (u64; irreducible, degree 53)
//	28      4     min chunk size (u32, >= 64)
//	32      4     max chunk size (u32, >= min, <= 64 MiB)
//	36      4     average bits (u32, 1..30)
//	40      8     archive size in bytes (u64)
//	48      32    SHA-256 of the whole archive stream
//	80      8     backup time (i64, Unix seconds, two's complement)
//	88      var   source (string)
//	        var   VM id (string)
//	        2     device count D (u16, <= 256)
//	        var   D × { name (string), size (u64) }
//	        8     chunk count N (u64, <= archive size)
//	        36×N  N × { SHA-256 of the chunk (32 bytes), length (u32) }
//	        32    SHA-256 of every preceding byte of the manifest
//
// The file ends right after the trailing checksum. Chunk lengths are 1..max
// chunk size and sum to the archive size; chunks are in stream order.
//
// Readers check the magic, then the version: a version of 0 or above the
// newest they know is refused (ErrUnsupportedVersion) before anything else
// is interpreted. Any truncation, bad field, checksum mismatch or trailing
// data is reported as ErrCorruptManifest. Readers never allocate according
// to a count claimed in the file: chunk entries are read one by one, so
// memory is bounded by the bytes actually present.
//
// A future version may add header fields; it must bump the version number,
// since version-1 readers have no way to skip unknown fields.
package chunkplan
