package index

import "encoding/binary"

// bloom is a blocked Bloom filter over chunk hashes: 10 bits a hash
// in blocks of 512 bits (one cache line), the 7 probes of a hash all in
// the block its first 8 bytes choose, so that a lookup that is turned
// away (the common case: a push's flushed runs pile up) costs one cache
// miss a run, not one a probe. About 1 % false positives. The hashes are
// SHA-256, uniform already: the probes are 9-bit fields of bytes 8-15.
type bloom []uint64

const bloomBlock = 8 // uint64 words in a block

func newBloom(n int) bloom {
	blocks := (n*10+511)/512 + 1
	return make(bloom, blocks*bloomBlock)
}

// block returns the words of h's block and the word holding h's probes.
func (b bloom) block(h *ID) ([]uint64, uint64) {
	blocks := uint64(len(b) / bloomBlock)
	i := binary.BigEndian.Uint64(h[0:8]) % blocks * bloomBlock
	return b[i : i+bloomBlock], binary.BigEndian.Uint64(h[8:16])
}

func (b bloom) add(h *ID) {
	blk, w := b.block(h)
	for range 7 {
		bit := w & 511
		blk[bit/64] |= 1 << (bit % 64)
		w >>= 9
	}
}

func (b bloom) mayHave(h *ID) bool {
	if b == nil {
		return true
	}
	blk, w := b.block(h)
	for range 7 {
		bit := w & 511
		if blk[bit/64]&(1<<(bit%64)) == 0 {
			return false
		}
		w >>= 9
	}
	return true
}
