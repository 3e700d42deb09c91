package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rclone/rclone/fs"
	"github.com/urfave/cli/v2"

	"github.com/vmasync/vmasync/chunkplan"
	"github.com/vmasync/vmasync/internal/output"
	"github.com/vmasync/vmasync/internal/vzdump"
	"github.com/vmasync/vmasync/remote"
	"github.com/vmasync/vmasync/remote/backend"
	"github.com/vmasync/vmasync/remote/backend/rclonebe"
	"github.com/vmasync/vmasync/vma"
)

// remoteFlags are the rclone settings every remote command takes.
func remoteFlags() []cli.Flag {
	return []cli.Flag{
		&cli.PathFlag{Name: "rclone-config", EnvVars: []string{"VMASYNC_RCLONE_CONFIG", "RCLONE_CONFIG"}, Usage: "rclone config `FILE` with the remotes (default: rclone's own search, ~/.config/rclone/rclone.conf)"},
		&cli.IntFlag{Name: "transfers", Value: 4, EnvVars: []string{"VMASYNC_TRANSFERS"}, Usage: "upload `N` objects at once"},
		&cli.StringFlag{Name: "bwlimit", EnvVars: []string{"VMASYNC_BWLIMIT"}, Usage: "bandwidth limit as rclone takes it: `RATE` such as 10M, or a timetable \"08:00,512k 23:00,off\""},
		&cli.StringSliceFlag{Name: "rclone-option", Aliases: []string{"o"}, Usage: "any rclone global option as `NAME=VALUE` (e.g. -o contimeout=30s); repeatable"},
		&cli.DurationFlag{Name: "lock-wait", Value: 10 * time.Minute, EnvVars: []string{"VMASYNC_LOCK_WAIT"}, Usage: "wait up to `DURATION` for a conflicting lock (a prune, or pushes for prune) to go"},
	}
}

// lockRepo takes the repository lock for the command; the returned
// function releases it.
//
// The command must run under the returned context: it is cancelled when
// the lock cannot be refreshed in time (remote.ErrLockLost), so that the
// command stops before another process may take its lock for stale.
func lockRepo(ctx context.Context, cCtx *cli.Context, r *remote.Repository, exclusive bool) (context.Context, func(), error) {
	l, err := r.Lock(ctx, exclusive, "vmasync "+cCtx.Command.Name, cCtx.Duration("lock-wait"))
	if err != nil {
		return nil, nil, err
	}
	return l.Context(), func() {
		if err := l.Unlock(); err != nil {
			r.Warn("removing the lock: " + err.Error())
		}
	}, nil
}

// openRemote sets rclone up from the command's flags and opens the remote
// s (not the repository).
func openRemote(e *env, cCtx *cli.Context, o opts, s string) (context.Context, fs.Fs, error) {
	if err := checkRcloneFlags(cCtx); err != nil {
		return nil, nil, err
	}
	level := slog.Level(fs.SlogLevelNotice)
	if o.verbose {
		level = slog.LevelInfo
	}
	if o.quiet {
		level = slog.LevelError
	}
	set := rclonebe.Settings{
		ConfigPath: cCtx.Path("rclone-config"),
		Transfers:  cCtx.Int("transfers"),
		BwLimit:    cCtx.String("bwlimit"),
		Options:    map[string]string{},
		Logger:     &rcloneLog{w: e.stderr, level: level},
		Verbose:    o.verbose,
	}
	if set.Transfers < 1 {
		return nil, nil, usageError(cCtx.Command.Name, "--transfers must be at least 1")
	}
	for _, kv := range cCtx.StringSlice("rclone-option") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, nil, usageError(cCtx.Command.Name, "-o %q: want NAME=VALUE", kv)
		}
		set.Options[strings.ReplaceAll(strings.TrimLeft(k, "-"), "-", "_")] = v
	}
	ctx, err := rclonebe.Setup(e.ctx, set)
	if err != nil {
		return nil, nil, err
	}
	f, err := rclonebe.NewFs(ctx, s)
	if err != nil {
		return nil, nil, maskErr(err, s)
	}
	return ctx, f, nil
}

// rcloneLog prints rclone's log records as "vmasync: rclone: ..." lines.
type rcloneLog struct {
	w     io.Writer
	level slog.Level
	attrs []slog.Attr
}

