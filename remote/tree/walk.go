package tree

import (
	"context"
	"fmt"

	"github.com/vmasync/vmasync/chunkplan"
)

// Loader fetches nodes by id, in the order given: data[i] is node ids[i]
// (checked against its id by the loader) or errs[i] says why not.
type Loader func(ctx context.Context, ids []ID) (data [][]byte, errs []error)

// Visitor receives a walk. Node, if set, is called for every node before
// it is loaded; returning false skips the node and everything below it
// (garbage collection skips what it already marked). Chunk, if set,
// receives the chunks of the leaves visited, in order; Skipped, if set,
// receives each skipped node at its place among them (for a caller that
// counts archive offsets).
type Visitor struct {
	Node    func(r Ref) bool
	Chunk   func(c chunkplan.ChunkRef) error
	Skipped func(r Ref) error
}

// batch is how many nodes of one level a walk loads at once: neighbours
// are usually stored next to each other, so a batch costs few reads.
const batch = 256

// item is a node to walk, or one skipped that is passed down to the
// level of leaves to be reported in order.
type item struct {
	Ref
	skipped bool
}

// Walk visits the tree below root, depth first and in order, loading
// nodes in batches of a level. Every node is checked: its format and
// bounds (Parse with maxChunk), its level, and that it holds the bytes
// and chunks its parent (or root) claims. Memory is bounded by the
// height times batch nodes. Errors name the node and wrap ErrCorrupt
// when the tree itself is wrong; a loader's error is wrapped as it is.
func Walk(ctx context.Context, root Ref, maxChunk uint32, load Loader, v Visitor) error {
	if root.Level > MaxLevel || root.Level < 0 {
		return fmt.Errorf("%w: root of level %d", ErrCorrupt, root.Level)
	}
	return walk(ctx, root.Level, []item{{Ref: root}}, maxChunk, load, v)
}

// walk visits items, nodes of the given level (and skipped nodes above
// it, passed down in order).
func walk(ctx context.Context, level int, items []item, maxChunk uint32, load Loader, v Visitor) error {
	for len(items) > 0 {
		n := min(len(items), batch)
		part := items[:n]
		items = items[n:]
		var ids []ID
		for i := range part {
			it := &part[i]
			if !it.skipped && v.Node != nil && !v.Node(it.Ref) {
				it.skipped = true
			}
			if !it.skipped {
				ids = append(ids, it.ID)
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		var data [][]byte
		var errs []error
		if len(ids) > 0 {
			data, errs = load(ctx, ids)
		}
		var children []item
		k := 0
		for _, it := range part {
			if it.skipped {
				if level > 0 {
					children = append(children, it)
				} else if v.Skipped != nil {
					if err := v.Skipped(it.Ref); err != nil {
						return err
					}
				}
				continue
			}
			r := it.Ref
			d, err := data[k], errs[k]
			k++
			if err != nil {
				return fmt.Errorf("tree node %x (level %d): %w", r.ID[:4], r.Level, err)
			}
			nd, err := Parse(d, maxChunk)
			if err == nil {
				err = nd.Check(r)
			}
			if err != nil {
				return fmt.Errorf("tree node %x (level %d): %w", r.ID[:4], r.Level, err)
			}
			if level > 0 {
				for _, c := range nd.Children {
					children = append(children, item{Ref: c})
				}
				continue
			}
			if v.Chunk != nil {
				for _, c := range nd.Chunks {
					if err := v.Chunk(c); err != nil {
						return err
					}
				}
			}
		}
		if len(children) > 0 {
			if err := walk(ctx, level-1, children, maxChunk, load, v); err != nil {
				return err
			}
		}
	}
	return nil
}

// Sum returns the archive bytes and the chunks below a parsed node: what
// its parent (or the root) must say of it.
func (nd *Node) Sum() (bytes, chunks uint64) {
	if nd.Level == 0 {
		for _, c := range nd.Chunks {
			bytes += uint64(c.Length)
		}
		return bytes, uint64(len(nd.Chunks))
	}
	for _, c := range nd.Children {
		bytes += c.Bytes
		chunks += c.Chunks
	}
	return bytes, chunks
}

// Check compares a parsed node with what its parent (or the root) says
// of it, r: its level, bytes and chunks. Walk checks every node it loads
// this way; a reader that descends a tree itself does the same.
func (nd *Node) Check(r Ref) error {
	if nd.Level != r.Level {
		return fmt.Errorf("%w: level %d, its parent says %d", ErrCorrupt, nd.Level, r.Level)
	}
	bytes, chunks := nd.Sum()
	if bytes != r.Bytes || chunks != r.Chunks {
		return fmt.Errorf("%w: holds %d chunks of %d bytes, its parent says %d of %d", ErrCorrupt, chunks, bytes, r.Chunks, r.Bytes)
	}
	return nil
}

// Locate finds the entry of a node that holds position pos counted from
// the node's start: an archive byte, or with byChunk a chunk's ordinal.
// It returns the entry's number (into Chunks for a leaf, Children above)
// and the archive bytes and chunks of the entries before it; ok is false
// when the node ends before pos. It is how a reader descends a tree to
// one chunk without walking it: the bytes and chunks an entry carries
// say which child holds a position.
func (nd *Node) Locate(pos uint64, byChunk bool) (i int, bytes, chunks uint64, ok bool) {
	if nd.Level == 0 {
		for i, c := range nd.Chunks {
			if byChunk && pos == uint64(i) || !byChunk && pos < bytes+uint64(c.Length) {
				return i, bytes, uint64(i), true
			}
			bytes += uint64(c.Length)
		}
		return 0, 0, 0, false
	}
	for i, c := range nd.Children {
		if byChunk && pos < chunks+c.Chunks || !byChunk && pos < bytes+c.Bytes {
			return i, bytes, chunks, true
		}
		bytes += c.Bytes
		chunks += c.Chunks
	}
	return 0, 0, 0, false
}
