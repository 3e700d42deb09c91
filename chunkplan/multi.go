package chunkplan

import (
	"errors"
	"fmt"
	"io"

	"github.com/restic/chunker"
)

// rabinTables are restic/chunker's lookup tables for one polynomial: out
// removes the byte leaving the 64-byte window, mod reduces after a shift.
type rabinTables struct {
	out, mod [256]uint64
	shift    uint
}

const windowSize = 64

func newRabinTables(pol chunker.Pol) *rabinTables {
	t := &rabinTables{shift: uint(pol.Deg() - 8)}
	for b := range 256 {
		h := chunker.Pol(b).Mod(pol)
		for range windowSize - 1 {
			h = (h << 8).Mod(pol)
		}
		t.out[b] = uint64(h)
	}
	k := uint(pol.Deg())
	for b := range 256 {
		t.mod[b] = uint64(chunker.Pol(uint64(b)<<k).Mod(pol) | chunker.Pol(b)<<k)
	}
	return t
}

// SplitMulti splits the stream r with every parameter set of ps at once
// and calls fn(set, data) for each chunk: set is the index into ps, data
// the chunk's bytes (valid only during the call). Each set's chunks come in
// stream order; how the chunks of different sets interleave is
// unspecified. The cut points are exactly those of Split (and restic's)
// for each set.
//
// All sets must share one polynomial. The fingerprint of a position
// depends only on the 64 bytes ending there, so SplitMulti rolls it over
// every byte once, in four interleaved lanes over four parts of its buffer
// (the rolling hash is bound by the latency of one table lookup per byte,
// and independent lanes overlap those), and keeps the positions where the
// weakest cut condition holds; the cuts of each set are then chosen from
// these. restic/chunker instead rolls once per set and skips the first
// MinSize-64 bytes of each chunk. Chunk bytes are passed straight from the
// read buffer, without a copy. Everything runs on the calling goroutine;
// the buffer holds the largest MaxSize plus 8 MiB.
// Kept as one function: the hot loop of the multi-parameter chunker, as Split.
func SplitMulti(r io.Reader, ps []Params, fn func(set int, data []byte) error) error {
	if len(ps) == 0 {
		return errors.New("chunkplan: SplitMulti: no parameter sets")
	}
	if fn == nil {
		return errors.New("chunkplan: SplitMulti: nil callback")
	}
	var maxMax uint
	minBits := MaxAverageBits + 1
	for _, p := range ps {
		if err := p.Validate(); err != nil {
			return err
		}
		if p.Polynomial != ps[0].Polynomial {
			return fmt.Errorf("%w: SplitMulti needs one polynomial, got %#x and %#x", ErrInvalidParams, uint64(ps[0].Polynomial), uint64(p.Polynomial))
		}
		maxMax = max(maxMax, p.MaxSize)
		minBits = min(minBits, p.AverageBits)
	}
	t := newRabinTables(ps[0].Polynomial)
	minMask := uint64(1)<<minBits - 1

	type set struct {
		start, need, forced int64 // chunk start; first possible cut; forced cut (stream positions)
		mask                uint64
		p                   Params
	}
	sets := make([]set, len(ps))
	for i, p := range ps {
		sets[i] = set{need: int64(p.MinSize) - 1, forced: int64(p.MaxSize) - 1, mask: uint64(1)<<p.AverageBits - 1, p: p}
	}

	const fill = 8 << 20
	buf := make([]byte, int(maxMax)+windowSize+fill)
	var (
		base  int64 // stream position of buf[0]
		n     int   // valid bytes in buf
		done  int   // buf[:done] has been scanned for candidates
		cands []cand
		lanes [4][]cand
	)
	for {
		// Keep the oldest pending chunk and the window before the next
		// byte to scan; read the next part.
		keep := base + int64(done) - windowSize
		for i := range sets {
			keep = min(keep, sets[i].start)
		}
		if off := int(keep - base); off > 0 {
			n = copy(buf, buf[off:n])
			done -= off
			base = keep
		}
		m, err := io.ReadFull(r, buf[n:min(len(buf), n+fill)])
		eof := false
		switch err {
		case nil:
		case io.EOF, io.ErrUnexpectedEOF:
			eof = true
		default:
			return fmt.Errorf("chunkplan: chunking input: %w", err)
		}
		n += m
		cands = t.scan(buf, done, n, base == 0 && done == 0, minMask, cands[:0], &lanes)
		done = n
		end := base + int64(n)
		for k := range sets {
			s := &sets[k]
			emit := func(q int64) error {
				if err := fn(k, buf[s.start-base:q+1-base]); err != nil {
					return err
				}
				s.start = q + 1
				s.need = q + int64(s.p.MinSize)
				s.forced = q + int64(s.p.MaxSize)
				return nil
			}
			for _, c := range cands {
				q := base + int64(c.idx)
				for s.forced < q {
					if err := emit(s.forced); err != nil {
						return err
					}
				}
				if q >= s.need && c.digest&s.mask == 0 {
					if err := emit(q); err != nil {
						return err
					}
				}
			}
			for s.forced < end {
				if err := emit(s.forced); err != nil {
					return err
				}
			}
			if eof && s.start < end {
				if err := fn(k, buf[s.start-base:n]); err != nil {
					return err
				}
				s.start = end
			}
		}
		if eof {
			return nil
		}
	}
}

