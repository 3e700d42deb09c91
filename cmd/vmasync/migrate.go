package main

import (
	"fmt"
	"strconv"

	"github.com/urfave/cli/v2"

	"github.com/vmasync/vmasync/remote"
)

func migrateCommand(e *env) *cli.Command {
	return withRemoteFlags(&cli.Command{
		Name:        "migrate",
		Usage:       "upgrade a format 2 repository to format 3 (chunk trees) in place",
		UsageText:   "vmasync migrate [rclone options] REMOTE",
		Description: help("migrate", "{format}", strconv.Itoa(remote.FormatVersion)),
		Action: func(cCtx *cli.Context) error {
			o, args, err := optsArgs(cCtx, 1, 1)
			if err != nil {
				return err
			}
			ctx, r, release, err := openLocked(e, cCtx, o, args[0], exclusiveLock)
			if err != nil {
				return err
			}
			defer release()
			from, err := r.Migrate(ctx)
			if err != nil {
				return err
			}
			if from == r.Config.Version {
				fmt.Fprintf(e.stdout, "%s: already format %d; nothing to do\n", args[0], from)
			} else {
				fmt.Fprintf(e.stdout, "%s: migrated from format %d to format %d\n", args[0], from, r.Config.Version)
			}
			return nil
		},
	})
}
