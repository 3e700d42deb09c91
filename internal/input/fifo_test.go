//go:build unix

package input

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestCancelBlockedFIFO: a named pipe given as a path is read through
// the pump too, so a blocked read ends when the context is done.
func TestCancelBlockedFIFO(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Skip(err)
	}
	go func() {
		w, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			return
		}
		w.Write(make([]byte, 100)) // then silence, the pipe held open
		time.Sleep(2 * time.Second)
		w.Close()
	}()
	ctx, cancel := context.WithCancelCause(context.Background())
	in, err := Open(ctx, p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	boom := errors.New("interrupted")
	time.AfterFunc(50*time.Millisecond, func() { cancel(boom) })
	start := time.Now()
	if _, err = io.ReadAll(in); !errors.Is(err, boom) || time.Since(start) > time.Second {
		t.Fatalf("got %v after %v", err, time.Since(start))
	}
}
