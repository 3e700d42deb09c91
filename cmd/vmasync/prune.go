package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/vmasync/vmasync/remote"
)

// pruneJSON is prune --json.
type pruneJSON struct {
	DryRun  bool        `json:"dry_run"`
	Rules   string      `json:"rules"`
	Backups []markJSON  `json:"backups"`
	GC      *gcJSONInfo `json:"gc,omitempty"`
}

type markJSON struct {
	VMID   string `json:"vmid"`
	Backup string `json:"backup"`
	Keep   bool   `json:"keep"`
	Reason string `json:"reason"`
}

type gcJSONInfo struct {
	PacksBefore int   `json:"packs_before"`
	PacksAfter  int   `json:"packs_after"`
	BytesBefore int64 `json:"bytes_before"`
	BytesAfter  int64 `json:"bytes_after"`
	Deleted     int   `json:"packs_deleted"`
	Repacked    int   `json:"packs_repacked"`
}

// keepFlags are the keep rules of prune (and push, which skips the dumps
// they would remove).
func keepFlags() []cli.Flag {
	keep := func(name, what string) cli.Flag {
		return &cli.IntFlag{Name: "keep-" + name, Usage: "keep the newest backup of each of the last `N` " + what}
	}
	return []cli.Flag{keep("last", "backups"), keep("hourly", "hours"), keep("daily", "days"), keep("weekly", "ISO weeks"),
		keep("monthly", "months"), keep("yearly", "years")}
}

// keepRules reads the keep flags (and --keep-all where the command has it).
func keepRules(cCtx *cli.Context) (remote.KeepRules, error) {
	rules := remote.KeepRules{Last: cCtx.Int("keep-last"), Hourly: cCtx.Int("keep-hourly"), Daily: cCtx.Int("keep-daily"),
		Weekly: cCtx.Int("keep-weekly"), Monthly: cCtx.Int("keep-monthly"), Yearly: cCtx.Int("keep-yearly"), All: cCtx.Bool("keep-all")}
	for _, n := range []int{rules.Last, rules.Hourly, rules.Daily, rules.Weekly, rules.Monthly, rules.Yearly} {
		if n < 0 {
			return rules, usageError(cCtx.Command.Name, "keep counts must not be negative")
		}
	}
	return rules, nil
}

func pruneCommand(e *env) *cli.Command {
	return withRemoteFlags(&cli.Command{
		Name:        "prune",
		Usage:       "remove old backups from a remote by Proxmox's keep rules, and free their space",
		UsageText:   "vmasync prune [--keep-last N] [--keep-hourly N] [--keep-daily N] [--keep-weekly N] [--keep-monthly N] [--keep-yearly N] [--keep-all] [--dry-run] [--json] [--vmid ID]... [rclone options] REMOTE",
		Description: help("prune"),
		Flags: append(keepFlags(),
			&cli.BoolFlag{Name: "keep-all", Usage: "keep every backup (GC still runs)"},
			dryRunFlag("say what would be removed and freed; change nothing"),
			jsonFlag("print the decisions and the GC result as JSON on stdout"),
			vmidFlag("prune only VM `ID` (repeatable)"),
			&cli.Float64Flag{Name: "repack-threshold", Value: 0.5, Usage: "rewrite packs whose unused share is at least `FRACTION` (0 < f <= 1)"},
			verboseFlag("also list the backups that are kept"),
		),
		Action: func(cCtx *cli.Context) error { return pruneAction(e, cCtx) },
	})
}