func (h *rcloneLog) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }
func (h *rcloneLog) Handle(_ context.Context, r slog.Record) error {
	// Without an rclone.conf, connection strings and local paths work:
	// rclone's notice about it is noise.
	if strings.HasPrefix(r.Message, "Config file ") && strings.Contains(r.Message, "not found") {
		return nil
	}
	obj := ""
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "object" && a.Value.String() != "" && a.Value.String() != "<nil>" {
			obj = a.Value.String() + ": "
		}
		return true
	})
	_, err := fmt.Fprintf(h.w, "vmasync: rclone: %s%s\n", obj, oneLine(r.Message))
	return err
}
func (h *rcloneLog) WithAttrs(as []slog.Attr) slog.Handler { return h }
func (h *rcloneLog) WithGroup(string) slog.Handler         { return h }

// withRemoteFlags adds the rclone flags to a command.
func withRemoteFlags(c *cli.Command) *cli.Command {
	c.Flags = append(c.Flags, remoteFlags()...)
	for _, f := range c.Flags {
		if t, ok := f.(*cli.IntFlag); ok && t.Name == "transfers" {
			switch c.Name {
			case "push":
			case "pull", "check", "snapshots", "mount":
				t.Usage = "download `N` objects at once"
			default:
				t.Usage = "transfer `N` objects at once"
			}
		}
	}
	return c
}

func initCommand(e *env) *cli.Command {
	return withRemoteFlags(&cli.Command{
		Name:      "init",
		Usage:     "create an empty vmasync repository on an rclone remote",
		UsageText: "vmasync init [--force] [rclone options] REMOTE",
		Description: "init writes the repository's config object (format version, chunking\n" +
			"parameters, compression) to REMOTE: a remote of your rclone.conf (name:path),\n" +
			"a connection string (:sftp,host=...:path) or a local directory. push does this\n" +
			"itself on an empty remote. See docs/repository.md for the layout. A directory\n" +
			"that holds other things is refused unless --force.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "force", Usage: "create the repository even in a non-empty directory"},
		},
		Action: func(cCtx *cli.Context) error {
			o, err := globalOpts(cCtx)
			if err != nil {
				return err
			}
			args, err := checkArgs(cCtx, 1, 1)
			if err != nil {
				return err
			}
			ctx, f, err := openRemote(e, cCtx, o, args[0])
			if err != nil {
				return err
			}
			if err := refuseForeignDir(ctx, f, cCtx.Bool("force")); err != nil {
				return fmt.Errorf("%s: %w", maskRemote(args[0]), err)
			}
			r, err := remote.Init(ctx, newBackend(e, f), chunkplan.DefaultParams())
			if err != nil {
				return fmt.Errorf("%s: %w", maskRemote(args[0]), err)
			}
			if !o.quiet {
				fmt.Fprintf(e.stderr, "created vmasync repository %s in %s\n", r.Config.ID, maskRemote(args[0]))
			}
			return nil
		},
	})
}

// configureRepo sets the repository's run settings from the flags: how
// many uploads at once, and where warnings about damaged objects go.
func configureRepo(e *env, cCtx *cli.Context, r *remote.Repository) {
	r.Transfers = cCtx.Int("transfers")
	r.Warn = func(msg string) { fmt.Fprintln(e.stderr, "vmasync: "+msg) }
}

// newBackend is the repository backend on the rclone remote f.
func newBackend(e *env, f fs.Fs) backend.Backend { return rclonebe.New(f) }

func openRepo(e *env, cCtx *cli.Context, o opts, s string) (context.Context, *remote.Repository, error) {
	ctx, f, err := openRemote(e, cCtx, o, s)
	if err != nil {
		return nil, nil, err
	}
	r, err := remote.Open(ctx, newBackend(e, f))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", maskRemote(s), err)
	}
	configureRepo(e, cCtx, r)
	return ctx, r, nil
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
	Previous     string   `json:"previous,omitempty"`
	PrevNewBytes *uint64  `json:"new_bytes_vs_previous,omitempty"`
	Seconds      float64  `json:"seconds"`
	MBps         float64  `json:"mb_per_s"`
	Attempts     int      `json:"attempts,omitempty"`
	Notes        []string `json:"notes,omitempty"`
	Healed       string   `json:"healed,omitempty"`
}

