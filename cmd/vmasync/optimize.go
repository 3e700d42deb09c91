package main

import (
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"
	"github.com/vmasync/vmasync/internal/output"
	"github.com/vmasync/vmasync/internal/vmafile"
	"github.com/vmasync/vmasync/vma"
)

// optimizeCommand is "vmasync optimize" (optimizeAction).
func optimizeCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:        "optimize",
		Usage:       "rewrite an archive into a deterministic, deduplication-friendly form",
		UsageText:   "vmasync optimize [-v] [--force] [--compress zstd] [--window BYTES] SRC [DST]",
		ArgsUsage:   "SRC [DST]",
		Description: help("optimize", "{uuid}", vma.OptimizedUUID.String()),
		Flags: []cli.Flag{
			forceFlag("rewrite SRC even if it is already optimized; replace an existing DST"),
			&cli.StringFlag{Name: "compress", Usage: "compress the output: `ALGO` is zstd (defeats deduplication downstream)"},
			&cli.Int64Flag{Name: "window", Value: 32 << 20, Usage: "memory for early clusters of a stream before spilling, in `BYTES`"},
			verboseFlag("print what was done"),
		},
		Action: func(cCtx *cli.Context) error { return optimizeAction(e, cCtx) },
	}
}

// optimizeAction checks the flags and arguments, optimizes SRC into DST
// (or in place) and says what it did.
func optimizeAction(e *env, cCtx *cli.Context) error {
	o, args, err := optsArgs(cCtx, 1, 2)
	if err != nil {
		return err
	}
	if c := cCtx.String("compress"); c != "" && c != "zstd" {
		return usageError("optimize", "--compress: unknown algorithm %q (only zstd)", c)
	}
	if cCtx.Int64("window") <= 0 {
		return usageError("optimize", "--window must be positive")
	}
	src, dst := args[0], ""
	if len(args) == 2 {
		dst = args[1]
	}
	if src == "-" && dst == "" {
		return usageError("optimize", "reading stdin needs a DST (a file, or - for stdout)")
	}
	if dst == "-" && isTerminal(e.stdout) {
		return &fileError{"stdout", errors.New("refusing to write an archive to a terminal")}
	}
	if dst != "" {
		if err := output.Check(dst, output.Options{Force: cCtx.Bool("force")}); err != nil {
			return err
		}
	}
	in, err := openInput(e, src)
	if err != nil {
		return &fileError{displayName(src), err}
	}
	defer in.Close()
	p := newProgress(e, o, "optimize "+displayName(src))
	res, err := vmafile.Optimize(e.ctx, in, dst, vmafile.OptimizeOptions{
		Window:   cCtx.Int64("window"),
		Force:    cCtx.Bool("force"),
		Compress: cCtx.String("compress"),
		Stdout:   e.stdout,
		Progress: p.show,
	})
	p.done()
	if err != nil {
		var oe *output.Error
		if errors.As(err, &oe) {
			return err // names the output
		}
		return &fileError{displayName(src), err}
	}
	printOptimized(e, o, src, res)
	return nil
}

// printOptimized says what optimize did: that src was left alone, or with
// -v the sizes and the method.
func printOptimized(e *env, o opts, src string, res *vmafile.OptimizeResult) {
	w := e.stderr
	switch {
	case o.quiet:
	case res.Skipped:
		fmt.Fprintf(w, "%s: already optimized, left alone (--force rewrites it)\n", src)
	case o.verbose:
		out := res.Output
		if out == "-" {
			out = "stdout"
		}
		mode := "stream"
		if res.TwoPass {
			mode = "two-pass"
		}
		fmt.Fprintf(w, "%s: %s input, %d bytes -> %s: %d bytes (%s; in order before: %v; spilled %d bytes, peak window %d bytes)\n",
			displayName(src), res.InputFormat, res.InputBytes, out, res.OutputBytes, mode, res.WasInOrder, res.SpilledBytes, res.PeakWindow)
	}
}
