package chunkplan

import (
	"errors"
	"fmt"
	"sync"

	"github.com/restic/chunker"
)

// DefaultPolynomial is the fixed Rabin polynomial vmasync uses when no
// other polynomial (such as a restic repository's) is wanted. It was
// generated once with chunker.RandomPolynomial (degree 53, Irreducible()
// reported true) and is hard-coded so that manifests built on different
// machines cut at the same places and can be compared. Never change it:
// doing so makes every existing manifest incomparable with new ones.
const DefaultPolynomial chunker.Pol = 0x204368e8ba3e47

// Limits enforced by Params.Validate.
const (
	// MinChunkSizeLimit is the smallest allowed Params.MinSize: the
	// chunker's rolling-hash window is 64 bytes.
	MinChunkSizeLimit = 64
	// MaxChunkSizeLimit is the largest allowed Params.MaxSize (64 MiB).
	// Chunk buffers of this size are kept in flight while chunking.
	MaxChunkSizeLimit = 64 << 20
	// MaxAverageBits is the largest allowed Params.AverageBits.
	MaxAverageBits = 30
)

// Params are the content-defined chunking parameters. Two manifests are
// only comparable if they were built with equal Params.
type Params struct {
	// Polynomial is the irreducible degree-53 Rabin polynomial.
	Polynomial chunker.Pol
	// MinSize and MaxSize bound every chunk's length (the last chunk of a
	// stream may be shorter than MinSize).
	MinSize, MaxSize uint
	// AverageBits sets the cut condition: a cut happens where the low
	// AverageBits bits of the rolling hash are zero, i.e. on average every
	// 2^AverageBits bytes after MinSize.
	AverageBits int
}

// ResticParams returns the parameters restic uses for a repository whose
// config holds polynomial pol: MinSize 512 KiB, MaxSize 8 MiB, AverageBits
// 20 (average chunk ≈ 1.5 MiB). With them, chunk boundaries are identical
// to restic's.
func ResticParams(pol chunker.Pol) Params {
	return Params{Polynomial: pol, MinSize: chunker.MinSize, MaxSize: chunker.MaxSize, AverageBits: 20}
}

// Default chunk sizes of vmasync's own manifests and store (see
// DefaultParams).
const (
	DefaultMinSize     = 4 << 10
	DefaultAverageBits = 12
	DefaultMaxSize     = 64 << 10
)

// DefaultParams returns vmasync's own chunking parameters: DefaultPolynomial,
// MinSize 4 KiB, AverageBits 12, MaxSize 64 KiB (mean chunk about 8 KiB).
// They were chosen by measurement (scripts/chunk-study.sh, table in
// docs/benchmarks.md): on optimized day-1/day-2 archive pairs with 0.1 %,
// 1 % and 3 % of the 64 KiB clusters changed at scattered places, day 2's
// new bytes stay within 1.2× the changed clusters' bytes, where restic's
// sizes (ResticParams) store 15 to 50 times as much. The price is about
// 131,000 chunks and 4.7 MB of manifest per GiB of archive.
//
// Manifests and stores built with different parameters share no chunks, so
// these values are recorded with every manifest and store and must not
// change for existing ones.
func DefaultParams() Params {
	return Params{Polynomial: DefaultPolynomial, MinSize: DefaultMinSize, MaxSize: DefaultMaxSize, AverageBits: DefaultAverageBits}
}

// ErrInvalidParams is wrapped by every error Params.Validate returns.
var ErrInvalidParams = errors.New("chunkplan: invalid chunking parameters")

// Validate reports whether p can be used for chunking: the polynomial must
// be irreducible of degree 53, MinChunkSizeLimit <= MinSize <= MaxSize <=
// MaxChunkSizeLimit, and 1 <= AverageBits <= MaxAverageBits.
func (p Params) Validate() error {
	switch {
	case p.Polynomial.Deg() != 53:
		return fmt.Errorf("%w: polynomial %#x has degree %d, want 53", ErrInvalidParams, uint64(p.Polynomial), p.Polynomial.Deg())
	case !irreducible(p.Polynomial):
		return fmt.Errorf("%w: polynomial %#x is not irreducible", ErrInvalidParams, uint64(p.Polynomial))
	case p.MinSize < MinChunkSizeLimit:
		return fmt.Errorf("%w: min size %d below %d", ErrInvalidParams, p.MinSize, MinChunkSizeLimit)
	case p.MaxSize < p.MinSize:
		return fmt.Errorf("%w: max size %d below min size %d", ErrInvalidParams, p.MaxSize, p.MinSize)
	case p.MaxSize > MaxChunkSizeLimit:
		return fmt.Errorf("%w: max size %d above %d", ErrInvalidParams, p.MaxSize, MaxChunkSizeLimit)
	case p.AverageBits < 1 || p.AverageBits > MaxAverageBits:
		return fmt.Errorf("%w: average bits %d outside 1..%d", ErrInvalidParams, p.AverageBits, MaxAverageBits)
	}
	return nil
}

// irreducibleCache remembers up to 64 polynomials found irreducible, since
// Pol.Irreducible takes about a quarter of a millisecond.
var irreducibleCache struct {
	sync.Mutex
	known map[chunker.Pol]struct{}
}

func irreducible(pol chunker.Pol) bool {
	c := &irreducibleCache
	c.Lock()
	_, ok := c.known[pol]
	c.Unlock()
	if ok {
		return true
	}
	if !pol.Irreducible() {
		return false
	}
	c.Lock()
	if c.known == nil {
		c.known = make(map[chunker.Pol]struct{})
	}
	if len(c.known) < 64 {
		c.known[pol] = struct{}{}
	}
	c.Unlock()
	return true
}
