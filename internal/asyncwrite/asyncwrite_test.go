package asyncwrite

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
)

// TestOrderAndContent writes pieces of random sizes, smaller and larger
// than a buffer, and gets the same bytes in the same order.
func TestOrderAndContent(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	src := make([]byte, 3<<20)
	for i := range src {
		src[i] = byte(rng.Uint32())
	}
	var out bytes.Buffer
	w := NewWriter(&out, 64<<10, 3)
	for p := src; len(p) > 0; {
		k := min(len(p), rng.IntN(200<<10))
		if n, err := w.Write(p[:k]); n != k || err != nil {
			t.Fatalf("Write: %d, %v", n, err)
		}
		p = p[k:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), src) {
		t.Fatalf("wrote %d bytes, not the %d given", out.Len(), len(src))
	}
	if _, err := w.Write([]byte{1}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write after Close: %v", err)
	}
}

type failAfter struct {
	n   int
	err error
}

func (f *failAfter) Write(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, f.err
	}
	f.n--
	return len(p), nil
}

// TestErrorReported: the underlying writer's error comes back from a
// later Write or, at the latest, from Close.
func TestErrorReported(t *testing.T) {
	boom := errors.New("disk full")
	w := NewWriter(&failAfter{n: 2, err: boom}, 1024, 2)
	buf := make([]byte, 1000)
	var werr error
	for range 100 {
		if _, werr = w.Write(buf); werr != nil {
			break
		}
	}
	cerr := w.Close()
	if !errors.Is(cerr, boom) {
		t.Fatalf("Close: %v, want %v", cerr, boom)
	}
	if werr != nil && !errors.Is(werr, boom) {
		t.Fatalf("Write: %v", werr)
	}
}
