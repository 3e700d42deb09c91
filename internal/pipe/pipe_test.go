package pipe

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
)

func TestOrderAndContent(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	src := make([]byte, 3<<20)
	for i := range src {
		src[i] = byte(rng.Uint32())
	}
	for _, how := range []string{"Read", "WriteTo", "ReadFrom"} {
		pr, pw := New(64<<10, 3)
		go func() {
			if how == "ReadFrom" {
				_, err := pw.ReadFrom(bytes.NewReader(src))
				pw.CloseWithError(err)
				return
			}
			for p := src; len(p) > 0; {
				k := min(len(p), rng.IntN(200<<10))
				pw.Write(p[:k])
				p = p[k:]
			}
			pw.Close()
		}()
		var out bytes.Buffer
		var err error
		if how == "WriteTo" {
			_, err = pr.WriteTo(&out)
		} else {
			_, err = io.Copy(&out, struct{ io.Reader }{pr})
		}
		if err != nil || !bytes.Equal(out.Bytes(), src) {
			t.Fatalf("%s: %d bytes, %v", how, out.Len(), err)
		}
	}
}

// TestErrors: the writer's close error reaches the reader after the data;
// the reader's close error stops a blocked writer and later reads.
func TestErrors(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	pr, pw := New(4, 1)
	go func() {
		pw.Write([]byte("abcdef"))
		pw.CloseWithError(boom)
	}()
	b, err := io.ReadAll(pr)
	if string(b) != "abcdef" || !errors.Is(err, boom) {
		t.Fatalf("%q %v", b, err)
	}

	pr, pw = New(4, 1)
	done := make(chan error)
	go func() {
		_, err := pw.Write(make([]byte, 100)) // blocks: nobody reads
		done <- err
	}()
	stop := errors.New("stop")
	pr.CloseWithError(stop)
	if err := <-done; !errors.Is(err, stop) {
		t.Fatalf("writer: %v", err)
	}
	if _, err := pr.Read(make([]byte, 1)); !errors.Is(err, stop) {
		t.Fatalf("reader: %v", err)
	}
}

// TestBuffersReused: pipes read to their end give their buffers to the
// next pipes of their size. Many pipes at once, each of its own bytes,
// written in pieces and read with Read or WriteTo, deliver exactly what
// was written (a buffer recycled while still in use would mix streams;
// go test -race would also see it).
func TestBuffersReused(t *testing.T) {
	t.Parallel()
	done := make(chan error)
	for g := range 6 {
		go func() {
			rng := rand.New(rand.NewPCG(uint64(g), 9))
			var err error
			for round := 0; round < 20 && err == nil; round++ {
				src := make([]byte, rng.IntN(200<<10))
				for i := range src {
					src[i] = byte(rng.Uint32())
				}
				pr, pw := New(16<<10, 3)
				go func() {
					for p := src; len(p) > 0; {
						k := min(len(p), 1+rng.IntN(40<<10))
						pw.Write(p[:k])
						p = p[k:]
					}
					pw.Close()
				}()
				var out bytes.Buffer
				if round%2 == 0 {
					_, err = pr.WriteTo(&out)
				} else {
					_, err = io.Copy(&out, struct{ io.Reader }{pr})
				}
				if err == nil && !bytes.Equal(out.Bytes(), src) {
					err = errors.New("a stream's bytes differ from what was written")
				}
			}
			done <- err
		}()
	}
	for range 6 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