func pushCommand(e *env) *cli.Command {
	return withRemoteFlags(&cli.Command{
		Name:      "push",
		Usage:     "upload new vzdump VM backups of a dump directory, deduplicated, to an rclone remote",
		UsageText: "vmasync push [-v] [--json] [--dry-run] [--vmid ID]... [--keep-last N] [--keep-daily N] [--keep-...] [--retries N] [--compression LEVEL] [--temp-dir DIR] [--force] [rclone options] DUMPDIR REMOTE",
		Description: "push finds the vzdump VM backups in DUMPDIR (vzdump-qemu-<vmid>-<date>.vma,\n" +
			".vma.zst, .vma.gz, .vma.lzo; container backups and vzdump's unfinished .dat/.tmp\n" +
			"files are skipped), and uploads each that REMOTE does not hold yet, each VM's\n" +
			"oldest first. Every dump is read once: decompressed, verified, optimized,\n" +
			"chunked and hashed as one stream; only chunks the remote does not have are\n" +
			"compressed into packs and uploaded; the dump's .log, .notes and .protected files\n" +
			"follow; its manifest is written last, so that a backup is visible only when all\n" +
			"of its data is stored. Local dumps are never changed. An interrupted push\n" +
			"resumes on the next run without uploading finished packs again. An empty remote\n" +
			"is initialised first.\n\n" +
			"REMOTE is a remote of your rclone.conf (name:path), a connection string\n" +
			"(:sftp,host=...,user=...:path) or a local directory. Per dump, push prints the\n" +
			"archive size, the bytes new to the remote and shared with it, and what was\n" +
			"uploaded after compression; --json prints one JSON document instead. A dump that\n" +
			"fails (corrupt, network) is reported and the others still go; the exit code is\n" +
			"then 1. Network failures are retried --retries times per dump.\n\n" +
			"An empty DUMPDIR (no vzdump VM backup in it), or a --vmid selection that\n" +
			"matches no dump, is an error (exit 1): a nightly job that finds nothing has\n" +
			"failed. With the keep rules of prune (--keep-last, --keep-daily, ...), push\n" +
			"applies them to the remote's backups together with the local dumps first and\n" +
			"skips the dumps they would remove (\"skipped: the keep rules would prune\n" +
			"it\"), so that a backup prune removed does not come back from a dump still in\n" +
			"DUMPDIR. push initialises an empty remote, and refuses a non-empty directory\n" +
			"that is not a vmasync repository unless --force.",
		Flags: append(keepFlags(),
			&cli.BoolFlag{Name: "dry-run", Aliases: []string{"n"}, Usage: "read and chunk the dumps and say what would be uploaded, without uploading"},
			&cli.BoolFlag{Name: "json", Usage: "print the results as JSON on stdout"},
			&cli.StringSliceFlag{Name: "vmid", Usage: "push only the backups of VM `ID` (repeatable)"},
			&cli.IntFlag{Name: "retries", Value: 3, Usage: "attempts per dump when the remote fails with a retriable error"},
			&cli.StringFlag{Name: "compression", Value: "fastest", Usage: "zstd `LEVEL` of new chunks: fastest (about zstd -1, as Proxmox Backup Server), default (about zstd -3, as restic) or better (about zstd -7)"},
			&cli.StringFlag{Name: "temp-dir", Usage: "`DIR` for the spill file of the streaming reorder (default: $TMPDIR or /tmp)"},
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "say more (also rclone's INFO messages)"},
			&cli.BoolFlag{Name: "force", Usage: "create the repository even in a non-empty directory that is not one"},
		),
		Action: func(cCtx *cli.Context) error { return pushAction(e, cCtx) },
	})
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
	if len(entries) > 0 {
		return fmt.Errorf("not empty and not a vmasync repository (%s, e.g. %s): refusing to create a repository here; use an empty directory, or --force", count(len(entries), "entry", "entries"), entries[0].Remote())
	}
	return nil
}

