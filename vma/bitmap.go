package vma

import "math/bits"

// clusterSet records which clusters of one device have been seen. Memory
// grows with the clusters actually seen, never with the size a header
// claims: a page of 512 bits (64 bytes, 32 MiB of device) is allocated
// where a cluster is seen, so a full 1 TiB device costs about 3 MiB and a
// hostile archive that scatters its clusters at most a page per 8-byte
// blockinfo.
type clusterSet struct {
	pages   map[uint32]*[pageWords]uint64
	lastIdx uint32
	last    *[pageWords]uint64
	count   uint64
}

const (
	pageBits  = 512
	pageWords = pageBits / 64
)

// add marks cluster c and reports whether it was already marked.
func (s *clusterSet) add(c uint32) (dup bool) {
	idx := c / pageBits
	p := s.last
	if p == nil || idx != s.lastIdx {
		if s.pages == nil {
			s.pages = make(map[uint32]*[pageWords]uint64)
		}
		p = s.pages[idx]
		if p == nil {
			p = new([pageWords]uint64)
			s.pages[idx] = p
		}
		s.last, s.lastIdx = p, idx
	}
	w, bit := (c%pageBits)/64, uint64(1)<<(c%64)
	if p[w]&bit != 0 {
		return true
	}
	p[w] |= bit
	s.count++
	return false
}

// has reports whether cluster c is marked.
func (s *clusterSet) has(c uint32) bool {
	p := s.pages[c/pageBits]
	return p != nil && p[(c%pageBits)/64]&(1<<(c%64)) != 0
}

// firstMissing returns the lowest cluster below n that is not marked, or
// -1 if all of 0..n-1 are marked.
func (s *clusterSet) firstMissing(n uint64) int64 {
	if s.count >= n {
		return -1
	}
	for idx := uint32(0); uint64(idx)*pageBits < n; idx++ {
		p := s.pages[idx]
		if p == nil {
			return int64(idx) * pageBits
		}
		for w := range pageWords {
			if p[w] != ^uint64(0) {
				c := uint64(idx)*pageBits + uint64(w)*64 + uint64(bits.TrailingZeros64(^p[w]))
				if c < n {
					return int64(c)
				}
				return -1
			}
		}
	}
	return -1
}
