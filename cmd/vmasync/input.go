package main

import (
	"context"
	"io"

	"github.com/vmasync/vmasync/internal/input"
)

// openInput opens the archive path ("-" for the run's stdin) through
// internal/input, the one input path of every command.
func openInput(e *env, path string) (*input.Input, error) {
	return input.Open(e.ctx, path, input.Options{Stdin: e.stdin})
}

// displayName is how an input is named in messages.
func displayName(path string) string { return input.DisplayName(path) }

// ctxReader fails reads once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if c.ctx.Err() != nil {
		return 0, context.Cause(c.ctx)
	}
	return c.r.Read(p)
}
