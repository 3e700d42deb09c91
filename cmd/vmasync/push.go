package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/urfave/cli/v2"

	"github.com/vmasync/vmasync/chunkplan"
	"github.com/vmasync/vmasync/internal/vzdump"
	"github.com/vmasync/vmasync/remote"
)

// pushAction is vmasync push: find the dumps, open (or create) the
// repository, push each dump, report.
func pushAction(e *env, cCtx *cli.Context) error {
	o, err := globalOpts(cCtx)
	if err != nil {
		return err
	}
	rules, err := keepRules(cCtx)
	if err != nil {
		return err
	}
	args, err := checkArgs(cCtx, 2, 2)
	if err != nil {
		return err
	}
	dir, rs := args[0], args[1]
	level, err := remote.ParseCompressionLevel(cCtx.String("compression"))
	if err != nil {
		return usageError("push", "%v", err)
	}
	dumps, skipped, err := findPushDumps(dir, cCtx.StringSlice("vmid"))
	if err != nil {
		return err
	}
	dry := cCtx.Bool("dry-run")
	ctx, r, release, err := openPushRepo(e, cCtx, o, rs, dry)
	if err != nil {
		return err
	}
	defer release()
	asJSON := cCtx.Bool("json")
	for _, s := range skipped {
		if !o.quiet && !asJSON {
			fmt.Fprintf(e.stderr, "skipped %s\n", s)
		}
	}
	pruned, err := prunedByRules(ctx, r, dumps, rules)
	if err != nil {
		return fmt.Errorf("%s: %w", maskRemote(rs), err)
	}
	var results []pushJSON
	failed := 0
	for _, d := range dumps {
		j := pushJSON{Dump: d.Path, Backup: d.Stem, VMID: d.VMID}
		if why, ok := pruned[d.Stem]; ok {
			j.Status, j.Reason = "skipped", "skipped: the keep rules would prune it ("+rules.String()+": "+why+")"
		} else if err := pushOne(ctx, e, cCtx, o, r, d, remote.PushOptions{DryRun: dry, Optimize: vmaOptions(cCtx), Compression: level}, &j); err != nil {
			return err
		}
		results = append(results, j)
		if j.Status == "failed" {
			failed++
		} else if !asJSON && !o.quiet {
			printPush(e.stdout, j)
		}
	}
	if asJSON {
		if skipped == nil {
			skipped = []string{}
		}
		if results == nil {
			results = []pushJSON{}
		}
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(map[string]any{"remote": maskRemote(rs), "dry_run": dry, "dumps": results, "skipped": skipped, "failed": failed}); err != nil {
			return err
		}
	}
	if failed > 0 {
		return reportedError{}
	}
	return nil
}

// findPushDumps lists the dumps of dir (of the VM ids, if any): none is an
// error, not a green run that did nothing.
func findPushDumps(dir string, ids []string) ([]vzdump.Dump, []string, error) {
	dumps, skipped, err := vzdump.Find(dir)
	if err != nil {
		return nil, nil, &fileError{dir, err}
	}
	if len(dumps) == 0 {
		return nil, nil, &fileError{dir, errors.New("no vzdump VM backups (vzdump-qemu-VMID-DATE.vma[.zst|.gz|.lzo]) in this directory, nothing to push: is it the storage's dump directory, and is the storage mounted?")}
	}
	if len(ids) > 0 {
		if dumps, err = selectDumps(dumps, ids); err != nil {
			return nil, nil, &fileError{dir, err}
		}
	}
	return dumps, skipped, nil
}

// openPushRepo opens the repository of rs for push, creating it when the
// remote is empty (in a dry run, an empty one in memory), takes the shared
// lock and loads the index.
func openPushRepo(e *env, cCtx *cli.Context, o opts, rs string, dry bool) (context.Context, *remote.Repository, func(), error) {
	ctx, f, err := openRemote(e, cCtx, o, rs)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := refuseForeignDir(ctx, f, cCtx.Bool("force")); err != nil {
		return nil, nil, nil, fmt.Errorf("%s: %w", maskRemote(rs), err)
	}
	var r *remote.Repository
	if dry {
		if r, err = remote.Open(ctx, newBackend(e, f)); errors.Is(err, remote.ErrNotRepository) {
			// Nothing there yet: measure against an empty repository.
			r, err = remote.Empty(newBackend(e, f), chunkplan.DefaultParams())
		}
	} else {
		var created bool
		r, created, err = remote.OpenOrInit(ctx, newBackend(e, f), chunkplan.DefaultParams())
		if created && !o.quiet && !cCtx.Bool("json") {
			fmt.Fprintf(e.stderr, "initialised a new vmasync repository in %s\n", maskRemote(rs))
		}
	}
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%s: %w", maskRemote(rs), err)
	}
	configureRepo(e, cCtx, r)
	release := func() {}
	if !dry {
		if ctx, release, err = lockRepo(ctx, cCtx, r, false); err != nil {
			return nil, nil, nil, fmt.Errorf("%s: %w", maskRemote(rs), err)
		}
	}
	st, err := r.LoadIndex(ctx, !dry)
	if err != nil {
		release()
		return nil, nil, nil, fmt.Errorf("%s: %w", maskRemote(rs), err)
	}
	if st.Recovered > 0 && !o.quiet {
		fmt.Fprintf(e.stderr, "found %d packs of an interrupted push; their chunks are reused\n", st.Recovered)
	}
	return ctx, r, release, nil
}

// pushOne pushes one dump, with a progress bar, retrying errors the
// remote may not repeat (remote.PushRetrying), and fills j. A failed dump
// is reported on stderr and in j; only a cancellation is returned.
func pushOne(ctx context.Context, e *env, cCtx *cli.Context, o opts, r *remote.Repository, d vzdump.Dump, opt remote.PushOptions, j *pushJSON) error {
	var p *progress
	var fileRead atomic.Int64
	opt.Progress = func(read, inFile int64) { fileRead.Store(inFile); p.update(read) }
	start := func() {
		p = newProgress(e, o, "push "+filepath.Base(d.Path))
		if st, err := os.Stat(d.Path); err == nil {
			p.setTotal(st.Size(), fileRead.Load)
		}
	}
	start()
	retries := cCtx.Int("retries")
	res, attempts, err := r.PushRetrying(ctx, d, opt, retries, func(attempt int, err error) {
		p.done()
		fmt.Fprintf(e.stderr, "vmasync: %s: %v; retrying (%d of %d)\n", d.Stem, oneLine(cleanMsg(err)), attempt+1, retries)
		start()
	})
	p.done()
	j.Attempts = attempts
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		j.Status, j.Reason = "failed", oneLine(cleanMsg(err))
		fmt.Fprintf(e.stderr, "vmasync: %s: %s\n", displayName(d.Path), j.Reason)
		return nil
	}
	fillPushJSON(j, res, opt.DryRun)
	return nil
}
