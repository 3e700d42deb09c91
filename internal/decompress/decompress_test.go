package decompress

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// tool returns the path of a compressor CLI used to make fixtures. A missing
// tool is a failure, not a skip: CI installs them.
func tool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found on PATH (%v): run `apt-get install %s`", name, err, name)
	}
	return p
}

// run runs name with args, stdin from data, and returns its stdout.
func run(t *testing.T, data []byte, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(tool(t, name), args...)
	cmd.Stdin = bytes.NewReader(data)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// genData returns n bytes of deterministic, semi-compressible data.
func genData(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 42))
	words := []string{"proxmox ", "vzdump ", "qemu ", "backup ", "\n", "disk ", "vma "}
	out := make([]byte, 0, n)
	for len(out) < n {
		switch k := rng.IntN(10); {
		case k < 6:
			for range 1 + rng.IntN(64) {
				out = append(out, words[rng.IntN(len(words))]...)
			}
		case k < 8:
			out = append(out, make([]byte, 1+rng.IntN(4096))...)
		default:
			for range 1 + rng.IntN(2048) {
				out = append(out, byte(rng.Uint32()))
			}
		}
	}
	return out[:n]
}

type fixture struct {
	name   string
	format Format
	comp   []byte
}

// fixtures compresses data with the Debian CLIs in the ways vzdump (and
// people) do.
func fixtures(t *testing.T, data []byte) []fixture {
	half := len(data) / 2
	zstdA := run(t, data[:half], "zstd", "-q", "-c")
	zstdB := run(t, data[half:], "zstd", "-q", "-c", "-19")
	gzA := run(t, data[:half], "gzip", "-c")
	gzB := run(t, data[half:], "gzip", "-c", "-9")
	// A zstd skippable frame before the data frames.
	skip := binary.LittleEndian.AppendUint32(nil, 0x184D2A53)
	skip = binary.LittleEndian.AppendUint32(skip, 5)
	skip = append(skip, "vmasy"...)
	return []fixture{
		{"plain", Plain, data},
		{"zstd-rsyncable", Zstd, run(t, data, "zstd", "-q", "--rsyncable", "--threads=1", "-c")},
		{"zstd-T2", Zstd, run(t, data, "zstd", "-q", "-T2", "-c")},
		{"zstd-concatenated", Zstd, append(bytes.Clone(zstdA), zstdB...)},
		{"zstd-skippable", Zstd, append(append(skip, zstdA...), zstdB...)},
		{"gzip-rsyncable", Gzip, run(t, data, "gzip", "--rsyncable", "-c")},
		{"gzip-multimember", Gzip, append(bytes.Clone(gzA), gzB...)},
		{"lzop", Lzop, run(t, data, "lzop", "-c")},
		{"lzop-9-crc32", Lzop, run(t, data, "lzop", "-c", "-9", "--crc32")},
	}
}

// pipeOf returns the read end of a pipe fed with data, like stdin from
// `zstdcat | vmasync`.
func pipeOf(t *testing.T, data []byte) *os.File {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		w.Write(data)
		w.Close()
	}()
	t.Cleanup(func() { r.Close() })
	return r
}

func TestFormats(t *testing.T) {
	data := genData(3<<20+777, 1)
	want := sha256.Sum256(data)
	for _, fx := range fixtures(t, data) {
		t.Run(fx.name, func(t *testing.T) {
			if got := Detect(fx.comp); got != fx.format {
				t.Fatalf("Detect = %q, want %q", got, fx.format)
			}
			rc, format, err := NewReader(pipeOf(t, fx.comp))
			if err != nil {
				t.Fatal(err)
			}
			if format != fx.format {
				t.Errorf("NewReader: format %q, want %q", format, fx.format)
			}
			got, err := io.ReadAll(rc)
			if err != nil {
				t.Fatalf("NewReader: read: %v", err)
			}
			if sha256.Sum256(got) != want {
				t.Fatalf("NewReader: output differs (%d bytes, want %d)", len(got), len(data))
			}
			if err := rc.Close(); err != nil {
				t.Errorf("NewReader: Close: %v", err)
			}
		})
	}
}

