package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"
	"github.com/vmasync/vmasync/remote"
)

func snapshotsCommand(e *env) *cli.Command {
	return withRemoteFlags(&cli.Command{
		Name:        "snapshots",
		Usage:       "list the backups on a remote by VM and time",
		UsageText:   "vmasync snapshots [--json] [--vmid ID]... [rclone options] REMOTE",
		Description: help("snapshots"),
		Flags: []cli.Flag{
			jsonFlag("print JSON on stdout"),
			vmidFlag("only VM `ID` (repeatable)"),
		},
		Action: func(cCtx *cli.Context) error {
			o, args, err := optsArgs(cCtx, 1, 1)
			if err != nil {
				return err
			}
			ctx, r, release, err := openLocked(e, cCtx, o, args[0], noLock)
			if err != nil {
				return err
			}
			defer release()
			snaps, err := r.Snapshots(ctx, cCtx.StringSlice("vmid"))
			if err != nil {
				return err
			}
			if cCtx.Bool("json") {
				if snaps == nil {
					snaps = []remote.Snapshot{}
				}
				enc := json.NewEncoder(e.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(snaps)
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "VMID\tTIME\tSIZE\tNEW\tDISKS\tFLAGS\tBACKUP")
			for _, s := range snaps {
				var fl []string
				if s.Protected {
					fl = append(fl, "protected")
				}
				if s.Damaged != "" {
					fl = append(fl, "DAMAGED")
					fmt.Fprintf(e.stderr, "vmasync: %s\n", s.Damaged)
				}
				flags := strings.Join(fl, ",")
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", s.VMID, s.Time.Format("2006-01-02 15:04:05"), humanBytes(s.Size), humanBytes(s.NewBytes), s.Disks, flags, s.Name)
			}
			return tw.Flush()
		},
	})
}

// readDataFlag is check's --read-data[=PERCENT]: alone it means 100
// (bare: check then takes "--read-data 50 REMOTE" as 50 percent).
type readDataFlag struct {
	pct  int
	bare bool
}

func (f *readDataFlag) String() string {
	if f == nil || f.pct == 0 {
		return ""
	}
	return strconv.Itoa(f.pct)
}
func (f *readDataFlag) IsBoolFlag() bool { return true }
func (f *readDataFlag) Set(s string) error {
	if s == "true" {
		f.pct, f.bare = 100, true
		return nil
	}
	if s == "false" {
		f.pct, f.bare = 0, false
		return nil
	}
	n, err := strconv.Atoi(strings.TrimSuffix(s, "%"))
	if err != nil || n < 1 || n > 100 {
		return fmt.Errorf("want a percentage from 1 to 100, not %q", s)
	}
	f.pct, f.bare = n, false
	return nil
}

func checkCommand(e *env) *cli.Command {
	return withRemoteFlags(&cli.Command{
		Name:        "check",
		Usage:       "check that every backup on a remote is complete (and, with --read-data, intact)",
		UsageText:   "vmasync check [--read-data[=PERCENT]] [rclone options] REMOTE",
		Description: help("check"),
		Flags: []cli.Flag{
			&cli.GenericFlag{Name: "read-data", Value: &readDataFlag{}, Usage: "download and check the packs: all, or a random `PERCENT` of them (--read-data=10 or --read-data 10)"},
			verboseFlag("list every backup checked with its result on stdout, and what was read"),
		},
		Action: func(cCtx *cli.Context) error {
			o, args, err := optsArgs(cCtx, 1, 2)
			if err != nil {
				return err
			}
			rd := cCtx.Generic("read-data").(*readDataFlag)
			if len(args) == 2 {
				// --read-data PERCENT REMOTE, as the help shows it
				if !rd.bare || rd.Set(args[0]) != nil {
					return usageError("check", "too many arguments; usage: %s", cCtx.Command.UsageText)
				}
				args = args[1:]
			}
			ctx, r, release, err := openLocked(e, cCtx, o, args[0], sharedLock)
			if err != nil {
				return err
			}
			defer release()
			pct := rd.pct
			p := newProgress(e, o, "check "+maskRemote(args[0]))
			p.items = "packs"
			res, err := r.Check(ctx, remote.CheckOptions{ReadData: pct > 0, ReadDataPercent: pct,
				Progress: func(done, total int) { p.setTotal(int64(total), nil); p.update(int64(done)) }})
			p.done()
			if err != nil {
				return err
			}
			for _, pr := range res.Problems {
				fmt.Fprintf(e.stderr, "vmasync: %s\n", pr)
			}
			if o.verbose {
				if err := checkedBackups(ctx, e, r, res); err != nil {
					return err
				}
			}
			if !o.quiet {
				fmt.Fprintf(e.stderr, "%s, %s, %s", count(res.Backups, "backup", "backups"), count(res.Packs, "pack", "packs"), count(res.Chunks, "chunk", "chunks"))
				if pct > 0 {
					fmt.Fprintf(e.stderr, "; read %s (%s)", count(res.PacksRead, "pack", "packs"), humanBytes(uint64(res.BytesRead)))
				}
				if len(res.Problems) == 0 {
					fmt.Fprintln(e.stderr, ": no problems found")
				} else {
					fmt.Fprintf(e.stderr, ": %s\n", count(len(res.Problems), "problem", "problems"))
				}
			}
			if len(res.Problems) > 0 {
				return reportedError{}
			}
			return nil
		},
	})
}

// count is "1 backup", "2 backups".
func count(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
