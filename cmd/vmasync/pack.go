package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"
	"github.com/vmasync/vmasync/internal/output"
	"github.com/vmasync/vmasync/internal/vmafile"
	"github.com/vmasync/vmasync/vma"
)

func packCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:        "pack",
		Usage:       "create an uncompressed archive from a directory written by unpack",
		UsageText:   "vmasync pack [-v] [--force] [--uuid UUID] [--ctime UNIX] DIR OUT",
		ArgsUsage:   "DIR OUT",
		Description: help("pack"),
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "uuid", Usage: "archive `UUID` (8-4-4-4-12 hex; default random)"},
			&cli.Int64Flag{Name: "ctime", Usage: "creation time, `UNIX` seconds since the epoch", DefaultText: "now"},
			forceFlag("replace OUT if it exists"),
			verboseFlag("print what was written"),
		},
		Action: func(cCtx *cli.Context) error {
			o, args, err := optsArgs(cCtx, 2, 2)
			if err != nil {
				return err
			}
			verbose := o.verbose
			popt := vmafile.PackOptions{UUID: vma.RandomUUID(), CTime: time.Now().Unix()}
			if s := cCtx.String("uuid"); cCtx.IsSet("uuid") {
				u, err := vma.ParseUUID(s)
				if err != nil {
					return usageError("pack", "--uuid: %v", err)
				}
				if u == (vma.UUID{}) {
					return usageError("pack", "--uuid: the all-zero uuid is not allowed")
				}
				popt.UUID = u
			}
			if cCtx.IsSet("ctime") {
				popt.CTime = cCtx.Int64("ctime")
				if popt.CTime <= 0 {
					return usageError("pack", "--ctime must be a positive number of seconds since the epoch")
				}
			}
			dir, out := args[0], args[1]
			return packDir(e, o, dir, out, popt, cCtx.Bool("force"), verbose)
		},
	}
}

func packDir(e *env, o opts, dir, out string, popt vmafile.PackOptions, force, verbose bool) error {
	outName := out
	if out == "-" {
		outName = "stdout"
	}
	if st, err := os.Stat(dir); err != nil {
		return &fileError{dir, err}
	} else if !st.IsDir() {
		return &fileError{dir, errors.New("not a directory")}
	}
	if out != "-" {
		if err := output.Check(out, output.Options{Force: force}); err != nil {
			return err
		}
		if inside(dir, out) {
			return &fileError{out, fmt.Errorf("must not be inside the directory being packed (%s)", dir)}
		}
	} else if isTerminal(e.stdout) {
		return &fileError{"stdout", errors.New("refusing to write an archive to a terminal")}
	}

	p := newProgress(e, o, "pack "+dir)
	if l, err := vmafile.ReadPackLayout(dir); err == nil {
		var total int64
		for _, path := range l.Images {
			if st, err := os.Stat(path); err == nil {
				total += st.Size()
			}
		}
		p.setTotal(total, nil)
	}
	popt.Progress = p.update

	w, err := output.Create(e.ctx, out, output.Options{Force: force, Sync: true, Stdout: e.stdout})
	if err != nil {
		return err
	}
	defer w.Abort()
	err = vmafile.Pack(dir, w, popt)
	p.done()
	if err != nil {
		if w.WriteErr() != nil && errors.Is(err, w.WriteErr()) {
			return &fileError{outName, err}
		}
		return &fileError{dir, err}
	}
	if err := w.Commit(); err != nil {
		return err
	}
	written := w.Written()
	if verbose {
		w := e.stdout
		if out == "-" {
			w = e.stderr
		}
		fmt.Fprintf(w, "%s: %d bytes (%s), uuid %s, ctime %d (%s)\n", outName, written, humanBytes(uint64(written)),
			popt.UUID, popt.CTime, time.Unix(popt.CTime, 0).UTC().Format(time.RFC3339))
	}
	return nil
}

// inside reports whether path would be created directly inside dir.
func inside(dir, path string) bool {
	d, err1 := filepath.Abs(dir)
	p, err2 := filepath.Abs(path)
	if err1 != nil || err2 != nil {
		return false
	}
	if rd, err := filepath.EvalSymlinks(d); err == nil {
		d = rd
	}
	pd := filepath.Dir(p)
	if rp, err := filepath.EvalSymlinks(pd); err == nil {
		pd = rp
	}
	return pd == d
}
