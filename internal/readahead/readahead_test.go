package readahead

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"testing/iotest"
)

func TestReadsEverything(t *testing.T) {
	data := make([]byte, 3<<20+12345)
	for i := range data {
		data[i] = byte(rand.Uint32())
	}
	for _, size := range []int{1000, 64 << 10, 1 << 20, 8 << 20} {
		ra := NewReader(iotest.HalfReader(bytes.NewReader(data)), size, 3)
		got, err := io.ReadAll(ra)
		ra.Close()
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("size %d: %v, %d of %d bytes", size, err, len(got), len(data))
		}
	}
}

func TestPassesErrorAfterData(t *testing.T) {
	boom := errors.New("boom")
	r := io.MultiReader(bytes.NewReader([]byte("hello")), iotest.ErrReader(boom))
	ra := NewReader(r, 1<<10, 2)
	defer ra.Close()
	got, err := io.ReadAll(ra)
	if string(got) != "hello" || !errors.Is(err, boom) {
		t.Fatalf("%q %v", got, err)
	}
}

func TestCloseEarly(t *testing.T) {
	ra := NewReader(bytes.NewReader(make([]byte, 10<<20)), 1<<20, 2)
	buf := make([]byte, 100)
	ra.Read(buf)
	ra.Close() // must not hang or leak a blocked goroutine forever
}
