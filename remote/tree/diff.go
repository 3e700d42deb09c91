package tree

import (
	"bytes"
	"context"
	"slices"

	"github.com/vmasync/vmasync/chunkplan"
)

// Diff calls onlyA for the chunks of the leaves of tree a that tree b
// does not share, and onlyB for those of b's leaves that a does not share
// (in tree order). Subtrees the two trees share are not loaded: the
// trees' inner nodes are read once to find them, and only the leaves
// that differ are read. A chunk is reported when the part of the list
// holding it differs, even if the other tree holds it elsewhere.
func Diff(ctx context.Context, a, b Ref, maxChunk uint32, load Loader, onlyA, onlyB func(chunkplan.ChunkRef) error) error {
	if a == b {
		return nil
	}
	inA, err := nodeIDs(ctx, a, maxChunk, load)
	if err != nil {
		return &DiffError{Err: err}
	}
	inB, err := nodeIDs(ctx, b, maxChunk, load)
	if err != nil {
		return &DiffError{InB: true, Err: err}
	}
	not := func(set []ID) func(r Ref) bool {
		return func(r Ref) bool {
			_, found := slices.BinarySearchFunc(set, r.ID, compareID)
			return !found
		}
	}
	if err := Walk(ctx, a, maxChunk, load, Visitor{Node: not(inB), Chunk: onlyA}); err != nil {
		return &DiffError{Err: err}
	}
	if err := Walk(ctx, b, maxChunk, load, Visitor{Node: not(inA), Chunk: onlyB}); err != nil {
		return &DiffError{InB: true, Err: err}
	}
	return nil
}

// DiffError says which tree a Diff failed on (an error of onlyA or
// onlyB is reported as one of that tree).
type DiffError struct {
	InB bool
	Err error
}

func (e *DiffError) Error() string { return e.Err.Error() }
func (e *DiffError) Unwrap() error { return e.Err }

// nodeIDs returns the ids of every node of the tree, sorted, loading only
// the nodes above the leaves.
func nodeIDs(ctx context.Context, root Ref, maxChunk uint32, load Loader) ([]ID, error) {
	var ids []ID
	err := Walk(ctx, root, maxChunk, load, Visitor{Node: func(r Ref) bool {
		ids = append(ids, r.ID)
		return r.Level > 0
	}})
	slices.SortFunc(ids, compareID)
	return slices.Compact(ids), err
}

func compareID(a, b ID) int { return bytes.Compare(a[:], b[:]) }
