package chunkplan

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

	"github.com/restic/chunker"
)

// ChunkRef identifies one chunk: the SHA-256 of its bytes and its length.
type ChunkRef struct {
	Hash   [32]byte
	Length uint32
}

// buffersInFlight is how many MaxSize chunk buffers Chunk keeps at most:
// one being filled by the chunker, one queued, one being hashed.
const buffersInFlight = 3

// Chunk splits the stream r into content-defined chunks with parameters p
// and calls fn for every chunk, in stream order, with its ChunkRef and its
// bytes. data is only valid during the call: the buffer is reused.
//
// Chunking runs in a separate goroutine, pipelined with the SHA-256 hashing
// and fn, which run on the calling goroutine. At most three buffers of
// p.MaxSize bytes are in flight. If fn returns an error, chunking stops and
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
func Split(r io.Reader, p Params, fn func(data []byte) error) error {
	if err := p.Validate(); err != nil {
		return err
	}
	if fn == nil {
		return errors.New("chunkplan: Split: nil callback")
	}
	free := make(chan []byte, buffersInFlight)
	for range buffersInFlight {
		free <- nil // allocated on first use
	}
	full := make(chan []byte, buffersInFlight)
	done := make(chan struct{})
	var readErr error // written by the producer before it closes full

	go func() {
		defer close(full)
		ch := chunker.NewWithBoundaries(r, p.Polynomial, p.MinSize, p.MaxSize)
		ch.SetAverageBits(p.AverageBits)
		for {
			var buf []byte
			select {
			case buf = <-free:
			case <-done:
				return
			}
			if buf == nil {
				buf = make([]byte, p.MaxSize)
			}
			c, err := ch.Next(buf)
			if err == io.EOF {
				return
			}
			if err != nil {
				readErr = fmt.Errorf("chunkplan: chunking input: %w", err)
				return
			}
			select {
			case full <- c.Data:
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
	defer func() {
		stop()
		for range full {
		}
	}()

	var cbErr error
	for data := range full {
		if cbErr == nil {
			if cbErr = fn(data); cbErr != nil {
				stop()
			}
		}
		free <- data[:cap(data)] // never blocks: only buffersInFlight buffers exist
	}
	if cbErr != nil {
		return cbErr
	}
	return readErr
}
