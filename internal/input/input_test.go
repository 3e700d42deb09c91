package input

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/vmasync/vmasync/internal/decompress"
)

// data returns n bytes that zstd compresses about 4:1.
func data(n int) []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, n)
	for i := range b {
		if i%4 == 0 {
			b[i] = byte(rng.Uint32())
		} else {
			b[i] = 'x'
		}
	}
	return b
}

func zstdBytes(b []byte) []byte {
	enc, _ := zstd.NewWriter(nil)
	return enc.EncodeAll(b, nil)
}

// TestPositionIsCompressed: Pos and Size are in bytes of the stored
// file, so Pos/Size is a fraction of the work even for compressed input,
// and reaches 1 only near the end of the decompressed bytes.
func TestPositionIsCompressed(t *testing.T) {
	t.Parallel()
	plain := data(8 << 20)
	z := zstdBytes(plain)
	p := filepath.Join(t.TempDir(), "a.vma.zst")
	os.WriteFile(p, z, 0o644)
	in, err := Open(context.Background(), p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if in.Format != decompress.Zstd || in.Size() != int64(len(z)) || in.File() != nil {
		t.Fatalf("format %s size %d file %v", in.Format, in.Size(), in.File())
	}
	if in.Source() != io.Reader(in) {
		t.Fatal("Source of compressed input is not the decompressed stream")
	}
	var got bytes.Buffer
	buf := make([]byte, 64<<10)
	for {
		n, err := in.Read(buf)
		got.Write(buf[:n])
		pr := in.Progress(int64(got.Len()))
		if pr.Pos > pr.Size {
			t.Fatalf("position %d past size %d", pr.Pos, pr.Size)
		}
		if pr.Pos == pr.Size && got.Len() < len(plain)*3/4 {
			t.Fatalf("100%% at %d of %d decompressed bytes", got.Len(), len(plain))
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got.Bytes(), plain) || in.Pos() != in.Size() {
		t.Fatalf("read %d bytes, pos %d of %d", got.Len(), in.Pos(), in.Size())
	}
}

// TestPlainFile: a plain file is handed out as a File for positioned
// reads, counted in Pos; once read as a stream, Source is the stream.
func TestPlainFile(t *testing.T) {
	t.Parallel()
	plain := data(1 << 20)
	p := filepath.Join(t.TempDir(), "a.vma")
	os.WriteFile(p, plain, 0o644)
	in, err := Open(context.Background(), p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	f, ok := in.Source().(*File)
	if !ok || in.Format != decompress.Plain || in.Size() != int64(len(plain)) {
		t.Fatalf("source %T, format %s", in.Source(), in.Format)
	}
	buf := make([]byte, 1000)
	f.ReadAt(buf, 5000)
	if !bytes.Equal(buf, plain[5000:6000]) || in.Pos() != 1000 {
		t.Fatalf("ReadAt: pos %d", in.Pos())
	}
	got, err := io.ReadAll(in)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("ReadAll: %d bytes, %v", len(got), err)
	}
	if in.Source() != io.Reader(in) || in.Pos() != in.Size() {
		t.Fatalf("after Read: source %T, pos %d", in.Source(), in.Pos())
	}
}

func TestStdin(t *testing.T) {
	t.Parallel()
	plain := data(3 << 20)
	in, err := Open(context.Background(), "-", Options{Stdin: bytes.NewReader(zstdBytes(plain))})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	got, err := io.ReadAll(in)
	if err != nil || !bytes.Equal(got, plain) || in.Format != decompress.Zstd || in.Size() != 0 || in.File() != nil {
		t.Fatalf("%d bytes, %v, %s, size %d", len(got), err, in.Format, in.Size())
	}
	if DisplayName("-") != "stdin" || DisplayName("a") != "a" {
		t.Fatal("DisplayName")
	}
}

// TestCancelBlockedStdin: a read of a pipe that blocks returns at once
// when the context is done, with its cause.
func TestCancelBlockedStdin(t *testing.T) {
	t.Parallel()
	pr, pw := io.Pipe()
	defer pw.Close()
	go pw.Write(make([]byte, 100)) // enough to detect the format, then silence
	ctx, cancel := context.WithCancelCause(context.Background())
	in, err := Open(ctx, "-", Options{Stdin: pr})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	boom := errors.New("interrupted")
	time.AfterFunc(50*time.Millisecond, func() { cancel(boom) })
	_, err = io.ReadAll(in)
	if !errors.Is(err, boom) {
		t.Fatalf("got %v", err)
	}
}

func TestMissingFile(t *testing.T) {
	t.Parallel()
	_, err := Open(context.Background(), filepath.Join(t.TempDir(), "nope"), Options{})
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("got %v", err)
	}
}

// TestFormatFromContent: the compression comes from the bytes, never from
// the name (every file here is named .vma.gz), and a broken header fails
// at Open with the format's name.
func TestFormatFromContent(t *testing.T) {
	t.Parallel()
	plain := data(300 << 10)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(plain)
	zw.Close()
	for _, c := range []struct {
		stored []byte
		format decompress.Format
	}{{plain, decompress.Plain}, {zstdBytes(plain), decompress.Zstd}, {gz.Bytes(), decompress.Gzip}} {
		p := filepath.Join(t.TempDir(), "vzdump-qemu-100-2026_01_01-00_00_00.vma.gz")
		os.WriteFile(p, c.stored, 0o644)
		in, err := Open(context.Background(), p, Options{})
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(in)
		in.Close()
		if in.Format != c.format || err != nil || !bytes.Equal(got, plain) {
			t.Errorf("%s: format %s, %d bytes, %v", c.format, in.Format, len(got), err)
		}
	}
	p := filepath.Join(t.TempDir(), "bad.vma")
	os.WriteFile(p, []byte{0x1F, 0x8B, 0x00, 0x00, 0, 0, 0, 0, 0, 0}, 0o644)
	if _, err := Open(context.Background(), p, Options{}); err == nil || !strings.Contains(err.Error(), "gzip: ") {
		t.Errorf("bad gzip header: %v", err)
	}
}
