package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"github.com/rclone/rclone/fs"
	"github.com/urfave/cli/v2"

	"github.com/vmasync/vmasync/chunkplan"
	"github.com/vmasync/vmasync/internal/vzdump"
	"github.com/vmasync/vmasync/remote"
	"github.com/vmasync/vmasync/remote/backend"
)

func pushCommand(e *env) *cli.Command {
	return withRemoteFlags(&cli.Command{
		Name:        "push",
		Usage:       "upload new vzdump VM backups of a dump directory, deduplicated, to an rclone remote",
		UsageText:   "vmasync push [-v] [--json] [--dry-run] [--vmid ID]... [--keep-last N] [--keep-daily N] [--keep-...] [--retries N] [--compression LEVEL] [--temp-dir DIR] [--force] [rclone options] DUMPDIR REMOTE",
		Description: help("push"),
		Flags: append(keepFlags(),
			dryRunFlag("read and chunk the dumps and say what would be uploaded, without uploading"),
			jsonFlag("print the results as JSON on stdout"),
			vmidFlag("push only the backups of VM `ID` (repeatable)"),
			&cli.IntFlag{Name: "retries", Value: 3, Usage: "attempts per dump when the remote fails with a retriable error"},
			&cli.StringFlag{Name: "compression", Value: "fastest", Usage: "zstd `LEVEL` of new chunks: fastest (about zstd -1, as Proxmox Backup Server), default (about zstd -3, as restic) or better (about zstd -7)"},
			&cli.StringFlag{Name: "temp-dir", Usage: "`DIR` for the spill file of the streaming reorder (default: $TMPDIR or /tmp)"},
			verboseFlag(sayMoreRclone),
			&cli.BoolFlag{Name: "force", Usage: "create the repository even in a non-empty directory that is not one"},
		),
		Action: func(cCtx *cli.Context) error { return pushAction(e, cCtx) },
	})
}

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
	unlock := func() {}
	if !dry {
		if ctx, unlock, err = lockRepo(ctx, cCtx, r, false); err != nil {
			return nil, nil, nil, fmt.Errorf("%s: %w", maskRemote(rs), err)
		}
	}
	release := func() { unlock(); r.Close() }
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

// pushJSON is one dump in push --json.
type pushJSON struct {
	Dump         string   `json:"dump"`
	Backup       string   `json:"backup"`
	VMID         string   `json:"vmid"`
	Status       string   `json:"status"` // pushed, skipped, failed, dry-run
	Reason       string   `json:"reason,omitempty"`
	ArchiveBytes int64    `json:"archive_bytes"`
	NewBytes     int64    `json:"new_bytes"`
	SharedBytes  int64    `json:"shared_bytes"`
	SavingPct    float64  `json:"saving_percent"`
	ResumedBytes int64    `json:"resumed_bytes,omitempty"`
	StoredBytes  int64    `json:"stored_bytes"`
	Uploaded     int64    `json:"uploaded_bytes"`
	Metadata     int64    `json:"metadata_bytes"`
	Previous     string   `json:"previous,omitempty"`
	PrevNewBytes *uint64  `json:"new_bytes_vs_previous,omitempty"`
	Seconds      float64  `json:"seconds"`
	MBps         float64  `json:"mb_per_s"`
	Attempts     int      `json:"attempts,omitempty"`
	Notes        []string `json:"notes,omitempty"`
	Healed       string   `json:"healed,omitempty"`
}

// selectDumps keeps the dumps of the VM ids; a selection that matches no
// dump is an error.
func selectDumps(dumps []remote.Dump, ids []string) ([]remote.Dump, error) {
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	var sel []remote.Dump
	var have []string
	for _, d := range dumps {
		if want[d.VMID] {
			sel = append(sel, d)
		}
		if len(have) == 0 || have[len(have)-1] != d.VMID {
			have = append(have, d.VMID)
		}
	}
	if len(sel) == 0 {
		return nil, fmt.Errorf("no dump of VM %s in this directory, nothing to push (it holds dumps of VM %s)", strings.Join(ids, ", "), strings.Join(have, ", "))
	}
	return sel, nil
}

