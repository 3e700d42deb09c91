// Package index maps chunk hashes to where they are stored in packs: the
// in-memory index (Index), the index as a local cache of sorted runs whose
// memory does not grow with the repository (DiskIndex), and the format of
// the index objects that a repository stores (Encode, Decode). It knows
// nothing of remote storage.
//
// # DiskIndex: why sorted runs read with pread
//
// A DiskIndex answers what Index answers with memory that does not grow
// with the repository (issue 15). The in-memory Index costs 52 bytes a chunk (2.6 GB at
// 50 million chunks). A DiskIndex keeps the entries on local disk in a
// few sorted files ("runs") of fixed-size records (the index object's
// 49-byte entry: hash, pack number, offset, lengths, type) and holds in
// memory only, per run, a fence: the first 8 bytes of the first hash of
// every block of 64 records and the block's CRC-32C (12 bytes a block,
// 0.19 bytes a chunk: 9 MiB at 50 million), plus the pack table (44 bytes
// a pack, a pack holding ~2000 chunks). A lookup binary-searches the fence
// and reads one block of 3136 bytes with one pread (os.File.ReadAt) per
// run. Reads go through ReadAt, not mmap: mapped pages count in a
// process's RSS, pages read by pread stay in the kernel's page cache,
// which the kernel shrinks under pressure. A B-tree or an embedded
// key-value store would do the same lookups with more code we do not
// control and with write amplification the workload does not need: the
// index objects are immutable and arrive in batches, so runs written
// once by an external merge sort and merged now and then fit exactly.
//
// Building: the runs are built from the index objects by an external
// merge sort. Objects are decoded one at a time (each at most MaxEntries
// entries), their entries collected in a buffer of DiskOptions.SortRecords
// records (256 Ki by default: 13 MiB), sorted and spilled to a temporary
// file when full; the spills are merged (at most 256 at once, 64 KiB of
// buffer each; in passes beyond 67 million entries) into one run. The RAM
// of a build so does not grow with the number of entries (about 120 MiB
// peak RSS with the decoding of one object and the garbage collector's
// headroom; docs/benchmarks.md, "Index memory").
//
// The cache: a run records the names of the index objects it was built
// from. Opening with the repository's current list of index objects uses
// every run whose objects all still exist (runs naming an object that is
// gone, as after a prune, are deleted), builds one new run from the
// objects no run covers (a push's new ones), and merges the smallest runs
// when there are more than DiskOptions.MaxRuns, so a lookup costs at most
// a few preads. Damage is never trusted: a run's tables and fence are
// checked against a SHA-256 in its footer when it is opened (a run that
// fails is deleted and built again), every block against its CRC-32C
// whenever it is read. A block that fails while the index is in use (the
// disk changed under it) makes lookups of that block report "not found",
// sets Err, and deletes the run so that the next open builds it again:
// callers that delete data (garbage collection) must check Err first.
//
// Entries added by a running push (Add) go to an in-memory map, written
// as a temporary sorted run every DiskOptions.FlushAt entries and
// deleted at Close.
//
// Packs: entries whose pack is missing or shorter than the entry needs
// are not used (SetPacks), as LoadIndex drops them; the check happens at
// lookup, so the cache does not depend on the pack listing. Of a hash
// with several usable entries the first in the run's order wins (within
// one run: the pack seen first in the sorted object names, then the
// lowest offset, as Index does); across runs the run of the
// alphabetically first object wins, which may differ from Index's choice
// when runs were built at different times. Every choice is a valid copy.
package index
