package chunkplan

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"testing"
	"testing/iotest"

	"github.com/restic/chunker"
)

// smallParams gives many chunks on a few MiB of input.
var smallParams = Params{Polynomial: DefaultPolynomial, MinSize: 4 << 10, MaxSize: 64 << 10, AverageBits: 14}

func randomBytes(seed uint64, n int) []byte {
	var s [32]byte
	s[0] = byte(seed)
	s[1] = byte(seed >> 8)
	b := make([]byte, n)
	rand.NewChaCha8(s).Read(b)
	return b
}

// testInput mixes random data with a zero run (which cuts at MinSize).
func testInput() []byte {
	var in []byte
	in = append(in, randomBytes(1, 3<<20)...)
	in = append(in, make([]byte, 1<<20)...)
	in = append(in, randomBytes(2, 1<<20+12345)...)
	return in
}

type chunkRec struct {
	ref  ChunkRef
	data []byte
}

func collect(t *testing.T, r io.Reader, p Params) []chunkRec {
	t.Helper()
	var out []chunkRec
	err := Chunk(r, p, func(c ChunkRef, data []byte) error {
		out = append(out, chunkRec{c, bytes.Clone(data)})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestDefaultPolynomial(t *testing.T) {
	if DefaultPolynomial.Deg() != 53 || !DefaultPolynomial.Irreducible() {
		t.Fatalf("DefaultPolynomial %v: degree %d, irreducible %v", DefaultPolynomial, DefaultPolynomial.Deg(), DefaultPolynomial.Irreducible())
	}
	if err := DefaultParams().Validate(); err != nil {
		t.Fatal(err)
	}
	if err := smallParams.Validate(); err != nil {
		t.Fatal(err)
	}
}

// TestDefaultParams pins vmasync's own parameters: stores record them, so
// a change must be deliberate (and needs a new measurement, see
// docs/benchmarks.md).
func TestDefaultParams(t *testing.T) {
	want := Params{Polynomial: 0x204368e8ba3e47, MinSize: 4096, MaxSize: 65536, AverageBits: 12}
	if got := DefaultParams(); got != want {
		t.Fatalf("DefaultParams() = %+v, want %+v", got, want)
	}
	if DefaultParams() == ResticParams(DefaultPolynomial) {
		t.Fatal("DefaultParams equals ResticParams")
	}
	// The mean chunk of random data is about MinSize + 2^AverageBits.
	in := randomBytes(11, 8<<20)
	var n, total int
	if err := Split(bytes.NewReader(in), DefaultParams(), func(data []byte) error {
		n++
		total += len(data)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if mean := total / n; total != len(in) || mean < 7<<10 || mean > 9<<10 {
		t.Fatalf("%d chunks of %d bytes, mean %d, want about 8 KiB", n, total, total/max(n, 1))
	}
}

func TestValidate(t *testing.T) {
	bad := []Params{
		{},
		{Polynomial: DefaultPolynomial + 2, MinSize: 4096, MaxSize: 8192, AverageBits: 12}, // degree 53, reducible
		{Polynomial: 0x11d, MinSize: 4096, MaxSize: 8192, AverageBits: 12},                 // degree 8
		{Polynomial: 1<<60 | 0x3DA3358B4DC173, MinSize: 4096, MaxSize: 8192, AverageBits: 12},
		{Polynomial: DefaultPolynomial, MinSize: 32, MaxSize: 8192, AverageBits: 12},
		{Polynomial: DefaultPolynomial, MinSize: 8192, MaxSize: 4096, AverageBits: 12},
		{Polynomial: DefaultPolynomial, MinSize: 4096, MaxSize: 128 << 20, AverageBits: 12},
		{Polynomial: DefaultPolynomial, MinSize: 4096, MaxSize: 8192, AverageBits: 0},
		{Polynomial: DefaultPolynomial, MinSize: 4096, MaxSize: 8192, AverageBits: 31},
	}
	for i, p := range bad {
		if err := p.Validate(); !errors.Is(err, ErrInvalidParams) {
			t.Errorf("case %d %+v: Validate = %v, want ErrInvalidParams", i, p, err)
		}
		if err := Chunk(bytes.NewReader(nil), p, func(ChunkRef, []byte) error { return nil }); !errors.Is(err, ErrInvalidParams) {
			t.Errorf("case %d: Chunk = %v, want ErrInvalidParams", i, err)
		}
	}
}

func TestChunkDeterministicAndBounded(t *testing.T) {
	in := testInput()
	p := smallParams
	a := collect(t, bytes.NewReader(in), p)
	if len(a) < 50 {
		t.Fatalf("only %d chunks", len(a))
	}
	var off int
	zeroMin := 0
	for i, c := range a {
		n := int(c.ref.Length)
		if n != len(c.data) {
			t.Fatalf("chunk %d: length %d, data %d", i, n, len(c.data))
		}
		if n > int(p.MaxSize) || n == 0 || (i < len(a)-1 && n < int(p.MinSize)) {
			t.Fatalf("chunk %d: length %d outside [%d,%d]", i, n, p.MinSize, p.MaxSize)
		}
		if !bytes.Equal(c.data, in[off:off+n]) {
			t.Fatalf("chunk %d: data differs from input at %d", i, off)
		}
		if c.ref.Hash != sha256.Sum256(in[off:off+n]) {
			t.Fatalf("chunk %d: wrong hash", i)
		}
		if n == int(p.MinSize) && bytes.Equal(c.data, make([]byte, n)) {
			zeroMin++
		}
		off += n
	}
	if off != len(in) {
		t.Fatalf("chunk lengths sum to %d, input %d", off, len(in))
	}
	if zeroMin < 200 {
		t.Errorf("zero run gave %d MinSize zero chunks, want ~256", zeroMin)
	}

	// Same input, same chunks, however the reader delivers the bytes.
	for name, r := range map[string]io.Reader{
		"again":   bytes.NewReader(in),
		"onebyte": iotest.OneByteReader(bytes.NewReader(in[:1<<20])),
		"half":    iotest.HalfReader(bytes.NewReader(in)),
	} {
		b := collect(t, r, p)
		want := a
		if name == "onebyte" {
			want = collect(t, bytes.NewReader(in[:1<<20]), p)
		}
		if len(b) != len(want) {
			t.Fatalf("%s: %d chunks, want %d", name, len(b), len(want))
		}
		for i := range b {
			if b[i].ref != want[i].ref {
				t.Fatalf("%s: chunk %d differs", name, i)
			}
		}
	}

	// The pipeline gives exactly the plain chunker's cut points.
	ch := chunker.NewWithBoundaries(bytes.NewReader(in), p.Polynomial, p.MinSize, p.MaxSize)
	ch.SetAverageBits(p.AverageBits)
	buf := make([]byte, p.MaxSize)
	for i := 0; ; i++ {
		c, err := ch.Next(buf)
		if err == io.EOF {
			if i != len(a) {
				t.Fatalf("plain chunker: %d chunks, pipeline %d", i, len(a))
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if i >= len(a) || uint32(c.Length) != a[i].ref.Length {
			t.Fatalf("plain chunker chunk %d (len %d) differs from pipeline", i, c.Length)
		}
	}
}

func TestChunkEmpty(t *testing.T) {
	if got := collect(t, bytes.NewReader(nil), smallParams); len(got) != 0 {
		t.Fatalf("%d chunks for empty input", len(got))
	}
	m, err := Build(bytes.NewReader(nil), smallParams)
	if err != nil {
		t.Fatal(err)
	}
	if m.ArchiveSize != 0 || m.ArchiveSHA256 != sha256.Sum256(nil) || len(m.Chunks) != 0 {
		t.Fatalf("empty manifest: %+v", m)
	}
}

func TestChunkCallbackError(t *testing.T) {
	in := testInput()
	stop := errors.New("stop")
	calls := 0
	err := Chunk(bytes.NewReader(in), smallParams, func(ChunkRef, []byte) error {
		calls++
		if calls == 3 {
			return stop
		}
		return nil
	})
	if err != stop || calls != 3 {
		t.Fatalf("err %v after %d calls, want stop after 3", err, calls)
	}
}

func TestChunkCallbackPanic(t *testing.T) {
	defer func() {
		if r := recover(); r != "boom" {
			t.Fatalf("recovered %v, want boom", r)
		}
	}()
	_ = Chunk(bytes.NewReader(testInput()), smallParams, func(ChunkRef, []byte) error { panic("boom") })
	t.Fatal("Chunk returned after a panic in fn")
}

func TestChunkReadError(t *testing.T) {
	boom := errors.New("disk on fire")
	r := io.MultiReader(bytes.NewReader(randomBytes(3, 300<<10)), iotest.ErrReader(boom))
	calls := 0
	err := Chunk(r, smallParams, func(ChunkRef, []byte) error { calls++; return nil })
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want wrapping %v", err, boom)
	}
	if _, err := Build(iotest.ErrReader(boom), smallParams); !errors.Is(err, boom) {
		t.Fatalf("Build err = %v", err)
	}
}

func TestBuild(t *testing.T) {
	in := testInput()
	m, err := Build(iotest.HalfReader(bytes.NewReader(in)), smallParams)
	if err != nil {
		t.Fatal(err)
	}
	if m.Version != ManifestVersion || m.ArchiveSize != uint64(len(in)) || m.ArchiveSHA256 != sha256.Sum256(in) || m.Params != smallParams {
		t.Fatalf("bad manifest header: version %d size %d params %+v", m.Version, m.ArchiveSize, m.Params)
	}
	recs := collect(t, bytes.NewReader(in), smallParams)
	if len(recs) != len(m.Chunks) {
		t.Fatalf("%d chunks, want %d", len(m.Chunks), len(recs))
	}
	for i := range recs {
		if recs[i].ref != m.Chunks[i] {
			t.Fatalf("chunk %d differs", i)
		}
	}
}

func BenchmarkChunk(b *testing.B) {
	in := randomBytes(9, 64<<20)
	p := DefaultParams()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		n := 0
		if err := Chunk(bytes.NewReader(in), p, func(c ChunkRef, _ []byte) error { n += int(c.Length); return nil }); err != nil {
			b.Fatal(err)
		}
		if n != len(in) {
			b.Fatalf("chunked %d of %d bytes", n, len(in))
		}
	}
}

// TestSplitReusesBuffers: the batch buffers and chunkers a Split leaves
// are used by the next ones (sync.Pool). Splits at once, with both
// parameter sets, some stopped early by their callback, each give the
// chunks a fresh chunker gives: nothing of one stream or one set of
// boundaries leaks into another.
func TestSplitReusesBuffers(t *testing.T) {
	t.Parallel()
	params := []Params{DefaultParams(), ResticParams(DefaultPolynomial)}
	inputs := [][]byte{randomBytes(3, 2<<20+333), randomBytes(4, 300<<10), randomBytes(5, 5<<20)}
	want := map[[2]int][][32]byte{}
	for pi, p := range params {
		for ii, in := range inputs {
			ch := chunker.NewWithBoundaries(bytes.NewReader(in), p.Polynomial, p.MinSize, p.MaxSize)
			ch.SetAverageBits(p.AverageBits)
			buf := make([]byte, p.MaxSize)
			for {
				c, err := ch.Next(buf)
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				want[[2]int{pi, ii}] = append(want[[2]int{pi, ii}], sha256.Sum256(c.Data))
			}
		}
	}
	errs := make(chan error, 4)
	for g := range 4 {
		go func() {
			for round := range 6 {
				pi, ii := (g+round)%2, (g+2*round)%3
				var got [][32]byte
				stop := errors.New("stop")
				err := Split(bytes.NewReader(inputs[ii]), params[pi], func(d []byte) error {
					got = append(got, sha256.Sum256(d))
					if round == 2 && len(got) == 1 {
						return stop
					}
					return nil
				})
				w := want[[2]int{pi, ii}]
				if round == 2 {
					if err != stop || len(got) != 1 {
						errs <- fmt.Errorf("stopped Split: %v after %d chunks", err, len(got))
						return
					}
					w = w[:1]
				} else if err != nil {
					errs <- err
					return
				}
				if !slices.Equal(got, w) {
					errs <- fmt.Errorf("set %d, input %d: %d chunks differ from a fresh chunker's %d", pi, ii, len(got), len(w))
					return
				}
			}
			errs <- nil
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
