// Package tree stores a backup's chunk list as a tree of small nodes cut
// by content (a Prolly tree, as restic stores trees and bup/casync split
// their indexes), so that two backups whose chunk lists differ in a few
// places share every other node and a push stores only the nodes on the
// paths to what changed. It is a codec: it builds and parses nodes and
// walks a tree through a loader the caller supplies; it knows nothing of
// storage.
//
// A leaf (level 0) lists chunks: hash and length. A node of level L > 0
// lists nodes of level L-1: id (the SHA-256 of the node's bytes), the
// bytes of archive and the chunks below it. A node ends after an entry
// whose hash has its low Bits bits zero, or at MaxEntries entries; the
// cut depends only on the entries, so an insertion or change disturbs the
// one node around it (and its parents), not the nodes after it.
package tree

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/vmasync/vmasync/chunkplan"
)

// ID is the SHA-256 of a node's bytes (or a chunk's).
type ID = [32]byte

// Format constants (docs/repository.md, "Trees").
const (
	// Magic opens every node.
	Magic = "VMASYNC-TREE"
	// Version is the node format version.
	Version = 1
	// HeaderSize is magic, version u8, level u8 and entry count u32.
	HeaderSize = len(Magic) + 1 + 1 + 4
	// LeafEntrySize is a chunk's hash (32) and length u32.
	LeafEntrySize = 32 + 4
	// NodeEntrySize is a child's id (32), bytes u64 and chunks u64.
	NodeEntrySize = 32 + 8 + 8
	// Bits sets the average entries of a node: 2^Bits.
	Bits = 3
	// MaxEntries bounds a node (8 × the average; reached by chance in
	// about one node in 5,000, and by long runs of one repeated chunk).
	MaxEntries = 8 << Bits
	// MaxLevel bounds a tree's height: 2^(3·16) chunks is far beyond any
	// archive.
	MaxLevel = 16
	// MaxNode is the largest node in bytes.
	MaxNode = HeaderSize + MaxEntries*NodeEntrySize
)

// ErrCorrupt is wrapped by every error about a node or tree that does not
// parse or does not add up.
var ErrCorrupt = errors.New("tree: corrupt")

// Ref points to a node and says what lies below it; a backup's root is a
// Ref.
type Ref struct {
	ID     ID
	Level  int
	Bytes  uint64 // archive bytes below it
	Chunks uint64 // chunks below it
}

// cut reports whether a node ends after an entry with hash h.
func cut(h *ID) bool { return binary.BigEndian.Uint32(h[28:])&(1<<Bits-1) == 0 }

// Node is a parsed node: Chunks for a leaf, Children otherwise.
type Node struct {
	Level    int
	Chunks   []chunkplan.ChunkRef
	Children []Ref
}

// Parse decodes a node. It checks the format and the bounds (entry count,
// level, lengths up to maxChunk, exact size), not the hash.
func Parse(b []byte, maxChunk uint32) (*Node, error) {
	if maxChunk == 0 {
		return nil, errors.New("tree: Parse with a maximum chunk length of 0")
	}
	if len(b) < HeaderSize || string(b[:len(Magic)]) != Magic {
		return nil, fmt.Errorf("%w: not a tree node", ErrCorrupt)
	}
	p := b[len(Magic):]
	if p[0] != Version {
		return nil, fmt.Errorf("%w: node version %d, want %d", ErrCorrupt, p[0], Version)
	}
	level := int(p[1])
	n := binary.BigEndian.Uint32(p[2:6])
	if level > MaxLevel {
		return nil, fmt.Errorf("%w: level %d, at most %d", ErrCorrupt, level, MaxLevel)
	}
	if n == 0 || n > MaxEntries {
		return nil, fmt.Errorf("%w: %d entries, want 1..%d", ErrCorrupt, n, MaxEntries)
	}
	size := LeafEntrySize
	if level > 0 {
		size = NodeEntrySize
	}
	if want := HeaderSize + int(n)*size; len(b) != want {
		return nil, fmt.Errorf("%w: %d bytes, %d entries of level %d make %d", ErrCorrupt, len(b), n, level, want)
	}
	nd := &Node{Level: level}
	e := b[HeaderSize:]
	if level == 0 {
		nd.Chunks = make([]chunkplan.ChunkRef, n)
		for i := range nd.Chunks {
			c := &nd.Chunks[i]
			copy(c.Hash[:], e[:32])
			c.Length = binary.BigEndian.Uint32(e[32:36])
			if c.Length == 0 || c.Length > maxChunk {
				return nil, fmt.Errorf("%w: chunk %d has length %d, want 1..%d", ErrCorrupt, i, c.Length, maxChunk)
			}
			e = e[LeafEntrySize:]
		}
		return nd, nil
	}
	nd.Children = make([]Ref, n)
	for i := range nd.Children {
		c := &nd.Children[i]
		copy(c.ID[:], e[:32])
		c.Level = level - 1
		c.Bytes = binary.BigEndian.Uint64(e[32:40])
		c.Chunks = binary.BigEndian.Uint64(e[40:48])
		if c.Chunks == 0 || c.Bytes < c.Chunks || c.Bytes/uint64(maxChunk) > c.Chunks {
			return nil, fmt.Errorf("%w: child %d claims %d chunks in %d bytes", ErrCorrupt, i, c.Chunks, c.Bytes)
		}
		e = e[NodeEntrySize:]
	}
	return nd, nil
}

