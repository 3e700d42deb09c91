package chunkplan

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
)

// choppyReader returns reads of random small sizes.
type choppyReader struct {
	r   io.Reader
	rng *rand.Rand
}

func (c *choppyReader) Read(p []byte) (int, error) {
	n := 1 + c.rng.IntN(200000)
	if n < len(p) {
		p = p[:n]
	}
	return c.r.Read(p)
}

// multiInput mixes random data, zero runs and repeated text.
func multiInput(seed uint64, n int) []byte {
	b := randomBytes(seed, n)
	if n < 2 {
		return b
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	for range 20 {
		off := rng.IntN(n)
		l := min(n-off, rng.IntN(min(n, 3<<20)))
		if rng.IntN(2) == 0 {
			clear(b[off : off+l])
		} else {
			for i := off; i < off+l; i++ {
				b[i] = "the quick brown fox jumps over "[(i-off)%31]
			}
		}
	}
	return b
}

// TestSplitMultiMatchesSplit checks SplitMulti's cut points against Split
// (restic/chunker) for several parameter sets at once.
func TestSplitMultiMatchesSplit(t *testing.T) {
	t.Parallel()
	pol := DefaultPolynomial
	sets := [][]Params{
		{ResticParams(pol), DefaultParams()},
		{DefaultParams()},
		{ResticParams(pol)},
		{{Polynomial: pol, MinSize: 64, MaxSize: 4096, AverageBits: 8}, {Polynomial: pol, MinSize: 100, MaxSize: 300, AverageBits: 14}, smallParams},
		{{Polynomial: pol, MinSize: 6 << 10, MaxSize: 64 << 10, AverageBits: 11}, {Polynomial: pol, MinSize: 2 << 20, MaxSize: 2 << 20, AverageBits: 20}},
	}
	for si, ps := range sets {
		for _, size := range []int{0, 1, 63, 5000, 20 << 20} {
			t.Run(fmt.Sprintf("set%d/%d", si, size), func(t *testing.T) {
				t.Parallel()
				in := multiInput(uint64(si*100+size), size)
				want := make([][]uint32, len(ps))
				for k, p := range ps {
					if err := Split(bytes.NewReader(in), p, func(d []byte) error {
						want[k] = append(want[k], uint32(len(d)))
						return nil
					}); err != nil {
						t.Fatal(err)
					}
				}
				got := make([][]uint32, len(ps))
				var off = make([]int, len(ps))
				err := SplitMulti(&choppyReader{bytes.NewReader(in), rand.New(rand.NewPCG(7, uint64(size)))}, ps, func(k int, d []byte) error {
					if !bytes.Equal(d, in[off[k]:off[k]+len(d)]) {
						t.Fatalf("set %d: chunk at %d has the wrong bytes", k, off[k])
					}
					off[k] += len(d)
					got[k] = append(got[k], uint32(len(d)))
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				for k := range ps {
					if fmt.Sprint(got[k]) != fmt.Sprint(want[k]) {
						t.Fatalf("set %d (%+v): %d chunks %v…, Split gives %d %v…", k, ps[k], len(got[k]), head(got[k]), len(want[k]), head(want[k]))
					}
				}
			})
		}
	}
}

func head(l []uint32) []uint32 { return l[:min(len(l), 8)] }

func TestSplitMultiErrors(t *testing.T) {
	p2 := DefaultParams()
	p2.Polynomial = 0x3DA3358B4DC173
	if err := SplitMulti(bytes.NewReader(nil), []Params{DefaultParams(), p2}, func(int, []byte) error { return nil }); err == nil {
		t.Fatal("two polynomials accepted")
	}
	stop := fmt.Errorf("stop")
	if err := SplitMulti(bytes.NewReader(randomBytes(1, 1<<20)), []Params{DefaultParams()}, func(int, []byte) error { return stop }); err != stop {
		t.Fatalf("callback error: %v", err)
	}
}

func BenchmarkSplitMulti(b *testing.B) {
	in := randomBytes(9, 64<<20)
	for _, tc := range []struct {
		name string
		ps   []Params
	}{
		{"restic", []Params{ResticParams(DefaultPolynomial)}},
		{"default", []Params{DefaultParams()}},
		{"both", []Params{ResticParams(DefaultPolynomial), DefaultParams()}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(int64(len(in)))
			for b.Loop() {
				if err := SplitMulti(bytes.NewReader(in), tc.ps, func(int, []byte) error { return nil }); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(tc.name+"-split", func(b *testing.B) {
			b.SetBytes(int64(len(in)))
			for b.Loop() {
				for _, p := range tc.ps {
					if err := Split(bytes.NewReader(in), p, func([]byte) error { return nil }); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
