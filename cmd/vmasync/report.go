package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/restic/chunker"
	"github.com/urfave/cli/v2"
	"github.com/vmasync/vmasync/chunkplan"
	"github.com/vmasync/vmasync/internal/decompress"
	"github.com/vmasync/vmasync/internal/input"
	"github.com/vmasync/vmasync/internal/output"
	"github.com/vmasync/vmasync/internal/report"
	"github.com/vmasync/vmasync/internal/vzdump"
)

// parsePolynomial reads a restic chunker polynomial in hex ("0x" optional),
// as `restic cat config` prints it.
func parsePolynomial(cmd, s string) (chunker.Pol, error) {
	v, err := strconv.ParseUint(strings.TrimPrefix(strings.ToLower(s), "0x"), 16, 64)
	if err != nil {
		return 0, usageError(cmd, "--polynomial: %q is not a hexadecimal number", s)
	}
	pol := chunker.Pol(v)
	if pol.Deg() != 53 || !pol.Irreducible() {
		return 0, usageError(cmd, "--polynomial: %#x is not an irreducible polynomial of degree 53 (take chunker_polynomial from 'restic cat config')", v)
	}
	return pol, nil
}

// reportInput opens an archive or a saved manifest (detected by its magic).
func reportInput(e *env, path string) (report.Input, func(), error) {
	in := report.Input{Name: path}
	f, err := os.Open(path)
	if err != nil {
		return in, nil, &fileError{path, err}
	}
	head := make([]byte, len(chunkplan.ManifestMagic))
	n, _ := io.ReadFull(f, head)
	if string(head[:n]) == chunkplan.ManifestMagic {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			f.Close()
			return in, nil, &fileError{path, err}
		}
		m, err := chunkplan.ReadManifest(&ctxReader{ctx: e.ctx, r: f})
		f.Close()
		if err != nil {
			return in, nil, &fileError{path, errors.New(strings.TrimPrefix(err.Error(), "chunkplan: "))}
		}
		in.Manifest = m
		return in, func() {}, nil
	}
	f.Close()
	ai, err := openInput(e, path)
	if err != nil {
		return in, nil, &fileError{path, err}
	}
	in.R = ai
	closeAll := func() { ai.Close() }
	if ai.Format == decompress.Plain {
		if st, err := os.Stat(path); err == nil && st.Mode().IsRegular() {
			if f2, err := os.Open(path); err == nil {
				in.File = f2
				closeAll = func() { f2.Close(); ai.Close() }
			}
		}
	}
	return in, closeAll, nil
}

// reportCommand is "vmasync report" (reportAction).
func reportCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:        "report",
		Usage:       "show how much of backup B is new against backup A, per device, and what it costs",
		UsageText:   "vmasync report [--json] [--polynomial HEX] [--price-per-tb PRICE] [--upload-mbps MBPS] [--window BYTES] A B",
		ArgsUsage:   "A B",
		Description: help("report"),
		Flags: []cli.Flag{
			jsonFlag("print a JSON object (see docs/cli.md)"),
			&cli.StringFlag{Name: "polynomial", Usage: "restic repository chunker polynomial, `HEX`"},
			&cli.Float64Flag{Name: "price-per-tb", Usage: "storage or transfer `PRICE` per TB (10^12 bytes) for a cost estimate"},
			&cli.Float64Flag{Name: "upload-mbps", Usage: "upload speed in `MBPS` (10^6 bit/s) for a time estimate"},
			&cli.Int64Flag{Name: "window", Value: 32 << 20, Usage: "memory for early clusters of a streamed archive, in `BYTES`"},
		},
		Action: func(cCtx *cli.Context) error { return reportAction(e, cCtx) },
	}
}