// Writer builds the tree of a chunk list given in order, handing every
// node to store as soon as it is complete (children before parents). It
// holds one unfinished node per level.
type Writer struct {
	store  func(level int, id ID, node []byte) error
	levels []*level
	err    error
}

type level struct {
	buf           []byte
	n             int
	bytes, chunks uint64
	emitted       bool
}

// NewWriter returns a Writer that calls store for every node. store must
// not keep node after it returns.
func NewWriter(store func(level int, id ID, node []byte) error) *Writer {
	return &Writer{store: store}
}

func (w *Writer) lvl(l int) *level {
	for len(w.levels) <= l {
		b := make([]byte, HeaderSize, HeaderSize+MaxEntries*NodeEntrySize)
		copy(b, Magic)
		b[len(Magic)] = Version
		b[len(Magic)+1] = byte(len(w.levels))
		w.levels = append(w.levels, &level{buf: b})
	}
	return w.levels[l]
}

// Add appends the next chunk of the list.
func (w *Writer) Add(c chunkplan.ChunkRef) error {
	if w.err != nil {
		return w.err
	}
	lv := w.lvl(0)
	lv.buf = append(lv.buf, c.Hash[:]...)
	lv.buf = binary.BigEndian.AppendUint32(lv.buf, c.Length)
	lv.n++
	lv.bytes += uint64(c.Length)
	lv.chunks++
	if cut(&c.Hash) || lv.n == MaxEntries {
		w.err = w.flush(0)
	}
	return w.err
}

// add appends a child to level l.
func (w *Writer) add(l int, r Ref) error {
	lv := w.lvl(l)
	lv.buf = append(lv.buf, r.ID[:]...)
	lv.buf = binary.BigEndian.AppendUint64(lv.buf, r.Bytes)
	lv.buf = binary.BigEndian.AppendUint64(lv.buf, r.Chunks)
	lv.n++
	lv.bytes += r.Bytes
	lv.chunks += r.Chunks
	if cut(&r.ID) || lv.n == MaxEntries {
		return w.flush(l)
	}
	return nil
}

// seal finishes level l's node, stores it and empties the level.
func (w *Writer) seal(l int) (Ref, error) {
	lv := w.levels[l]
	if l > MaxLevel {
		return Ref{}, fmt.Errorf("tree: deeper than %d levels", MaxLevel)
	}
	binary.BigEndian.PutUint32(lv.buf[len(Magic)+2:], uint32(lv.n))
	r := Ref{ID: sha256.Sum256(lv.buf), Level: l, Bytes: lv.bytes, Chunks: lv.chunks}
	if err := w.store(l, r.ID, lv.buf); err != nil {
		return Ref{}, err
	}
	lv.buf, lv.n, lv.bytes, lv.chunks, lv.emitted = lv.buf[:HeaderSize], 0, 0, 0, true
	return r, nil
}

// flush seals level l's node and adds it to its parent.
func (w *Writer) flush(l int) error {
	r, err := w.seal(l)
	if err != nil {
		return err
	}
	return w.add(l+1, r)
}

// Close finishes the tree and returns its root. A list of one chunk is a
// leaf of one entry; an empty list has no tree (an error).
func (w *Writer) Close() (Ref, error) {
	if w.err != nil {
		return Ref{}, w.err
	}
	if len(w.levels) == 0 {
		return Ref{}, errors.New("tree: no chunks")
	}
	for l := 0; ; l++ {
		lv := w.levels[l]
		if l == len(w.levels)-1 && !lv.emitted {
			// Everything of this level is in this node: it is the root,
			// or its only child is.
			if l > 0 && lv.n == 1 {
				e := lv.buf[HeaderSize:]
				var r Ref
				copy(r.ID[:], e[:32])
				return Ref{ID: r.ID, Level: l - 1, Bytes: lv.bytes, Chunks: lv.chunks}, nil
			}
			return w.seal(l)
		}
		if lv.n > 0 {
			if err := w.flush(l); err != nil {
				return Ref{}, err
			}
		}
	}
}
