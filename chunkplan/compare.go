package chunkplan

// Comparison describes how much of manifest B a store that already holds
// manifest A's chunks would have to add. All counts are about B.
type Comparison struct {
	// TotalChunks and TotalBytes are B's chunks and bytes (B's size).
	TotalChunks int
	TotalBytes  uint64
	// SharedChunks and SharedBytes count B's chunk occurrences whose hash
	// also occurs in A.
	SharedChunks int
	SharedBytes  uint64
	// NewChunks and NewBytes count the distinct chunks of B whose hash is
	// not in A, each once however often it occurs in B: what a
	// deduplicating store (restic's data_added, before overhead) adds.
	NewChunks int
	NewBytes  uint64
	// NewChunksWithRepeats and NewBytesWithRepeats count every occurrence
	// of a chunk not in A. SharedBytes + NewBytesWithRepeats == TotalBytes.
	NewChunksWithRepeats int
	NewBytesWithRepeats  uint64
	// ParamsDiffer is set when A and B were built with different Params;
	// then almost nothing is shared and the numbers mean little.
	ParamsDiffer bool
}

// NewRatio returns NewBytes / TotalBytes (0 for an empty B).
func (c Comparison) NewRatio() float64 {
	if c.TotalBytes == 0 {
		return 0
	}
	return float64(c.NewBytes) / float64(c.TotalBytes)
}

// SharedRatio returns SharedBytes / TotalBytes (0 for an empty B).
func (c Comparison) SharedRatio() float64 {
	if c.TotalBytes == 0 {
		return 0
	}
	return float64(c.SharedBytes) / float64(c.TotalBytes)
}

// Compare reports which chunks of b are new relative to a. Chunks are
// identified by their SHA-256 alone. a may be nil (an empty store), which
// gives b's deduplicated size as NewBytes.
func Compare(a, b *Manifest) Comparison {
	var cmp Comparison
	if b == nil {
		return cmp
	}
	var inA map[[32]byte]struct{}
	if a != nil {
		cmp.ParamsDiffer = a.Params != b.Params
		inA = make(map[[32]byte]struct{}, len(a.Chunks))
		for _, c := range a.Chunks {
			inA[c.Hash] = struct{}{}
		}
	}
	seenNew := make(map[[32]byte]struct{})
	for _, c := range b.Chunks {
		cmp.TotalChunks++
		cmp.TotalBytes += uint64(c.Length)
		if _, ok := inA[c.Hash]; ok {
			cmp.SharedChunks++
			cmp.SharedBytes += uint64(c.Length)
			continue
		}
		cmp.NewChunksWithRepeats++
		cmp.NewBytesWithRepeats += uint64(c.Length)
		if _, ok := seenNew[c.Hash]; !ok {
			seenNew[c.Hash] = struct{}{}
			cmp.NewChunks++
			cmp.NewBytes += uint64(c.Length)
		}
	}
	return cmp
}
