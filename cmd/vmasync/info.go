package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
	"github.com/vmasync/vmasync/internal/input"
	"github.com/vmasync/vmasync/vma"
)

func infoCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:        "info",
		Usage:       "describe an archive: header, configs, devices, layout, completeness",
		UsageText:   "vmasync info [--json] FILE",
		ArgsUsage:   "FILE",
		Description: help("info"),
		Flags: []cli.Flag{
			jsonFlag("print a JSON object (snake_case keys) instead of text"),
		},
		Action: func(cCtx *cli.Context) error {
			o, args, err := optsArgs(cCtx, 1, 1)
			if err != nil {
				return err
			}
			info, in, err := scanFile(e, o, args[0], true, scanHooks{})
			if err != nil {
				return err
			}
			r := newInfoReport(args[0], in, info)
			if cCtx.Bool("json") {
				enc := json.NewEncoder(e.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(r)
			}
			return r.writeText(e.stdout)
		},
	}
}

// scanned is what scanFile learned about the input besides vma.Info.
type scanned struct {
	compression string
}

// scanHooks are called while scanFile reads an archive.
type scanHooks struct {
	opened func(*input.Input) // with the opened input
	header func(*vma.Header)  // with the header, before any cluster
	extent func(offset int64) // after each extent, with the archive offset
}

// scanFile runs vma.Scan over one input with a progress display.
func scanFile(e *env, o opts, path string, allowIncomplete bool, hooks scanHooks) (*vma.Info, scanned, error) {
	name := displayName(path)
	in, err := openInput(e, path)
	if err != nil {
		return nil, scanned{}, &fileError{name, err}
	}
	defer in.Close()
	if hooks.opened != nil {
		hooks.opened(in)
	}
	sc := scanned{compression: string(in.Format)}
	p := newProgress(e, o, name)
	show := in.Track(p.show)
	info, err := vma.Scan(in, vma.ScanOptions{
		AllowIncomplete: allowIncomplete,
		Header:          hooks.header,
		Progress: func(off int64) {
			show(off)
			if hooks.extent != nil {
				hooks.extent(off)
			}
		},
	})
	p.done()
	if err != nil {
		return info, sc, &fileError{name, err}
	}
	return info, sc, nil
}

// infoReport is the JSON form of `vmasync info` (see docs/cli.md); the text
// form prints the same fields.
type infoReport struct {
	File                 string         `json:"file"`
	Compression          string         `json:"compression"`
	UUID                 string         `json:"uuid"`
	CTime                int64          `json:"ctime"`
	CTimeUTC             string         `json:"ctime_utc"`
	HeaderSize           int64          `json:"header_size"`
	ArchiveSize          int64          `json:"archive_size"`
	Configs              []configReport `json:"configs"`
	Devices              []deviceReport `json:"devices"`
	Extents              int            `json:"extents"`
	MaxClustersPerExtent int            `json:"max_clusters_per_extent"`
	InOrder              bool           `json:"in_order"`
	Optimized            bool           `json:"optimized"`
	Complete             bool           `json:"complete"`
}

type configReport struct {
	Name string `json:"name"`
	Size int    `json:"size"`
}

type deviceReport struct {
	ID                  int     `json:"id"`
	Name                string  `json:"name"`
	Size                uint64  `json:"size"`
	SizeHuman           string  `json:"size_human"`
	VMState             bool    `json:"vmstate"`
	Clusters            uint64  `json:"clusters"`
	PresentClusters     uint64  `json:"present_clusters"`
	StoredBytes         uint64  `json:"stored_bytes"`
	ZeroBytes           uint64  `json:"zero_bytes"`
	ZeroShare           float64 `json:"zero_share"`
	FirstMissingCluster *int64  `json:"first_missing_cluster"`
}