// reportAction checks the flags and arguments, compares B with A and
// prints the result as text or JSON.
func reportAction(e *env, cCtx *cli.Context) error {
	o, args, err := optsArgs(cCtx, 2, 2)
	if err != nil {
		return err
	}
	if args[0] == "-" || args[1] == "-" {
		return usageError("report", "A and B must be files, not stdin")
	}
	ropt := report.Options{Window: cCtx.Int64("window"), Context: e.ctx}
	if ropt.Window <= 0 {
		return usageError("report", "--window must be positive")
	}
	if s := cCtx.String("polynomial"); s != "" {
		if ropt.ResticPolynomial, err = parsePolynomial("report", s); err != nil {
			return err
		}
	}
	price, mbps := cCtx.Float64("price-per-tb"), cCtx.Float64("upload-mbps")
	if price < 0 || mbps < 0 || (cCtx.IsSet("upload-mbps") && mbps == 0) {
		return usageError("report", "--price-per-tb must not be negative and --upload-mbps must be positive")
	}
	a, closeA, err := reportInput(e, args[0])
	if err != nil {
		return err
	}
	defer closeA()
	b, closeB, err := reportInput(e, args[1])
	if err != nil {
		return err
	}
	defer closeB()
	p := newProgress(e, o, "report")
	ropt.Progress = p.update
	res, err := report.Run(a, b, ropt)
	p.done()
	if err != nil {
		var ie *report.InputError
		if errors.As(err, &ie) {
			if e.ctx.Err() != nil {
				return err // reported as interrupted
			}
			return &fileError{ie.Name, errors.New(strings.TrimPrefix(cleanMsg(ie.Err), "chunkplan: "))}
		}
		return errors.New(strings.TrimPrefix(cleanMsg(err), "chunkplan: "))
	}
	est := estimates{PricePerTB: price, UploadMbps: mbps}
	if cCtx.Bool("json") {
		return writeReportJSON(e.stdout, res, est)
	}
	writeReportText(e.stdout, res, est)
	return nil
}

// estimates are the optional cost and time figures.
type estimates struct {
	PricePerTB float64
	UploadMbps float64
}

var columnKeys = [...]string{"restic_original", "restic_optimized", "vmasync"}
var columnTitles = [...]string{"restic original", "restic optimized", "vmasync"}

func paramsText(p chunkplan.Params) string {
	return fmt.Sprintf("min %s, average bits %d, max %s, polynomial %#x", humanBytes(uint64(p.MinSize)), p.AverageBits, humanBytes(uint64(p.MaxSize)), uint64(p.Polynomial))
}

func sideText(s report.Side) string {
	if s.Manifest {
		return fmt.Sprintf("%s (manifest; optimized archive %s, %d devices)", s.Name, humanBytes(uint64(s.OptimizedBytes)), len(s.Devices))
	}
	return fmt.Sprintf("%s (archive %s, optimized %s, %d devices)", s.Name, humanBytes(uint64(s.ArchiveBytes)), humanBytes(uint64(s.OptimizedBytes)), len(s.Devices))
}

// writeReportText prints the report's text: the inputs and chunk sizes,
// then a table of one row per device and rows of totals per column.
func writeReportText(w io.Writer, r *report.Result, est estimates) {
	fmt.Fprintf(w, "A: %s\nB: %s\n", sideText(r.A), sideText(r.B))
	pol := "vmasync's polynomial (approximate; --polynomial makes it exact)"
	if r.PolynomialGiven {
		pol = "the given polynomial"
	}
	fmt.Fprintf(w, "restic chunks: %s: %s\n", paramsText(chunkplan.ResticParams(r.ResticPolynomial)), pol)
	fmt.Fprintf(w, "vmasync chunks: %s\n\n", paramsText(r.Params))

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "device\tsize\tchanged clusters\tfloor\trestic original\trestic optimized\tvmasync\t")
	for _, d := range r.Devices {
		writeDeviceRow(tw, d)
	}
	changed, floor := na, na
	if r.Floor != nil {
		changed = fmt.Sprintf("%d of %d", r.Floor.ChangedClusters, r.Floor.Clusters)
		floor = humanBytes(r.Floor.ChangedBytes)
	}
	cols := r.Columns[:]
	writeColumnRow(tw, fmt.Sprintf("total\t\t%s\t%s\t", changed, floor), cols, func(c *report.ColumnResult) string {
		return humanBytes(c.NewBytes)
	})
	writeColumnRow(tw, "new / size of B\t\t\t\t", cols, func(c *report.ColumnResult) string {
		return fmt.Sprintf("%.1f %%", 100*ratio(c.NewBytes, c.TotalBytes))
	})
	if r.Floor != nil && r.Floor.ChangedBytes > 0 {
		writeColumnRow(tw, "new / floor\t\t\t\t", cols, func(c *report.ColumnResult) string {
			return fmt.Sprintf("%.2f×", ratio(c.NewBytes, r.Floor.ChangedBytes))
		})
	}
	if est.UploadMbps > 0 {
		writeColumnRow(tw, fmt.Sprintf("upload at %g Mbit/s\t\t\t\t", est.UploadMbps), cols, func(c *report.ColumnResult) string {
			return duration(uploadSeconds(c.NewBytes, est.UploadMbps))
		})
	}
	if est.PricePerTB > 0 {
		writeColumnRow(tw, fmt.Sprintf("cost at %g per TB\t\t\t\t", est.PricePerTB), cols, func(c *report.ColumnResult) string {
			return fmt.Sprintf("%.4f", cost(c.NewBytes, est.PricePerTB))
		})
	}
	tw.Flush()
}

