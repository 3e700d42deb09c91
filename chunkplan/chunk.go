package chunkplan

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/restic/chunker"
)

// ChunkRef identifies one chunk: the SHA-256 of its bytes and its length.
type ChunkRef struct {
	Hash   [32]byte
	Length uint32
}

// buffersInFlight is how many batch buffers Chunk and Split keep at most:
// one being filled by the chunker, one queued, one being hashed.
const buffersInFlight = 3

// batchBytes is about how many bytes of chunks the chunking goroutine
// hands over at once: passing every chunk (8 KiB on average with
// DefaultParams) through a channel on its own cost more in goroutine
// switches than the hashing it overlaps with.
const batchBytes = 1 << 20

// The batch buffers (1 MiB + MaxSize) and chunkers (a 512 KiB read
// buffer) of a Split that ran to its end are kept for the next: a push
// splits every dump it reads, and for small ones these buffers were most
// of what the push allocated.
var (
	batchBufs sync.Pool // *[]byte
	chunkers  sync.Pool // *chunker.Chunker
)

// batchBuf returns a batch buffer of n bytes, from batchBufs if it holds
// one large enough.
func batchBuf(n int) []byte {
	if b, ok := batchBufs.Get().(*[]byte); ok && cap(*b) >= n {
		return (*b)[:n]
	}
	return make([]byte, n)
}

// newChunker returns a chunker of r with p's boundaries, from chunkers if
// it holds one.
func newChunker(r io.Reader, p Params) *chunker.Chunker {
	ch, ok := chunkers.Get().(*chunker.Chunker)
	if ok {
		ch.ResetWithBoundaries(r, p.Polynomial, p.MinSize, p.MaxSize)
	} else {
		ch = chunker.NewWithBoundaries(r, p.Polynomial, p.MinSize, p.MaxSize)
	}
	ch.SetAverageBits(p.AverageBits)
	return ch
}

// Chunk splits the stream r into content-defined chunks with parameters p
// and calls fn for every chunk, in stream order, with its ChunkRef and its
// bytes. data is only valid during the call: the buffer is reused.
//
// Chunking runs in a separate goroutine, pipelined with the SHA-256 hashing
// and fn, which run on the calling goroutine; chunks are handed over in
// batches of about 1 MiB. At most three batch buffers of 1 MiB + p.MaxSize
// bytes are in flight. If fn returns an error, chunking stops and
// that error is returned; Chunk never returns before the chunking goroutine
// has stopped reading r.
func Chunk(r io.Reader, p Params, fn func(c ChunkRef, data []byte) error) error {
	if fn == nil {
		return errors.New("chunkplan: Chunk: nil callback")
	}
	return Split(r, p, func(data []byte) error {
		return fn(ChunkRef{Hash: sha256.Sum256(data), Length: uint32(len(data))}, data)
	})
}

// Split is Chunk without the hashing: it calls fn with the bytes of every
// chunk, in stream order, for callers that identify chunks otherwise. The
// same pipelining and buffer rules apply.
// Kept as one function: the chunker's hot loop, in one piece so that its state stays in local variables.
func Split(r io.Reader, p Params, fn func(data []byte) error) error {
	if err := p.Validate(); err != nil {
		return err
	}
	if fn == nil {
		return errors.New("chunkplan: Split: nil callback")
	}
	// A batch holds whole chunks back to back in buf; ends[i] is where
	// chunk i ends.
	type batch struct {
		buf  []byte
		ends []int
	}
	free := make(chan *batch, buffersInFlight)
	for range buffersInFlight {
		free <- &batch{} // allocated on first use
	}
	full := make(chan *batch, buffersInFlight)
	done := make(chan struct{})
	var readErr error // written by the producer before it closes full

	go func() {
		defer close(full)
		ch := newChunker(r, p)
		defer func() {
			ch.ResetWithBoundaries(nil, p.Polynomial, p.MinSize, p.MaxSize) // drop r
			chunkers.Put(ch)
		}()
		eof := false
		for !eof {
			var b *batch
			select {
			case b = <-free:
			case <-done:
				return
			}
			if b.buf == nil {
				b.buf = batchBuf(batchBytes + int(p.MaxSize))
			}
			b.ends = b.ends[:0]
			n := 0
			// Next needs room for a whole chunk of MaxSize bytes.
			for n < batchBytes && len(b.buf)-n >= int(p.MaxSize) {
				c, err := ch.Next(b.buf[n:n:len(b.buf)])
				if err == io.EOF {
					eof = true
					break
				}
				if err != nil {
					readErr = fmt.Errorf("chunkplan: chunking input: %w", err)
					eof = true
					break
				}
				n += len(c.Data)
				b.ends = append(b.ends, n)
			}
			if len(b.ends) == 0 {
				return
			}
			select {
			case full <- b:
			case <-done:
				return
			}
		}
	}()

	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			close(done)
		}
	}
	// Also on a panic in fn: stop the producer and wait for it to exit.
	// Then every batch buffer is unused: those that came back go to
	// batchBufs (fn's data is only valid during the call).
	defer func() {
		stop()
		for range full {
		}
		for range buffersInFlight {
			select {
			case b := <-free:
				if b.buf != nil {
					batchBufs.Put(&b.buf)
				}
			default:
			}
		}
	}()

	var cbErr error
	for b := range full {
		start := 0
		for _, end := range b.ends {
			if cbErr != nil {
				break
			}
			if cbErr = fn(b.buf[start:end:end]); cbErr != nil {
				stop()
			}
			start = end
		}
		free <- b // never blocks: only buffersInFlight batches exist
	}
	if cbErr != nil {
		return cbErr
	}
	return readErr
}