// prunedByRules applies the keep rules to the remote's backups together
// with the dumps the remote does not hold yet, and returns the dumps (by
// stem) the rules would remove, with the reason: pushing them would only
// bring back what prune removed (or will remove next).
func prunedByRules(ctx context.Context, r *remote.Repository, dumps []remote.Dump, rules remote.KeepRules) (map[string]string, error) {
	out := map[string]string{}
	if rules.All || rules == (remote.KeepRules{}) || len(dumps) == 0 {
		return out, nil
	}
	all, err := r.Backups(ctx)
	if err != nil {
		return nil, err
	}
	onRemote := map[string]bool{}
	for _, b := range all {
		onRemote[b.Name] = true
	}
	local := map[string]bool{}
	for _, d := range dumps {
		if onRemote[d.Stem] || local[d.Stem] {
			continue
		}
		local[d.Stem] = true
		// PVE marks a protected backup with ARCHIVE.protected (older
		// versions, and pull, with STEM.protected).
		_, err1 := os.Stat(d.Path + ".protected")
		_, err2 := os.Stat(filepath.Join(filepath.Dir(d.Path), d.Stem+".protected"))
		all = append(all, remote.Backup{VMID: d.VMID, Name: d.Stem, Stamp: d.Stamp, Time: d.Time, Protected: err1 == nil || err2 == nil})
	}
	for _, m := range remote.MarkBackups(all, rules) {
		if !m.Keep && local[m.Backup.Name] {
			out[m.Backup.Name] = m.Reason
		}
	}
	return out, nil
}

// refuseForeignDir refuses to create a repository in a remote directory
// that holds other things (a typo in the path, the wrong remote) unless
// force: only when there is no config object yet.
func refuseForeignDir(ctx context.Context, f fs.Fs, force bool) error {
	if force {
		return nil
	}
	if ok, err := fs.FileExists(ctx, f, remote.ConfigName); err != nil || ok {
		return err
	}
	entries, err := f.List(ctx, "")
	if errors.Is(err, fs.ErrorDirNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	// What a process killed while it created the repository here left
	// (its config under a temporary name) is not somebody else's data:
	// the next run must not need --force.
	var foreign []string
	for _, e := range entries {
		if !backend.IsTemp(e.Remote()) {
			foreign = append(foreign, e.Remote())
		}
	}
	if len(foreign) > 0 {
		return fmt.Errorf("not empty and not a vmasync repository (%s, e.g. %s): refusing to create a repository here; use an empty directory, or --force", count(len(foreign), "entry", "entries"), foreign[0])
	}
	return nil
}

func fillPushJSON(j *pushJSON, res *remote.PushResult, dry bool) {
	j.Status = "pushed"
	if dry {
		j.Status = "dry-run"
	}
	if res.Skipped {
		j.Status, j.Reason = "skipped", res.Reason
		return
	}
	j.ArchiveBytes, j.NewBytes, j.SharedBytes = res.ArchiveBytes, res.NewBytes, res.SharedBytes
	j.SavingPct = 100 * res.Saving()
	j.ResumedBytes = res.ResumedBytes
	j.StoredBytes, j.Uploaded, j.Metadata = res.StoredBytes, res.Uploaded, res.Metadata
	j.Previous = res.Previous
	j.Healed = res.Healed
	if res.VsPrevious != nil {
		n := res.VsPrevious.NewBytes
		j.PrevNewBytes = &n
	}
	j.Seconds = res.Duration.Seconds()
	if j.Seconds > 0 {
		j.MBps = float64(res.ArchiveBytes) / 1e6 / j.Seconds
	}
}

func printPush(w io.Writer, j pushJSON) {
	if j.Status == "skipped" {
		fmt.Fprintf(w, "%s: %s\n", j.Backup, j.Reason)
		return
	}
	verb := "uploaded"
	if j.Status == "dry-run" {
		verb = "would upload"
	}
	fmt.Fprintf(w, "%s: %s, new %s, shared %s (%.1f%% saved), %s %s in %.1fs (%.0f MB/s)\n",
		j.Backup, humanBytes(uint64(j.ArchiveBytes)), humanBytes(uint64(j.NewBytes)), humanBytes(uint64(j.SharedBytes)),
		j.SavingPct, verb, humanBytes(uint64(j.Uploaded)), j.Seconds, j.MBps)
	if j.Previous != "" && j.PrevNewBytes != nil {
		fmt.Fprintf(w, "  against %s: %s in chunks that backup did not have\n", j.Previous, humanBytes(*j.PrevNewBytes))
	}
	if j.ResumedBytes > 0 {
		fmt.Fprintf(w, "  %s of the shared bytes were uploaded by an interrupted push of this dump (resumed, not saved)\n", humanBytes(uint64(j.ResumedBytes)))
	}
	if j.Healed != "" {
		fmt.Fprintf(w, "  stored again: the copy on the remote was damaged (%s)\n", j.Healed)
	}
}