// na is what the report prints for a figure the inputs cannot answer.
const na = "n/a"

// writeDeviceRow prints a device's row: its size, changed clusters and
// floor, and its new bytes in each column.
func writeDeviceRow(tw io.Writer, d report.DeviceResult) {
	size, changed, floor := "", na, na
	if d.Name != "header" {
		size = humanBytes(d.Size)
	} else {
		changed, floor = "", ""
	}
	if d.Floor != nil {
		changed = fmt.Sprintf("%d of %d", d.Floor.ChangedClusters, d.Floor.Clusters)
		floor = humanBytes(d.Floor.ChangedBytes)
	}
	name := d.Name
	if !d.InA {
		name += " (new)"
	}
	fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t", name, size, changed, floor)
	for _, n := range d.New {
		v := na
		if n != nil {
			v = humanBytes(*n)
		}
		fmt.Fprintf(tw, "%s\t", v)
	}
	fmt.Fprintln(tw)
}

// writeColumnRow prints lead, then one cell per column (n/a where the
// column is not answered).
func writeColumnRow(tw io.Writer, lead string, cols []*report.ColumnResult, cell func(*report.ColumnResult) string) {
	fmt.Fprint(tw, lead)
	for _, c := range cols {
		v := na
		if c != nil {
			v = cell(c)
		}
		fmt.Fprintf(tw, "%s\t", v)
	}
	fmt.Fprintln(tw)
}

func ratio(a, b uint64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func uploadSeconds(n uint64, mbps float64) float64 { return float64(n) * 8 / (mbps * 1e6) }
func cost(n uint64, perTB float64) float64         { return float64(n) / 1e12 * perTB }

func duration(s float64) string {
	switch {
	case s < 60:
		return fmt.Sprintf("%.1f s", s)
	case s < 3600:
		return fmt.Sprintf("%.1f min", s/60)
	}
	return fmt.Sprintf("%.1f h", s/3600)
}

// JSON shapes (documented in docs/cli.md).
type jsonParams struct {
	Polynomial  string `json:"polynomial"`
	MinSize     uint   `json:"min_size"`
	AverageBits int    `json:"average_bits"`
	MaxSize     uint   `json:"max_size"`
}

func toJSONParams(p chunkplan.Params) jsonParams {
	return jsonParams{fmt.Sprintf("%#x", uint64(p.Polynomial)), p.MinSize, p.AverageBits, p.MaxSize}
}

type jsonColumn struct {
	*report.ColumnResult
	Params        jsonParams `json:"params"`
	UploadSeconds *float64   `json:"upload_seconds,omitempty"`
	Cost          *float64   `json:"cost,omitempty"`
}

type jsonDevice struct {
	Name  string             `json:"name"`
	Size  uint64             `json:"size"`
	InA   bool               `json:"in_a"`
	Floor *report.Floor      `json:"floor"`
	New   map[string]*uint64 `json:"new_bytes"`
}

type jsonReport struct {
	A               report.Side            `json:"a"`
	B               report.Side            `json:"b"`
	PolynomialGiven bool                   `json:"restic_polynomial_given"`
	Floor           *report.Floor          `json:"floor"`
	Columns         map[string]*jsonColumn `json:"columns"`
	Devices         []jsonDevice           `json:"devices"`
	PricePerTB      *float64               `json:"price_per_tb,omitempty"`
	UploadMbps      *float64               `json:"upload_mbps,omitempty"`
}

func writeReportJSON(w io.Writer, r *report.Result, est estimates) error {
	out := jsonReport{A: r.A, B: r.B, PolynomialGiven: r.PolynomialGiven, Floor: r.Floor, Columns: map[string]*jsonColumn{}, Devices: []jsonDevice{}}
	if est.PricePerTB > 0 {
		out.PricePerTB = &est.PricePerTB
	}
	if est.UploadMbps > 0 {
		out.UploadMbps = &est.UploadMbps
	}
	for i, c := range r.Columns {
		if c == nil {
			out.Columns[columnKeys[i]] = nil
			continue
		}
		jc := &jsonColumn{ColumnResult: c, Params: toJSONParams(c.Params)}
		if est.UploadMbps > 0 {
			v := uploadSeconds(c.NewBytes, est.UploadMbps)
			jc.UploadSeconds = &v
		}
		if est.PricePerTB > 0 {
			v := cost(c.NewBytes, est.PricePerTB)
			jc.Cost = &v
		}
		out.Columns[columnKeys[i]] = jc
	}
	for _, d := range r.Devices {
		jd := jsonDevice{Name: d.Name, Size: d.Size, InA: d.InA, Floor: d.Floor, New: map[string]*uint64{}}
		for i := range d.New {
			jd.New[columnKeys[i]] = d.New[i]
		}
		out.Devices = append(out.Devices, jd)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func manifestCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:        "manifest",
		Usage:       "save the chunk manifest of an archive for later reports",
		UsageText:   "vmasync manifest [-v] [--polynomial HEX] [--force] [--window BYTES] -o OUT FILE",
		ArgsUsage:   "FILE",
		Description: help("manifest"),
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write the manifest to `OUT` (required)"},
			&cli.StringFlag{Name: "polynomial", Usage: "use restic's chunk sizes with this restic repository polynomial, `HEX`"},
			&cli.Int64Flag{Name: "window", Value: 32 << 20, Usage: "memory for early clusters of a streamed archive, in `BYTES`"},
			forceFlag("replace OUT if it exists"),
			verboseFlag("print what was written"),
		},
		Action: func(cCtx *cli.Context) error {
			o, args, err := optsArgs(cCtx, 1, 1)
			if err != nil {
				return err
			}
			if cCtx.Int64("window") <= 0 {
				return usageError("manifest", "--window must be positive")
			}
			params := chunkplan.DefaultParams()
			if s := cCtx.String("polynomial"); s != "" {
				pol, err := parsePolynomial("manifest", s)
				if err != nil {
					return err
				}
				params = chunkplan.ResticParams(pol)
			}
			src, out := args[0], cCtx.String("output")
			if out == "" {
				return usageError("manifest", "-o OUT is required")
			}
			if out == "-" {
				return usageError("manifest", "-o needs a file name")
			}
			if err := output.Check(out, output.Options{Force: cCtx.Bool("force")}); err != nil {
				return err
			}
			return saveManifest(e, o, src, out, params, cCtx.Int64("window"), cCtx.Bool("force"))
		},
	}
}

