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