// pruneAction is vmasync prune: the keep rules, then garbage collection.
func pruneAction(e *env, cCtx *cli.Context) error {
	o, args, err := optsArgs(cCtx, 1, 1)
	if err != nil {
		return err
	}
	rules, err := keepRules(cCtx)
	if err != nil {
		return err
	}
	th := cCtx.Float64("repack-threshold")
	if th <= 0 || th > 1 {
		return usageError("prune", "--repack-threshold must be in (0, 1]")
	}
	dry := cCtx.Bool("dry-run")
	mode := exclusiveLock
	if dry {
		mode = sharedLock
	}
	ctx, r, release, err := openLocked(e, cCtx, o, args[0], mode)
	if err != nil {
		return err
	}
	defer release()
	backups, err := r.Backups(ctx)
	if err != nil {
		return err
	}
	marks := remote.MarkBackups(filterBackups(backups, cCtx.StringSlice("vmid")), rules)
	var gone []remote.Backup
	out := pruneJSON{DryRun: dry, Rules: rules.String(), Backups: []markJSON{}}
	for _, m := range marks {
		out.Backups = append(out.Backups, markJSON{m.Backup.VMID, m.Backup.Name, m.Keep, m.Reason})
		if !m.Keep {
			gone = append(gone, m.Backup)
		}
	}
	asJSON := cCtx.Bool("json")
	if !asJSON && !o.quiet {
		printMarks(e, marks, o.verbose, dry)
	}
	if !dry {
		if err := r.Forget(ctx, gone); err != nil {
			return err
		}
	}
	gcOpt := remote.GCOptions{RepackThreshold: th, DryRun: dry}
	if dry {
		gcOpt.Without = gone // what removing them would free
	}
	res, err := r.GC(ctx, gcOpt)
	if err != nil {
		return err
	}
	out.GC = &gcJSONInfo{res.PacksBefore, res.PacksAfter, res.BytesBefore, res.BytesAfter, res.Deleted, res.Repacked}
	if len(res.Kept) > 0 && !o.quiet {
		fmt.Fprintf(e.stderr, "vmasync: kept %d damaged objects (%s); see 'vmasync check --read-data' and 'vmasync repair'\n", len(res.Kept), strings.Join(res.Kept, ", "))
	}
	// Retention was applied even when GC was skipped; the space is not
	// freed until the damage is dealt with, and the run fails to say so.
	var skipped error
	if res.Skipped != "" {
		skipped = fmt.Errorf("garbage collection skipped: %s", res.Skipped)
	}
	if asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return err
		}
		return skipped
	}
	if !o.quiet {
		printGC(e, res, len(gone), len(marks), rules, dry)
	}
	return skipped
}

// filterBackups keeps the backups of the VM ids (all without ids).
func filterBackups(backups []remote.Backup, ids []string) []remote.Backup {
	if len(ids) == 0 {
		return backups
	}
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	var sel []remote.Backup
	for _, b := range backups {
		if want[b.VMID] {
			sel = append(sel, b)
		}
	}
	return sel
}

// printMarks prints one line per backup removed (and kept, with verbose
// or in a dry run) with its reason.
func printMarks(e *env, marks []remote.Mark, verbose, dry bool) {
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	for _, m := range marks {
		if m.Keep && !verbose && !dry {
			continue
		}
		what := "remove"
		if dry {
			what = "would remove"
		}
		if m.Keep {
			what = "keep"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", m.Backup.Name, what, m.Reason)
	}
	tw.Flush()
}

// printGC prints prune's summary line.
func printGC(e *env, res *remote.GCResult, gone, marks int, rules remote.KeepRules, dry bool) {
	if dry {
		fmt.Fprintf(e.stderr, "%d of %s would be removed (%s); packs %d -> about %d, %s -> about %s (%d deleted, %d rewritten); nothing changed\n",
			gone, count(marks, "backup", "backups"), rules, res.PacksBefore, res.PacksAfter, humanBytes(uint64(res.BytesBefore)), humanBytes(uint64(res.BytesAfter)), res.Deleted, res.Repacked)
	} else {
		fmt.Fprintf(e.stderr, "removed %d of %s (%s); packs %d -> %d, %s -> %s (%d deleted, %d rewritten)\n",
			gone, count(marks, "backup", "backups"), rules, res.PacksBefore, res.PacksAfter, humanBytes(uint64(res.BytesBefore)), humanBytes(uint64(res.BytesAfter)), res.Deleted, res.Repacked)
	}
	if gone > 0 && (res.BytesBefore-res.BytesAfter)*20 < res.BytesBefore {
		// "132.3 MiB -> about 132.3 MiB" looks like a failure.
		fmt.Fprintln(e.stderr, "note: the removed backups share almost all their data with the kept ones (deduplicated chunks), so removing them frees little space")
	}
}

func unlockCommand(e *env) *cli.Command {
	return withRemoteFlags(&cli.Command{
		Name:        "unlock",
		Usage:       "remove stale locks from a remote",
		UsageText:   "vmasync unlock [--all] [rclone options] REMOTE",
		Description: help("unlock"),
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "all", Usage: "remove all locks, also live ones"},
		},
		Action: func(cCtx *cli.Context) error {
			o, args, err := optsArgs(cCtx, 1, 1)
			if err != nil {
				return err
			}
			ctx, r, err := openRepo(e, cCtx, o, args[0])
			if err != nil {
				return err
			}
			removed, err := r.RemoveLocks(ctx, cCtx.Bool("all"))
			for _, l := range removed {
				if !o.quiet {
					fmt.Fprintf(e.stderr, "removed %s\n", l)
				}
			}
			if err != nil {
				return err
			}
			if len(removed) == 0 && !o.quiet {
				fmt.Fprintln(e.stderr, "no stale locks")
			}
			if !o.quiet {
				leftLocks(ctx, e, r)
			}
			return nil
		},
	})
}
