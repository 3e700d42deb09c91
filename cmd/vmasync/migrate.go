package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/vmasync/vmasync/remote"
)

func migrateCommand(e *env) *cli.Command {
	return withRemoteFlags(&cli.Command{
		Name:      "migrate",
		Usage:     "upgrade a format 2 repository to format 3 (chunk trees) in place",
		UsageText: "vmasync migrate [rclone options] REMOTE",
		Description: fmt.Sprintf("migrate holds the exclusive lock and replaces the config of a format 2\n"+
			"repository by one of format %d, in one atomic save; nothing else is written.\n"+
			"Backups pushed before keep their manifests, which this vmasync reads as they\n"+
			"are; pushes from then on store a backup's chunk list as a tree whose unchanged\n"+
			"parts are shared between backups, so a night stores metadata in proportion to\n"+
			"what changed. vmasync versions before format 3 then refuse the repository\n"+
			"(upgrade vmasync on every host that pushes to it). A repository already at\n"+
			"format %d is left alone; a format 1 repository cannot be migrated.",
			remote.FormatVersion, remote.FormatVersion),
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
