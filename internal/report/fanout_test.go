package report

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"time"
)

// TestFanoutDeliversToEveryReader: every reader, reading in pieces of its
// own size, gets the whole stream, written with Write in odd pieces or
// with ReadFrom.
func TestFanoutDeliversToEveryReader(t *testing.T) {
	t.Parallel()
	src := make([]byte, 5*fanBlockSize+12345)
	rand.NewChaCha8([32]byte{3}).Read(src)
	for _, how := range []string{"Write", "ReadFrom"} {
		f := newFanout(context.Background(), 3)
		got := make([][]byte, 3)
		done := make(chan error, 3)
		for i := range 3 {
			go func() {
				r := f.reader(i)
				buf := make([]byte, 1000+i*70000)
				for {
					n, err := r.Read(buf)
					got[i] = append(got[i], buf[:n]...)
					if err == io.EOF {
						done <- nil
						return
					}
					if err != nil {
						done <- err
						return
					}
				}
			}()
		}
		if how == "Write" {
			rng := rand.New(rand.NewPCG(4, 4))
			for p := src; len(p) > 0; {
				k := min(len(p), 1+rng.IntN(3*fanBlockSize/2))
				if _, err := f.Write(p[:k]); err != nil {
					t.Fatal(err)
				}
				p = p[k:]
			}
		} else if n, err := f.ReadFrom(bytes.NewReader(src)); err != nil || n != int64(len(src)) {
			t.Fatalf("ReadFrom: %d, %v", n, err)
		}
		f.Close()
		for range 3 {
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}
		for i := range got {
			if !bytes.Equal(got[i], src) {
				t.Errorf("%s: reader %d got %d bytes, not the %d written", how, i, len(got[i]), len(src))
			}
		}
	}
}

// TestFanoutBackPressure: a reader that does not read holds the writer up
// once every block waits for it (the fanout never holds more than
// fanBlocks blocks); cancelling the context frees the writer and the
// readers with its cause. A reader that drains lets the writer go on.
func TestFanoutBackPressure(t *testing.T) {
	t.Parallel()
	cause := errors.New("report stopped")
	ctx, cancel := context.WithCancelCause(context.Background())
	f := newFanout(ctx, 2)
	go io.Copy(io.Discard, f.reader(0)) // reader 1 never reads
	wrote := make(chan error, 1)
	go func() {
		_, err := f.Write(make([]byte, (fanBlocks+1)*fanBlockSize))
		wrote <- err
	}()
	select {
	case err := <-wrote:
		t.Fatalf("Write returned (%v) with a reader holding every block", err)
	case <-time.After(100 * time.Millisecond):
	}
	cancel(cause)
	select {
	case err := <-wrote:
		if !errors.Is(err, cause) {
			t.Fatalf("Write after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Write still blocked after cancel")
	}
	if _, err := f.reader(1).Read(make([]byte, 10)); err != nil && !errors.Is(err, cause) {
		t.Fatalf("Read after cancel: %v", err)
	}

	// A reader whose consumer is done drains the rest.
	f = newFanout(context.Background(), 2)
	go func() {
		r := f.reader(1)
		r.Read(make([]byte, 10))
		r.drain()
	}()
	all := make(chan int, 1)
	go func() {
		n, _ := io.Copy(io.Discard, f.reader(0))
		all <- int(n)
	}()
	src := make([]byte, 3*fanBlocks*fanBlockSize/2)
	rand.NewChaCha8([32]byte{5}).Read(src)
	if _, err := f.Write(src); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if n := <-all; n != len(src) {
		t.Fatalf("reader 0 got %d of %d bytes", n, len(src))
	}
}