// count is "1 backup", "2 backups".
func count(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
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
	j.StoredBytes, j.Uploaded = res.StoredBytes, res.Uploaded
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

func snapshotsCommand(e *env) *cli.Command {
	return withRemoteFlags(&cli.Command{
		Name:      "snapshots",
		Usage:     "list the backups on a remote by VM and time",
		UsageText: "vmasync snapshots [--json] [--vmid ID]... [rclone options] REMOTE",
		Description: "snapshots lists the complete backups on REMOTE, by VM id and time, with their\n" +
			"size, the bytes in chunks the VM's previous backup did not have, and whether\n" +
			"they are protected (a .protected file was pushed with them).",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print JSON on stdout"},
			&cli.StringSliceFlag{Name: "vmid", Usage: "only VM `ID` (repeatable)"},
		},
		Action: func(cCtx *cli.Context) error {
			o, err := globalOpts(cCtx)
			if err != nil {
				return err
			}
			args, err := checkArgs(cCtx, 1, 1)
			if err != nil {
				return err
			}
			ctx, r, err := openRepo(e, cCtx, o, args[0])
			if err != nil {
				return err
			}
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

func pullCommand(e *env) *cli.Command {
	return withRemoteFlags(&cli.Command{
		Name:      "pull",
		Usage:     "rebuild a backup from a remote as a VMA file that Proxmox restores",
		UsageText: "vmasync pull [--compress zstd] [--disk NAME]... [--force] [rclone options] REMOTE VMID[@TIME|@latest] [DEST|-]",
		Description: "pull rebuilds the optimized VMA of a backup byte for byte (every chunk and the\n" +
			"whole archive are checked against their SHA-256) and writes it under its vzdump\n" +
			"name (vzdump-qemu-<vmid>-<date>.vma) into DEST (a directory, default .) with the\n" +
			".log, .notes and .protected pushed with it, or to the file DEST, or to stdout\n" +
			"with -:\n" +
			"  vmasync pull REMOTE 105@latest - | qmrestore - 105\n" +
			"TIME is the vzdump time stamp (2026_11_21-01_00_02), a date-time\n" +
			"(2026-11-21T01:00:02) or a unique prefix of one; without it, the newest backup.\n" +
			"The file appears only when complete. Existing files (the archive or the\n" +
			"files pushed with it) are replaced only with --force.\n\n" +
			"With --disk NAME, pull writes only that disk as a sparse raw image, the bytes\n" +
			"'vmasync unpack' writes, fetching only its chunks: to the file DEST, to stdout\n" +
			"with -, or as disk-NAME.raw into the directory DEST (--disk may repeat).",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "compress", Usage: "write a .vma.zst: `ALGO` is zstd"},
			diskFlag(),
			&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "replace existing files"},
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "say more (also rclone's INFO messages)"},
		},
		Action: func(cCtx *cli.Context) error {
			if len(cCtx.StringSlice("disk")) > 0 {
				return pullDisks(e, cCtx)
			}
			o, err := globalOpts(cCtx)
			if err != nil {
				return err
			}
			args, err := checkArgs(cCtx, 2, 3)
			if err != nil {
				return err
			}
			comp := cCtx.String("compress")
			if comp != "" && comp != "zstd" {
				return usageError("pull", "--compress: unknown algorithm %q (only zstd)", comp)
			}
			vmid, sel, _ := strings.Cut(args[1], "@")
			if _, err := strconv.ParseUint(vmid, 10, 32); err != nil {
				return usageError("pull", "%q is not a VM id", vmid)
			}
			dest := "."
			if len(args) == 3 {
				dest = args[2]
			}
			if dest == "-" && isTerminal(e.stdout) {
				return &fileError{"stdout", errors.New("refusing to write an archive to a terminal")}
			}
			out := output.Options{Force: cCtx.Bool("force"), Compress: comp, Sync: true, Stdout: e.stdout}
			if st, err := os.Stat(dest); dest != "-" && (err != nil || !st.IsDir()) {
				if err := output.Check(dest, out); err != nil {
					return fmt.Errorf("pull: %w", err)
				}
			}
			ctx, r, err := openRepo(e, cCtx, o, args[0])
			if err != nil {
				return err
			}
			ctx, unlock, err := lockRepo(ctx, cCtx, r, false)
			if err != nil {
				return err
			}
			defer unlock()
			backups, err := r.Backups(ctx)
			if err != nil {
				return err
			}
			b, err := remote.Select(backups, vmid, sel)
			if err != nil {
				return err
			}
			m, err := r.Manifest(ctx, b)
			if err != nil {
				return err
			}
			if _, err := r.LoadIndex(ctx, false); err != nil {
				return err
			}
			name := b.Name + ".vma"
			if comp == "zstd" {
				name += ".zst"
			}
			toDir := false
			if dest != "-" {
				if st, err := os.Stat(dest); err == nil && st.IsDir() {
					dest, toDir = filepath.Join(dest, name), true
				}
			}
			if err := pullFiles(ctx, e, o, r, b, m, dest, toDir, out); err != nil {
				return err
			}
			if !o.quiet {
				fmt.Fprintf(e.stderr, "%s: %s (%s, SHA-256 checked)\n", b.Name, displayName(dest), humanBytes(m.ArchiveSize))
			}
			return nil
		},
	})
}

