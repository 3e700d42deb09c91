package index

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"hash/crc32"
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"
	"time"
)

// FuzzRunFile: arbitrary bytes as an index cache run either fail to
// open or open and answer lookups and a full read without panicking or
// allocating more than the file's size allows. With reseal set, the
// checksums are recomputed first, so that the fuzzer reaches the checks
// behind them (counts, pack numbers, blob types, order).
func FuzzRunFile(f *testing.F) {
	for _, n := range []int{0, 1, 3, 64, 65, 200} {
		f.Add(sampleRun(f, n), false)
		f.Add(sampleRun(f, n), true)
	}
	f.Fuzz(func(t *testing.T, data []byte, reseal bool) {
		debug.SetTraceback("all")
		watchdog := time.AfterFunc(5*time.Second, func() { panic("slow input") })
		defer watchdog.Stop()
		if reseal {
			data = resealRun(data)
		}
		r, err := parseRun(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		r.ra = bytes.NewReader(data)
		if len(r.first8)*12 > len(data) || len(r.packs)*packInfoLen > len(data) {
			t.Fatalf("tables larger than the file")
		}
		var buf []byte
		var probe ID
		for i := range min(r.blocks, 4) {
			binary.BigEndian.PutUint64(probe[:], r.first8[i])
			var recs []byte
			recs, _, buf, err = r.search(&probe, buf)
			if err == nil && len(recs)%EntrySize != 0 {
				t.Fatal("partial record")
			}
		}
		c := newRunCursor(r, nil)
		var rc rec
		n := int64(0)
		for {
			ok, err := c.next(&rc)
			if err != nil || !ok {
				break
			}
			if int(rc.pack) >= len(r.packs) {
				t.Fatalf("record names pack %d of %d", rc.pack, len(r.packs))
			}
			n++
		}
		if n > r.n {
			t.Fatalf("%d records of %d", n, r.n)
		}
	})
}

// sampleRun returns a valid run file of n records.
func sampleRun(tb testing.TB, n int) []byte {
	dir := tb.TempDir()
	w, err := newRunWriter(dir, 0)
	if err != nil {
		tb.Fatal(err)
	}
	recs := make([]rec, n)
	for i := range recs {
		binary.BigEndian.PutUint64(recs[i].h[:], uint64(i/2)*0x9e3779b97f4a7c15)
		recs[i].pack = uint32(i % 3)
		recs[i].offset = uint32(i)
		recs[i].stored = 7
		recs[i].typ = uint8(i % 2)
	}
	sortRecs(recs)
	for i := range recs {
		w.add(&recs[i])
	}
	r, err := w.finish([]ID{{1}, {2}, {3}}, []string{"index/a.index", "index/b.index"}, false)
	if err != nil {
		tb.Fatal(err)
	}
	r.close()
	b, err := os.ReadFile(r.path)
	if err != nil {
		tb.Fatal(err)
	}
	os.RemoveAll(filepath.Dir(r.path))
	return b
}

// resealRun recomputes a run file's block CRCs and footer checksum where
// its counts add up (else returns data unchanged).
func resealRun(data []byte) []byte {
	if len(data) < len(runMagic)+footerLen {
		return data
	}
	data = bytes.Clone(data)
	foot := data[len(data)-footerLen:]
	n := binary.BigEndian.Uint64(foot)
	np := uint64(binary.BigEndian.Uint32(foot[16:]))
	sb := binary.BigEndian.Uint64(foot[24:])
	body := uint64(len(data) - len(runMagic) - footerLen)
	if n > body/EntrySize || np > body/packInfoLen || sb > body {
		return data
	}
	blocks := (n + BlockRecords - 1) / BlockRecords
	if n*EntrySize+np*packInfoLen+sb+blocks*fenceLen != body {
		return data
	}
	recs := data[len(runMagic) : len(runMagic)+int(n*EntrySize)]
	fence := data[len(runMagic)+int(n*EntrySize+np*packInfoLen+sb) : len(data)-footerLen]
	for b := range int(blocks) {
		blk := recs[b*blockBytes:]
		blk = blk[:min(len(blk), blockBytes)]
		binary.BigEndian.PutUint32(fence[b*fenceLen+8:], crc32.Checksum(blk, castagnoli))
	}
	sum := sha256.New()
	sum.Write(data[len(runMagic)+int(n*EntrySize) : len(data)-footerLen])
	sum.Write(foot[:32])
	copy(foot[32:64], sum.Sum(nil))
	return data
}
