package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"

	"github.com/rclone/rclone/fs"
	"github.com/rclone/rclone/fs/config/configmap"
	"github.com/rclone/rclone/fs/config/configstruct"
	"github.com/urfave/cli/v2"

	"github.com/vmasync/vmasync/remote"
)

// checkRcloneFlags checks the rclone settings of a remote command before
// rclone is set up: an invalid --bwlimit or -o value is a usage error
// (exit 2), and a --rclone-config file that does not exist is named
// (rclone itself would only say that it found no section for the remote).
func checkRcloneFlags(cCtx *cli.Context) error {
	name := cCtx.Command.Name
	if p := cCtx.Path("rclone-config"); p != "" {
		if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("rclone config %s: does not exist (from --rclone-config, $VMASYNC_RCLONE_CONFIG or $RCLONE_CONFIG)", p)
		}
	}
	set := configmap.Simple{}
	if bw := cCtx.String("bwlimit"); bw != "" {
		set["bwlimit"] = bw
	}
	for _, kv := range cCtx.StringSlice("rclone-option") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return usageError(name, "-o %q: want NAME=VALUE", kv)
		}
		k = strings.ReplaceAll(strings.TrimLeft(k, "-"), "-", "_")
		if fs.ConfigOptionsInfo.Get(k) == nil {
			return usageError(name, "-o %s: unknown rclone option %q", kv, k)
		}
		set[k] = v
	}
	for k, v := range set {
		_, ci := fs.AddConfig(context.Background())
		if err := configstruct.Set(configmap.Simple{k: v}, ci); err != nil {
			what := "-o " + k + "=" + v
			if k == "bwlimit" && v == cCtx.String("bwlimit") {
				what = "--bwlimit " + v
			}
			return usageError(name, "%s: invalid value: %v", what, err)
		}
	}
	return nil
}

// leftLocks says which live locks unlock left in place.
func leftLocks(ctx context.Context, e *env, r *remote.Repository) {
	locks, err := r.Locks(ctx)
	if err != nil || len(locks) == 0 {
		return
	}
	fmt.Fprintf(e.stderr, "left %s in use (%s); --all removes them too, but only when no vmasync command uses the remote\n",
		count(len(locks), "live lock", "live locks"), joinLocks(locks))
}

func joinLocks(locks []remote.LockInfo) string {
	s := make([]string, len(locks))
	for i, l := range locks {
		s[i] = l.String()
	}
	return strings.Join(s, "; ")
}

// isBrokenPipe tells whether err comes from writing to a pipe whose
// reader is gone (main ignores SIGPIPE, so such writes fail with EPIPE).
func isBrokenPipe(err error) bool {
	return errors.Is(err, syscall.EPIPE) || strings.Contains(err.Error(), "broken pipe")
}

// checkedBackups prints check -v's line per backup on stdout: "ok" or its
// problems.
func checkedBackups(ctx context.Context, e *env, r *remote.Repository, res *remote.CheckResult) error {
	backups, err := r.Backups(ctx)
	if err != nil {
		return err
	}
	for _, b := range backups {
		n := 0
		for _, pr := range res.Problems {
			if pr.Backup != "" && strings.Contains(pr.Backup, b.Name) {
				n++
			}
		}
		what := "ok"
		if n > 0 {
			what = count(n, "problem", "problems")
		}
		fmt.Fprintf(e.stdout, "%s: %s\n", b.Name, what)
	}
	return nil
}
