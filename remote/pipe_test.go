package remote

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
)

// TestBufPipe streams random data through the buffered pipe in Writes of
// random sizes (empty, smaller and larger than its buffers), read back in
// other random sizes: the bytes arrive in order and complete, and a
// reader that stops makes the writer fail with its error at once.
func TestBufPipe(t *testing.T) {
	pr, pw := newBufPipe(1000, 3)
	want := sha256.New()
	done := make(chan error, 1)
	go func() {
		rng := rand.New(rand.NewPCG(1, 2))
		for range 300 {
			p := make([]byte, rng.IntN(5000))
			for j := range p {
				p[j] = byte(rng.Uint32())
			}
			want.Write(p)
			if n, err := pw.Write(p); err != nil || n != len(p) {
				done <- errors.Join(err, errors.New("short write"))
				return
			}
		}
		pw.CloseWithError(nil)
		done <- nil
	}()
	got := sha256.New()
	p := make([]byte, 7000)
	rng := rand.New(rand.NewPCG(3, 4))
	for {
		n, err := pr.Read(p[:1+rng.IntN(len(p)-1)])
		got.Write(p[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		t.Fatal("bytes read differ from bytes written")
	}

	// The reader stops while the writer has buffers to spare: the next
	// Write fails with the reader's error, not later.
	pr, pw = newBufPipe(10, 4)
	stop := errors.New("chunking stopped")
	pr.CloseWithError(stop)
	for i := range 20 {
		if _, err := pw.Write(make([]byte, 15)); !errors.Is(err, stop) {
			t.Fatalf("Write %d after the reader stopped: %v", i, err)
		}
	}
	// The writer's error reaches the reader after the data.
	pr, pw = newBufPipe(10, 4)
	pw.Write([]byte("abc"))
	pw.CloseWithError(errors.New("bad extent"))
	b, err := io.ReadAll(pr)
	if string(b) != "abc" || err == nil || err.Error() != "bad extent" {
		t.Errorf("reader got %q, %v", b, err)
	}
}
