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
		Name:      "optimize",
		Usage:     "rewrite an archive into a deterministic, deduplication-friendly form",
		UsageText: "vmasync optimize [-v] [--force] [--compress zstd] [--window BYTES] SRC [DST]",
		ArgsUsage: "SRC [DST]",
		Description: "optimize rewrites the archive SRC (it may be compressed; - reads stdin) so that\n" +
			"two backups of the same VM share their bytes: every cluster of device 1 in\n" +
			"ascending order, then device 2, and so on, and the fixed uuid\n" +
			vma.OptimizedUUID.String() + " in the header and every extent. ctime,\n" +
			"configs and devices stay; device ids become 1..n in their order. The output\n" +
			"depends only on the archive's content: the same disks and configs give the same\n" +
			"bytes whatever order vzdump stored the clusters in. The input is verified as it\n" +
			"is read (every check of `vmasync verify`); on any error no output is left.\n\n" +
			"Without DST, SRC is replaced: the output is written to a temporary file beside\n" +
			"it, synced, and renamed over SRC only when complete. An SRC that is already\n" +
			"optimized is left alone unless --force is given. An existing DST file is\n" +
			"replaced only with --force. DST - writes stdout, e.g.\n" +
			"  vmasync optimize dump.vma.zst - | restic backup --stdin --stdin-filename dump.vma\n\n" +
			"A plain SRC file is indexed first and read back with positioned reads. Other\n" +
			"input (stdin, .zst, .gz, .lzo) is reordered as a stream: clusters that arrive\n" +
			"early are held in memory up to --window and spilled to an unlinked temporary\n" +
			"file ($TMPDIR) beyond it.\n\n" +
			"--compress zstd compresses the output. Compressed archives hide their shared\n" +
			"bytes from restic, borg and rdiff; keep the output uncompressed when it goes to\n" +
			"a deduplicating store.",
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