// saveManifest builds the chunk manifest of the archive src and writes it
// to out.
func saveManifest(e *env, o opts, src, out string, params chunkplan.Params, window int64, force bool) error {
	ai, err := openInput(e, src)
	if err != nil {
		return &fileError{displayName(src), err}
	}
	defer ai.Close()
	in := report.Input{Name: filepath.Base(src), R: ai}
	if src == "-" {
		in.Name = "stdin"
	}
	if ai.Format == decompress.Plain && src != "-" {
		if st, err := os.Stat(src); err == nil && st.Mode().IsRegular() {
			if f2, err := os.Open(src); err == nil {
				defer f2.Close()
				in.File = f2
			}
		}
	}
	p := newProgress(e, o, "manifest "+displayName(src))
	progress := ai.Track(p.show)
	if in.File != nil {
		// The optimizer reads the plain file itself, not through
		// ai: its count is the position in the file.
		progress = func(read int64) { p.show(input.Progress{Read: read, Pos: read, Size: ai.Size()}) }
	}
	m, err := report.BuildManifest(in, params, report.Options{Window: window, Context: e.ctx, Progress: progress})
	p.done()
	if err != nil {
		return &fileError{displayName(src), err}
	}
	if d, ok := vzdump.ParseName(filepath.Base(src)); ok {
		m.VMID = d.VMID
	}
	f, err := output.Create(e.ctx, out, output.Options{Force: force, Sync: true})
	if err != nil {
		return err
	}
	defer f.Abort()
	n, err := m.WriteTo(f)
	if err == nil {
		err = f.Commit()
	}
	if err != nil {
		var oe *output.Error
		if errors.As(err, &oe) {
			return err
		}
		return &fileError{out, err}
	}
	if o.verbose {
		fmt.Fprintf(e.stderr, "%s: %d chunks of %s (%s), %d bytes\n", out, len(m.Chunks), humanBytes(m.ArchiveSize), paramsText(params), n)
	}
	return nil
}
