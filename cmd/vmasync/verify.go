package main

import (
	"fmt"
	"time"

	"github.com/urfave/cli/v2"
	"github.com/vmasync/vmasync/internal/input"
	"github.com/vmasync/vmasync/vma"
)

func verifyCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:        "verify",
		Usage:       "check archives completely, including that no cluster is missing",
		UsageText:   "vmasync verify [-v] [--proxmox] FILE...",
		ArgsUsage:   "FILE...",
		Description: help("verify"),
		Flags: []cli.Flag{
			verboseFlag("print the header, progress lines and a zero-data summary"),
			&cli.BoolFlag{Name: "proxmox", Usage: "make only the checks of Proxmox's vma verify (no completeness check)"},
		},
		Action: func(cCtx *cli.Context) error {
			o, err := globalOpts(cCtx)
			if err != nil {
				return err
			}
			files, err := checkArgs(cCtx, 1, -1)
			if err != nil {
				return err
			}
			verbose, proxmox := o.verbose, cCtx.Bool("proxmox")
			stdinUsed := false
			for _, f := range files {
				if f == "-" {
					if stdinUsed {
						return usageError("verify", "stdin (-) can be given only once")
					}
					stdinUsed = true
				}
			}
			failed := false
			for _, f := range files {
				err := verifyOne(e, o, f, verbose, proxmox)
				if e.ctx.Err() != nil {
					return e.ctx.Err()
				}
				if err != nil {
					fmt.Fprintln(e.stderr, "vmasync: "+oneLine(cleanMsg(err)))
					failed = true
				}
			}
			if failed {
				return reportedError{}
			}
			return nil
		},
	}
}

func verifyOne(e *env, o opts, path string, verbose, proxmox bool) error {
	name := displayName(path)
	var vl *verboseLog
	if verbose {
		vl = &verboseLog{e: e, start: time.Now()}
		o.progress = "never" // the progress lines replace the \r display
	}
	var hooks scanHooks
	if vl != nil {
		hooks = scanHooks{
			opened: func(in *input.Input) { vl.in = in },
			header: func(h *vma.Header) { vl.hdr = h },
			extent: vl.extent,
		}
	}
	info, _, err := scanFile(e, o, path, proxmox, hooks)
	if err != nil {
		return err
	}
	if vl != nil {
		vl.printHeader(&info.Header)
		vl.summary(info)
		if proxmox {
			for _, d := range info.Devices {
				if d.FirstMissing >= 0 {
					fmt.Fprintf(e.stdout, "note: cluster %d of %s is missing (the archive is incomplete); `vma verify` does not check this, `vmasync verify` without --proxmox does\n", d.FirstMissing, d.Name)
				}
			}
		}
	}
	if !o.quiet {
		if proxmox {
			fmt.Fprintf(e.stdout, "%s: ok (Proxmox's checks only; completeness not checked)\n", name)
		} else {
			fmt.Fprintf(e.stdout, "%s: ok\n", name)
		}
	}
	return nil
}

// verboseLog prints `vma verify -v`-like output.
type verboseLog struct {
	e           *env
	start       time.Time
	hdr         *vma.Header // once read; printed after the first extent
	in          *input.Input
	headerDone  bool
	lastPercent int
	lastBytes   int64
}

// extent is called after each extent with the archive bytes read.
func (v *verboseLog) extent(off int64) {
	if v.hdr != nil {
		v.printHeader(v.hdr)
	}
	secs := int64(time.Since(v.start).Seconds())
	if v.in != nil && v.in.Size() > 0 {
		pct := int(100 * v.in.Pos() / v.in.Size())
		if pct != v.lastPercent {
			v.lastPercent = pct
			fmt.Fprintf(v.e.stderr, "progress %d%% (read %d bytes, duration %d sec)\n", pct, off, secs)
		}
		return
	}
	// Unknown size (a pipe): a line per GiB read.
	if off-v.lastBytes >= 1<<30 {
		v.lastBytes = off
		fmt.Fprintf(v.e.stderr, "progress (read %d bytes, duration %d sec)\n", off, secs)
	}
}

// printHeader prints what `vma list` prints.
func (v *verboseLog) printHeader(h *vma.Header) {
	if v.headerDone {
		return
	}
	v.headerDone = true
	w := v.e.stdout
	for _, c := range h.Configs {
		fmt.Fprintf(w, "CFG: size: %d name: %s\n", len(c.Data), c.Name)
	}
	for _, d := range h.Devices {
		if d.IsVMState() {
			fmt.Fprintf(w, "VMSTATE: dev_id=%d memory: %d\n", d.ID, d.Size)
		} else {
			fmt.Fprintf(w, "DEV: dev_id=%d size: %d devname: %s\n", d.ID, d.Size, d.Name)
		}
	}
	fmt.Fprintf(w, "CTIME: %s\n", listCTime(h.CTime))
}

// summary prints the zero-data summary as vma verify -v does: "total bytes
// read" counts present clusters at 64 KiB each, "sparse bytes" the
// all-zero clusters (mask 0), and the reduction line the zero 4 KiB blocks
// left out of the other clusters, as a share of those clusters' bytes.
func (v *verboseLog) summary(info *vma.Info) {
	w := v.e.stdout
	if v.in != nil && v.in.Size() > 0 && v.lastPercent != 100 {
		fmt.Fprintf(v.e.stderr, "progress 100%% (read %d bytes, duration %d sec)\n", info.ArchiveSize, int64(time.Since(v.start).Seconds()))
	}
	var present, zeroClusters, zero uint64
	for _, d := range info.Devices {
		present += d.Present
		zeroClusters += d.ZeroClusters
		zero += d.ZeroBytes
	}
	total := present * vma.ClusterSize
	if total == 0 {
		fmt.Fprintln(w, "vma archive contains no image data")
		return
	}
	sparse := zeroClusters * vma.ClusterSize
	fmt.Fprintf(w, "total bytes read %d, sparse bytes %d (%.3g%%)\n", total, sparse, 100*float64(sparse)/float64(total))
	if data := total - sparse; data > 0 {
		partial := zero - min(zero, sparse)
		fmt.Fprintf(w, "space reduction due to 4K zero blocks %.3g%%\n", 100*float64(partial)/float64(data))
	}
}