// pullFiles writes backup b (manifest m) to dest, and when toDir the
// files pushed with it beside it. Every file is checked before the
// download.
func pullFiles(ctx context.Context, e *env, o opts, r *remote.Repository, b remote.Backup, m *chunkplan.Manifest, dest string, toDir bool, out output.Options) error {
	sides := map[string]string{} // sidecar extension → path
	paths := []string{dest}
	if toDir {
		for _, ext := range vzdump.Sidecars {
			if _, ok := b.Sidecars[ext]; ok {
				// Under Proxmox VE's names: the log after the stem, notes
				// and protection after the archive.
				sides[ext] = vzdump.SidecarPath(dest, ext)
				paths = append(paths, sides[ext])
			}
		}
	}
	for _, path := range paths {
		if err := output.Check(path, out); err != nil {
			return fmt.Errorf("pull: %w", err)
		}
	}
	p := newProgress(e, o, "pull "+b.Name)
	p.setTotal(int64(m.ArchiveSize), nil)
	err := writeOutput(ctx, dest, out, func(w io.Writer) error { return r.Restore(ctx, m, w, p.update) })
	p.done()
	if err != nil {
		return fmt.Errorf("pull %s: %w", b.Name, err)
	}
	for _, ext := range vzdump.Sidecars {
		side, ok := sides[ext]
		if !ok {
			continue
		}
		data, err := r.Object(ctx, b.Sidecars[ext])
		if err != nil {
			return err
		}
		sopt := out
		sopt.Compress = ""
		if err := writeOutput(ctx, side, sopt, func(w io.Writer) error { _, err := w.Write(data); return err }); err != nil {
			return fmt.Errorf("pull: %w", err)
		}
	}
	return nil
}

// writeOutput writes dest through internal/output (stdout for "-", else
// a file that appears only when complete): fill writes the content.
func writeOutput(ctx context.Context, dest string, opt output.Options, fill func(io.Writer) error) error {
	w, err := output.Create(ctx, dest, opt)
	if err != nil {
		return err
	}
	defer w.Abort()
	if err := fill(w); err != nil {
		return err
	}
	return w.Commit()
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
		Name:      "check",
		Usage:     "check that every backup on a remote is complete (and, with --read-data, intact)",
		UsageText: "vmasync check [--read-data[=PERCENT]] [rclone options] REMOTE",
		Description: "check reads the index and every manifest on REMOTE and checks that every chunk\n" +
			"a backup references is indexed and lies within a pack that exists.\n" +
			"--read-data also downloads the packs (--read-data=10 a random 10% of them) and\n" +
			"checks every chunk against its SHA-256 and every pack's header against the\n" +
			"pack's name. Each problem is printed on one line naming the backup and the\n" +
			"chunk (or the pack, for a damaged header); the exit code is then 1.",
		Flags: []cli.Flag{
			&cli.GenericFlag{Name: "read-data", Value: &readDataFlag{}, Usage: "download and check the packs: all, or a random `PERCENT` of them (--read-data=10 or --read-data 10)"},
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "list every backup checked with its result on stdout, and what was read"},
		},
		Action: func(cCtx *cli.Context) error {
			o, err := globalOpts(cCtx)
			if err != nil {
				return err
			}
			args, err := checkArgs(cCtx, 1, 2)
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

// vmaOptions are push's settings for the streaming reorder.
func vmaOptions(cCtx *cli.Context) vma.OptimizeOptions {
	return vma.OptimizeOptions{TempDir: cCtx.String("temp-dir")}
}
