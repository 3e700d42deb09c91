package chunkplan

import (
	"bytes"
	"testing"
)

func ref(id byte, n uint32) ChunkRef {
	var c ChunkRef
	c.Hash[0] = id
	c.Length = n
	return c
}

func TestCompare(t *testing.T) {
	a := &Manifest{Params: smallParams, Chunks: []ChunkRef{ref(1, 100), ref(2, 200), ref(3, 300)}}
	b := &Manifest{Params: smallParams, Chunks: []ChunkRef{ref(1, 100), ref(4, 400), ref(4, 400), ref(2, 200), ref(5, 50), ref(1, 100)}}

	got := Compare(a, b)
	want := Comparison{
		TotalChunks: 6, TotalBytes: 1250,
		SharedChunks: 3, SharedBytes: 400,
		NewChunks: 2, NewBytes: 450,
		NewChunksWithRepeats: 3, NewBytesWithRepeats: 850,
	}
	if got != want {
		t.Fatalf("Compare(a, b) = %+v\nwant %+v", got, want)
	}
	if r := got.NewRatio(); r != 0.36 {
		t.Errorf("NewRatio = %v, want 0.36", r)
	}
	if r := got.SharedRatio(); r != 0.32 {
		t.Errorf("SharedRatio = %v, want 0.32", r)
	}

	// Against an empty store: B's own deduplicated size.
	got = Compare(nil, b)
	want = Comparison{TotalChunks: 6, TotalBytes: 1250, NewChunks: 4, NewBytes: 750, NewChunksWithRepeats: 6, NewBytesWithRepeats: 1250}
	if got != want {
		t.Fatalf("Compare(nil, b) = %+v\nwant %+v", got, want)
	}

	// Reverse direction: A's chunk 3 is the only new one.
	got = Compare(b, a)
	want = Comparison{TotalChunks: 3, TotalBytes: 600, SharedChunks: 2, SharedBytes: 300, NewChunks: 1, NewBytes: 300, NewChunksWithRepeats: 1, NewBytesWithRepeats: 300}
	if got != want {
		t.Fatalf("Compare(b, a) = %+v\nwant %+v", got, want)
	}

	got = Compare(b, b)
	if got.NewBytes != 0 || got.SharedBytes != 1250 || got.ParamsDiffer {
		t.Fatalf("Compare(b, b) = %+v", got)
	}
	c := &Manifest{Params: DefaultParams(), Chunks: b.Chunks}
	if !Compare(a, c).ParamsDiffer {
		t.Fatal("ParamsDiffer not set")
	}
	if got := Compare(a, &Manifest{}); got.TotalBytes != 0 || got.NewRatio() != 0 || got.SharedRatio() != 0 {
		t.Fatalf("empty b: %+v", got)
	}
}

func TestCompareBuilt(t *testing.T) {
	in := testInput()
	a, err := Build(bytesReader(in), smallParams)
	if err != nil {
		t.Fatal(err)
	}
	// Rewrite 8 KiB in the middle: only the chunk(s) around it change.
	mod := append([]byte(nil), in...)
	copy(mod[2<<20:], randomBytes(7, 8<<10))
	b, err := Build(bytesReader(mod), smallParams)
	if err != nil {
		t.Fatal(err)
	}
	c := Compare(a, b)
	if c.TotalBytes != uint64(len(in)) || c.SharedBytes+c.NewBytesWithRepeats != c.TotalBytes {
		t.Fatalf("inconsistent: %+v", c)
	}
	if c.NewBytes < 8<<10 || c.NewBytes > 8<<10+4*uint64(smallParams.MaxSize) {
		t.Fatalf("8 KiB change gave %d new bytes", c.NewBytes)
	}
	t.Logf("8 KiB rewrite: %d new bytes in %d chunks of %d", c.NewBytes, c.NewChunks, c.TotalChunks)
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }
