package main

import (
	"context"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/vmasync/vmasync/internal/vzdump"
	"github.com/vmasync/vmasync/remote"
)

func repairCommand(e *env) *cli.Command {
	return withRemoteFlags(&cli.Command{
		Name:        "repair",
		Usage:       "rebuild a remote's index from its packs and set damaged objects aside",
		UsageText:   "vmasync repair [--read-data] [--dry-run] [--dump-dir DUMPDIR] [rclone options] REMOTE",
		Description: help("repair"),
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "read-data", Usage: "download every pack and check every chunk (without it, damage inside a chunk is not seen)"},
			dryRunFlag("say what would be done, change nothing"),
			&cli.PathFlag{Name: "dump-dir", Usage: "the vzdump dump `DIR` to look for dumps that restore lost backups"},
		},
		Action: func(cCtx *cli.Context) error {
			o, args, err := optsArgs(cCtx, 1, 1)
			if err != nil {
				return err
			}
			var dumps []remote.Dump
			if dir := cCtx.Path("dump-dir"); dir != "" {
				if dumps, _, err = vzdump.Find(dir); err != nil {
					return &fileError{dir, err}
				}
			}
			dry := cCtx.Bool("dry-run")
			ctx, r, release, err := openLocked(e, cCtx, o, args[0], exclusiveLock)
			if err != nil {
				return err
			}
			defer release()
			res, err := r.Repair(ctx, remote.RepairOptions{DryRun: dry, ReadData: cCtx.Bool("read-data"), Dumps: dumps})
			if err != nil {
				return err
			}
			what := "set aside"
			if dry {
				what = "would set aside"
			}
			for _, d := range res.SetAside {
				fmt.Fprintf(e.stdout, "%s %s: %v\n", what, d.Object, d.Err)
			}
			unrestorable := 0
			for _, l := range res.Lost {
				lost := fmt.Sprintf("%d of %d chunks are gone", l.Missing, l.Chunks)
				if l.Damaged {
					lost = "its manifest is damaged"
				}
				if l.Tree != "" {
					lost = "its chunk list is damaged: " + l.Tree
				}
				fix := "no local dump of it: it cannot be restored whole"
				if l.Dump != "" {
					fix = "'vmasync push' of " + l.Dump + " stores it again"
				} else {
					unrestorable++
				}
				fmt.Fprintf(e.stdout, "backup %s lost data (%s); %s\n", l.Backup.Name, lost, fix)
			}
			if !o.quiet {
				if dry {
					fmt.Fprintf(e.stderr, "%d readable packs; would set aside %d objects; nothing changed\n", res.Packs, len(res.SetAside))
				} else {
					fmt.Fprintf(e.stderr, "index rebuilt from %d packs (%d index objects written, %d removed); %d objects set aside under %s/, %d chunks of damaged packs salvaged into new packs, %d temporary objects removed\n",
						res.Packs, res.IndexWritten, res.IndexRemoved, len(res.SetAside), remote.DamagedDir, res.Salvaged, res.TempRemoved)
				}
			}
			if unrestorable > 0 {
				return reportedError{}
			}
			return nil
		},
	})
}

// lockMode is the repository lock a remote command takes.
type lockMode int

const (
	noLock lockMode = iota
	sharedLock
	exclusiveLock
)

// openLocked is the preamble of a remote command: REMOTE opened as a
// repository and the lock of mode taken. The command runs under the
// returned context (cancelled when the lock is lost) and calls release
// when done.
func openLocked(e *env, cCtx *cli.Context, o opts, rem string, mode lockMode) (context.Context, *remote.Repository, func(), error) {
	ctx, r, err := openRepo(e, cCtx, o, rem)
	if err != nil {
		return nil, nil, nil, err
	}
	if mode == noLock {
		return ctx, r, func() { r.Close() }, nil
	}
	ctx, unlock, err := lockRepo(ctx, cCtx, r, mode == exclusiveLock)
	if err != nil {
		r.Close()
		return nil, nil, nil, err
	}
	return ctx, r, func() { unlock(); r.Close() }, nil
}