func TestEmptyAndShort(t *testing.T) {
	for _, data := range [][]byte{nil, []byte("V"), []byte{0x1F}, []byte{0x28, 0xB5, 0x2F}, []byte("\x89LZO\x00\r\n\x1a")} {
		rc, format, err := NewReader(pipeOf(t, data))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		if format != Plain || err != nil || !bytes.Equal(got, data) {
			t.Errorf("NewReader(%q): format %q read %q %v", data, format, got, err)
		}
	}
}

func TestDetect(t *testing.T) {
	for _, tc := range []struct {
		head []byte
		want Format
	}{
		{nil, Plain},
		{[]byte("VMA\x00"), Plain},
		{[]byte{0x28, 0xB5, 0x2F, 0xFD}, Zstd},
		{[]byte{0x28, 0xB5, 0x2F, 0xFD, 0x04, 0x58}, Zstd},
		{[]byte{0x28, 0xB5, 0x2F}, Plain},
		{[]byte{0x50, 0x2A, 0x4D, 0x18, 0, 0, 0, 0}, Zstd},
		{[]byte{0x5F, 0x2A, 0x4D, 0x18}, Zstd},
		{[]byte{0x60, 0x2A, 0x4D, 0x18}, Plain},
		{[]byte{0x4F, 0x2A, 0x4D, 0x18}, Plain},
		{[]byte{0x1F, 0x8B}, Gzip},
		{[]byte{0x1F, 0x8B, 0x08, 0x00}, Gzip},
		{[]byte{0x1F}, Plain},
		{[]byte("\x89LZO\x00\r\n\x1a\n"), Lzop},
		{[]byte("\x89LZO\x00\r\n\x1a\n\x10\x40"), Lzop},
		{[]byte("\x89LZO\x00\r\n\x1a"), Plain},
		{[]byte("\x89LZO\x00\r\n\x1a\r"), Plain},
	} {
		if got := Detect(tc.head); got != tc.want {
			t.Errorf("Detect(% x) = %q, want %q", tc.head, got, tc.want)
		}
	}
}

// readAll decodes comp via NewReader on a pipe and returns the error.
// Without an error the output must equal want. With one, lzop output must
// be a prefix of want (each block is verified before it is returned);
// zstd and gzip check a CRC only at the end of a frame or member, so they
// may return damaged bytes before reporting the error.
func readAll(t *testing.T, comp, want []byte, verifiedPrefix bool) error {
	t.Helper()
	rc, _, err := NewReader(pipeOf(t, comp))
	if err != nil {
		return err
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil && verifiedPrefix && !bytes.HasPrefix(want, got) {
		t.Errorf("output before error %v is not a prefix of the data", err)
	}
	if err == nil && !bytes.Equal(got, want) {
		t.Errorf("wrong output without an error (%d bytes, want %d)", len(got), len(want))
	}
	return err
}

func TestCorrupt(t *testing.T) {
	data := genData(2<<20, 3)
	for _, tc := range []struct {
		name   string
		format Format
		comp   []byte
	}{
		{"zstd", Zstd, run(t, data, "zstd", "-q", "-c")},
		{"zstd-rsyncable", Zstd, run(t, data, "zstd", "-q", "--rsyncable", "--threads=1", "-c")},
		{"gzip", Gzip, run(t, data, "gzip", "-c")},
		{"lzop", Lzop, run(t, data, "lzop", "-c")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prefix := string(tc.format) + ": "
			// Flipped bytes at several places of the payload.
			for _, frac := range []float64{0.1, 0.5, 0.9} {
				c := bytes.Clone(tc.comp)
				c[int(frac*float64(len(c)))] ^= 0x55
				if err := readAll(t, c, data, tc.format == Lzop); err == nil {
					t.Errorf("flip at %.0f%%: no error", frac*100)
				} else if !strings.Contains(err.Error(), prefix) {
					t.Errorf("flip at %.0f%%: error %q lacks %q", frac*100, err, prefix)
				}
			}
			// Truncation, including inside the trailer.
			for _, cut := range []int{len(tc.comp) / 2, len(tc.comp) - 5, len(tc.comp) - 1} {
				err := readAll(t, tc.comp[:cut], data, tc.format == Lzop)
				if err == nil {
					t.Errorf("truncated to %d: no error", cut)
					continue
				}
				if !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Errorf("truncated to %d: %v does not wrap io.ErrUnexpectedEOF", cut, err)
				}
				if !strings.Contains(err.Error(), prefix) {
					t.Errorf("truncated to %d: error %q lacks %q", cut, err, prefix)
				}
			}
		})
	}
}

