package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/urfave/cli/v2"
	"github.com/vmasync/vmasync/internal/vmafile"
	"github.com/vmasync/vmasync/vma"
)

func unpackCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:        "unpack",
		Usage:       "extract configs and disk images from an archive into a directory",
		UsageText:   "vmasync unpack [-v] [--device NAME]... FILE DIR",
		ArgsUsage:   "FILE DIR",
		Description: help("unpack"),
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "device", Aliases: []string{"d"}, Usage: "extract only device `NAME` (e.g. drive-scsi0); repeatable"},
			verboseFlag("list the files written with their sizes"),
		},
		Action: func(cCtx *cli.Context) error {
			o, args, err := optsArgs(cCtx, 2, 2)
			if err != nil {
				return err
			}
			verbose := o.verbose
			devices := cCtx.StringSlice("device")
			file, dir := args[0], args[1]
			name := displayName(file)

			in, err := openInput(e, file)
			if err != nil {
				return &fileError{name, err}
			}
			defer in.Close()
			var hdr *vma.Header
			p := newProgress(e, o, name)
			err = vmafile.Unpack(in, dir, vmafile.UnpackOptions{
				Devices:  devices,
				Header:   func(h *vma.Header) { hdr = h },
				Progress: in.Track(p.show),
			})
			p.done()
			if err != nil {
				return &fileError{name, err}
			}
			if verbose {
				listUnpacked(e, dir, hdr, devices)
			}
			return nil
		},
	}
}

// listUnpacked prints the files Unpack wrote (vmafile.Unpack does not return
// them, so they are derived from the archive header as Unpack names them).
func listUnpacked(e *env, dir string, h *vma.Header, devices []string) {
	if h == nil {
		return
	}
	var names []string
	for _, c := range h.Configs {
		names = append(names, c.Name)
	}
	for _, d := range h.Devices {
		if len(devices) > 0 && !slices.Contains(devices, d.Name) {
			continue
		}
		if d.IsVMState() {
			names = append(names, "vmstate.bin")
		} else {
			names = append(names, vma.ImageName(d.Name))
		}
	}
	for _, n := range names {
		p := filepath.Join(dir, n)
		if st, err := os.Stat(p); err == nil {
			fmt.Fprintf(e.stdout, "%s\t%d bytes (%s)\n", p, st.Size(), humanBytes(uint64(st.Size())))
		}
	}
}
