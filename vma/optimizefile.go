package vma

import (
	"context"
	"errors"
	"io"

	"github.com/vmasync/vmasync/internal/decompress"
)

// OptimizeFileOptions tunes OptimizeFile.
//
// Deprecated: see OptimizeFile.
type OptimizeFileOptions struct {
	OptimizeOptions
	// Force is accepted and ignored (OptimizeFile never works in place).
	Force bool
	// Stdout receives the output.
	Stdout io.Writer
}

// OptimizeFileResult reports what OptimizeFile did.
//
// Deprecated: see OptimizeFile.
type OptimizeFileResult struct {
	*OptimizeResult
	// Output is "-".
	Output string
	// InputFormat is the compression the input was stored with.
	InputFormat decompress.Format
}

// OptimizeFile optimizes the archive at src (plain or compressed) to
// opt.Stdout; dst must be "-".
//
// Deprecated: file work is internal/vmafile's (vmafile.Optimize with an
// input from internal/input). This remnant serves remote's tests until
// they call that; it and its import of internal/decompress then go.
func OptimizeFile(src, dst string, opt OptimizeFileOptions) (*OptimizeFileResult, error) {
	if dst != "-" || opt.Stdout == nil {
		return nil, errors.New("vma: OptimizeFile writes only to Stdout (dst \"-\"); use internal/vmafile")
	}
	in, err := decompress.Open(src)
	if err != nil {
		return nil, err
	}
	defer in.Close()
	var r io.Reader = in
	if in.File != nil {
		r = in.File
	}
	res, err := Optimize(context.Background(), opt.Stdout, r, opt.OptimizeOptions)
	if err != nil {
		return nil, err
	}
	return &OptimizeFileResult{OptimizeResult: res, Output: "-", InputFormat: in.Format}, nil
}