// TestZstdWindowLimit checks that a frame asking for a huge window is
// refused instead of reserving the memory.
func TestZstdWindowLimit(t *testing.T) {
	frame := func(windowLog byte) []byte {
		// magic, FHD 0 (no content size, no checksum), window descriptor,
		// then one empty raw last block.
		return []byte{0x28, 0xB5, 0x2F, 0xFD, 0x00, (windowLog - 10) << 3, 0x01, 0x00, 0x00}
	}
	rc, format, err := NewReader(bytes.NewReader(frame(20)))
	if err != nil || format != Zstd {
		t.Fatalf("small window: %v %v", format, err)
	}
	if got, err := io.ReadAll(rc); err != nil || len(got) != 0 {
		t.Errorf("small window: %q %v", got, err)
	}
	rc, _, err = NewReader(bytes.NewReader(frame(31)))
	if err == nil {
		_, err = io.ReadAll(rc)
	}
	if err == nil || !strings.HasPrefix(err.Error(), "zstd: ") {
		t.Errorf("2 GiB window: got %v, want a zstd error", err)
	}
}

// TestHeaderErrors: a magic followed by a broken header fails in
// NewReader, with the format's name.
func TestHeaderErrors(t *testing.T) {
	_, _, err := NewReader(bytes.NewReader([]byte{0x1F, 0x8B, 0x00, 0x00, 0, 0, 0, 0, 0, 0}))
	if err == nil || !strings.Contains(err.Error(), "gzip: ") {
		t.Errorf("bad gzip header: %v", err)
	}
	_, _, err = NewReader(bytes.NewReader([]byte("\x89LZO\x00\r\n\x1a\n\x00\x01")))
	if err == nil || !strings.Contains(err.Error(), "lzop: ") {
		t.Errorf("bad lzop header: %v", err)
	}
}

// TestZstdDecodersReused: decoders of streams read to the end are reused
// (a pool), those that failed or stopped early are not. Streams with
// different windows, damaged and cut short ones among them, read at once
// many times over, each give their own bytes or their own error.
func TestZstdDecodersReused(t *testing.T) {
	t.Parallel()
	a, b := genData(3<<20, 11), genData(700<<10, 12)
	enc := func(data []byte, window int) []byte {
		var out bytes.Buffer
		w, err := zstd.NewWriter(&out, zstd.WithWindowSize(window))
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
		w.Close()
		return out.Bytes()
	}
	za, zb := enc(a, 8<<20), enc(b, 1<<20)
	damaged := bytes.Clone(za)
	damaged[len(damaged)/2] ^= 0x55
	cut := za[:len(za)/2]
	errs := make(chan error, 3)
	for g := range 3 {
		go func() {
			for round := range 8 {
				for i, c := range []struct {
					comp, want []byte // want nil: an error is expected
					stopEarly  bool
				}{{za, a, false}, {damaged, nil, false}, {zb, b, false}, {cut, nil, false}, {za, a, true}} {
					if (g+round+i)%2 == 1 {
						continue
					}
					r, _, err := NewReader(bytes.NewReader(c.comp))
					if err != nil {
						errs <- err
						return
					}
					var got []byte
					if c.stopEarly {
						got = make([]byte, 1000)
						_, err = io.ReadFull(r, got)
						c.want = a[:1000]
					} else {
						got, err = io.ReadAll(r)
					}
					r.Close()
					switch {
					case c.want == nil && err == nil:
						errs <- fmt.Errorf("stream %d: no error", i)
						return
					case c.want != nil && (err != nil || !bytes.Equal(got, c.want)):
						errs <- fmt.Errorf("stream %d: %d bytes, %v", i, len(got), err)
						return
					}
				}
			}
			errs <- nil
		}()
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