func newInfoReport(path string, sc scanned, info *vma.Info) *infoReport {
	h := &info.Header
	r := &infoReport{
		File:                 path,
		Compression:          sc.compression,
		UUID:                 h.UUID.String(),
		CTime:                h.CTime,
		CTimeUTC:             h.Time().UTC().Format(time.RFC3339),
		HeaderSize:           h.Size,
		ArchiveSize:          info.ArchiveSize,
		Configs:              []configReport{},
		Devices:              []deviceReport{},
		Extents:              info.Extents,
		MaxClustersPerExtent: info.MaxClustersPerExtent,
		InOrder:              info.InOrder,
		Optimized:            info.Optimized,
		Complete:             info.Complete,
	}
	for _, c := range h.Configs {
		r.Configs = append(r.Configs, configReport{Name: c.Name, Size: len(c.Data)})
	}
	for _, d := range info.Devices {
		dr := deviceReport{
			ID:              d.ID,
			Name:            d.Name,
			Size:            d.Size,
			SizeHuman:       humanBytes(d.Size),
			VMState:         d.IsVMState(),
			Clusters:        d.Clusters,
			PresentClusters: d.Present,
			StoredBytes:     d.StoredBytes,
			ZeroBytes:       d.ZeroBytes,
			ZeroShare:       roundShare(d.ZeroShare()),
		}
		if d.FirstMissing >= 0 {
			m := d.FirstMissing
			dr.FirstMissingCluster = &m
		}
		r.Devices = append(r.Devices, dr)
	}
	return r
}

// roundShare keeps 4 decimals so the JSON is stable and readable.
func roundShare(f float64) float64 {
	return float64(int64(f*10000+0.5)) / 10000
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// listCTime is the local ctime(3) form `vma list` prints.
func listCTime(ct int64) string {
	return time.Unix(ct, 0).Local().Format(time.ANSIC)
}

func (r *infoReport) writeText(w io.Writer) error {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 1, ' ', 0)
	comp := r.Compression
	fmt.Fprintf(tw, "file:\t%s (%s)\n", r.File, comp)
	fmt.Fprintf(tw, "uuid:\t%s\n", r.UUID)
	fmt.Fprintf(tw, "ctime:\t%s (%s local)\n", r.CTimeUTC, listCTime(r.CTime))
	fmt.Fprintf(tw, "header size:\t%d bytes\n", r.HeaderSize)
	fmt.Fprintf(tw, "archive size:\t%d bytes (%s, uncompressed)\n", r.ArchiveSize, humanBytes(uint64(r.ArchiveSize)))
	fmt.Fprintf(tw, "extents:\t%d (at most %d clusters per extent)\n", r.Extents, r.MaxClustersPerExtent)
	fmt.Fprintf(tw, "in order:\t%s\n", yesNo(r.InOrder))
	fmt.Fprintf(tw, "optimized:\t%s\n", yesNo(r.Optimized))
	fmt.Fprintf(tw, "complete:\t%s\n", yesNo(r.Complete))
	tw.Flush()

	fmt.Fprintf(&b, "configs: %d\n", len(r.Configs))
	tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for _, c := range r.Configs {
		fmt.Fprintf(tw, "  %s\t%d bytes\n", c.Name, c.Size)
	}
	tw.Flush()

	for _, d := range r.Devices {
		fmt.Fprintf(&b, "device %d: %s\n", d.ID, d.Name)
		tw = tabwriter.NewWriter(&b, 0, 0, 1, ' ', 0)
		fmt.Fprintf(tw, "  size:\t%d bytes (%s)\n", d.Size, d.SizeHuman)
		fmt.Fprintf(tw, "  clusters:\t%d (%d present)\n", d.Clusters, d.PresentClusters)
		fmt.Fprintf(tw, "  stored data:\t%d bytes (%s)\n", d.StoredBytes, humanBytes(d.StoredBytes))
		fmt.Fprintf(tw, "  zero blocks:\t%.1f%% of the present data\n", 100*d.ZeroShare)
		switch {
		case d.VMState:
			fmt.Fprintf(tw, "  first missing:\tnot checked (VM state)\n")
		case d.FirstMissingCluster != nil:
			fmt.Fprintf(tw, "  first missing:\tcluster %d\n", *d.FirstMissingCluster)
		default:
			fmt.Fprintf(tw, "  first missing:\tnone\n")
		}
		tw.Flush()
	}

	for _, d := range r.Devices {
		if d.FirstMissingCluster != nil {
			fmt.Fprintf(&b, "incomplete: first missing cluster %d of %s (%d of %d clusters present)\n",
				*d.FirstMissingCluster, d.Name, d.PresentClusters, d.Clusters)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