// cand is a position (buffer index) where the weakest cut condition holds,
// with its fingerprint.
type cand struct {
	idx    int
	digest uint64
}

// scan appends the candidates among buf[lo:hi] to cands: the indexes i
// where the fingerprint of the 64 bytes ending at i has no bit of mask
// set. buf[lo-64:lo] must be valid unless start is set (lo is then the
// start of the stream). lanes is scratch space.
// Kept as one function: the innermost rolling-hash loop, unrolled over four lanes.
func (t *rabinTables) scan(buf []byte, lo, hi int, start bool, mask uint64, cands []cand, lanes *[4][]cand) []cand {
	if hi-lo < 1<<16 {
		return t.scanLane(buf, lo, hi, start && lo == 0, mask, cands)
	}
	var seg [5]int
	for j := range 5 {
		seg[j] = lo + j*(hi-lo)/4
	}
	// Warm up each lane on the 64 bytes before its part, then roll the
	// four lanes in step.
	var d [4]uint64
	var at [4]int
	for j := range 4 {
		lanes[j] = lanes[j][:0]
		s := seg[j]
		if start && j == 0 {
			// The stream starts at lo: roll its first 64 bytes from a zero window.
			e := min(s+windowSize, seg[1])
			var dj uint64
			for i := s; i < e; i++ {
				dj = (dj<<8 | uint64(buf[i])) ^ t.mod[byte(dj>>t.shift)]
				if dj&mask == 0 {
					lanes[0] = append(lanes[0], cand{i, dj})
				}
			}
			d[0], at[0] = dj, e
			continue
		}
		var dj uint64
		for i := s - windowSize; i < s; i++ {
			dj = (dj<<8 | uint64(buf[i])) ^ t.mod[byte(dj>>t.shift)]
		}
		d[j], at[j] = dj, s
	}
	steps := seg[4] - at[3]
	for j := range 3 {
		steps = min(steps, seg[j+1]-at[j])
	}
	out, mod, shift := &t.out, &t.mod, t.shift
	d0, d1, d2, d3 := d[0], d[1], d[2], d[3]
	i0, i1, i2, i3 := at[0], at[1], at[2], at[3]
	b0, b1, b2, b3 := buf[i0-windowSize:i0+steps], buf[i1-windowSize:i1+steps], buf[i2-windowSize:i2+steps], buf[i3-windowSize:i3+steps]
	for k := windowSize; k < steps+windowSize; k++ {
		d0 ^= out[b0[k-windowSize]]
		d1 ^= out[b1[k-windowSize]]
		d2 ^= out[b2[k-windowSize]]
		d3 ^= out[b3[k-windowSize]]
		d0 = (d0<<8 | uint64(b0[k])) ^ mod[byte(d0>>shift)]
		d1 = (d1<<8 | uint64(b1[k])) ^ mod[byte(d1>>shift)]
		d2 = (d2<<8 | uint64(b2[k])) ^ mod[byte(d2>>shift)]
		d3 = (d3<<8 | uint64(b3[k])) ^ mod[byte(d3>>shift)]
		if (d0&mask == 0) || (d1&mask == 0) || (d2&mask == 0) || (d3&mask == 0) {
			off := k - windowSize
			if d0&mask == 0 {
				lanes[0] = append(lanes[0], cand{i0 + off, d0})
			}
			if d1&mask == 0 {
				lanes[1] = append(lanes[1], cand{i1 + off, d1})
			}
			if d2&mask == 0 {
				lanes[2] = append(lanes[2], cand{i2 + off, d2})
			}
			if d3&mask == 0 {
				lanes[3] = append(lanes[3], cand{i3 + off, d3})
			}
		}
	}
	d = [4]uint64{d0, d1, d2, d3}
	for j := range 4 {
		// The rest of each part, one lane at a time.
		dj := d[j]
		for i := at[j] + steps; i < seg[j+1]; i++ {
			dj ^= out[buf[i-windowSize]]
			dj = (dj<<8 | uint64(buf[i])) ^ mod[byte(dj>>shift)]
			if dj&mask == 0 {
				lanes[j] = append(lanes[j], cand{i, dj})
			}
		}
		cands = append(cands, lanes[j]...)
	}
	return cands
}

// scanLane is scan in one lane; at the stream start (start set, lo == 0)
// the first 64 bytes roll from a zero window.
func (t *rabinTables) scanLane(buf []byte, lo, hi int, start bool, mask uint64, cands []cand) []cand {
	var d uint64
	i := lo
	if start {
		for ; i < min(hi, lo+windowSize); i++ {
			d = (d<<8 | uint64(buf[i])) ^ t.mod[byte(d>>t.shift)]
			if d&mask == 0 {
				cands = append(cands, cand{i, d})
			}
		}
	} else {
		for j := lo - windowSize; j < lo; j++ {
			d = (d<<8 | uint64(buf[j])) ^ t.mod[byte(d>>t.shift)]
		}
	}
	for ; i < hi; i++ {
		d ^= t.out[buf[i-windowSize]]
		d = (d<<8 | uint64(buf[i])) ^ t.mod[byte(d>>t.shift)]
		if d&mask == 0 {
			cands = append(cands, cand{i, d})
		}
	}
	return cands
}
