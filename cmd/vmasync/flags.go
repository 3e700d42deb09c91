package main

import "github.com/urfave/cli/v2"

// The flags several commands take, each command with its own usage text
// (each call makes a new flag: every run has its own).

// verboseFlag is -v, --verbose.
func verboseFlag(usage string) *cli.BoolFlag {
	return &cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: usage}
}

// jsonFlag is --json.
func jsonFlag(usage string) *cli.BoolFlag {
	return &cli.BoolFlag{Name: "json", Usage: usage}
}

// vmidFlag is the repeatable --vmid ID.
func vmidFlag(usage string) *cli.StringSliceFlag {
	return &cli.StringSliceFlag{Name: "vmid", Usage: usage}
}

// forceFlag is -f, --force of the commands that write files.
func forceFlag(usage string) *cli.BoolFlag {
	return &cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: usage}
}

// dryRunFlag is -n, --dry-run.
func dryRunFlag(usage string) *cli.BoolFlag {
	return &cli.BoolFlag{Name: "dry-run", Aliases: []string{"n"}, Usage: usage}
}

// sayMoreRclone is the -v of the commands that talk to a remote.
const sayMoreRclone = "say more (also rclone's INFO messages)"
