package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
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
		&cli.PathFlag{Name: "cache-dir", EnvVars: []string{"VMASYNC_CACHE_DIR"}, Usage: "local `DIR` of the index caches (default: $XDG_CACHE_HOME/vmasync or ~/.cache/vmasync); \"none\" holds the index in memory"},
	}
}

// cacheDir is where the repository keeps its index cache: --cache-dir,
// else the user's cache directory. "" (with a warning when that cannot be
// created, or with --cache-dir none) holds the index in memory.
func cacheDir(e *env, cCtx *cli.Context) string {
	dir := cCtx.Path("cache-dir")
	if dir == "none" {
		return ""
	}
	if dir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			fmt.Fprintf(e.stderr, "vmasync: no cache directory (%v); the index is held in memory (set --cache-dir)\n", err)
			return ""
		}
		dir = filepath.Join(base, "vmasync")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		fmt.Fprintf(e.stderr, "vmasync: cache directory %s: %v; the index is held in memory\n", dir, err)
		return ""
	}
	return dir
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
		Name:        "init",
		Usage:       "create an empty vmasync repository on an rclone remote",
		UsageText:   "vmasync init [--force] [rclone options] REMOTE",
		Description: help("init"),
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "force", Usage: "create the repository even in a non-empty directory"},
		},
		Action: func(cCtx *cli.Context) error {
			o, args, err := optsArgs(cCtx, 1, 1)
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
// many uploads at once, where the index cache is, and where warnings
// about damaged objects go.
func configureRepo(e *env, cCtx *cli.Context, r *remote.Repository) {
	r.Transfers = cCtx.Int("transfers")
	r.CacheDir = cacheDir(e, cCtx)
	if r.CacheDir != "" && os.Getenv("GOMEMLIMIT") == "" && debug.SetMemoryLimit(-1) == memoryLimit {
		// With the index on disk what is live is the pipelines' buffers
		// (packs in upload, ranges in restore): a tighter heap target
		// keeps the garbage collector's headroom from doubling them.
		debug.SetMemoryLimit(cachedMemoryLimit)
	}
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

// pullCommand is "vmasync pull": pullAction, or pullDisks with --disk.
func pullCommand(e *env) *cli.Command {
	return withRemoteFlags(&cli.Command{
		Name:        "pull",
		Usage:       "rebuild a backup from a remote as a VMA file that Proxmox restores",
		UsageText:   "vmasync pull [--compress zstd] [--disk NAME]... [--manifest] [--force] [rclone options] REMOTE VMID[@TIME|@latest] [DEST|-]",
		Description: help("pull"),
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "compress", Usage: "write a .vma.zst: `ALGO` is zstd"},
			&cli.BoolFlag{Name: "manifest", Usage: "write the backup's chunk manifest instead of the archive"},
			diskFlag(),
			forceFlag("replace existing files"),
			verboseFlag(sayMoreRclone),
		},
		Action: func(cCtx *cli.Context) error {
			if len(cCtx.StringSlice("disk")) > 0 {
				return pullDisks(e, cCtx)
			}
			return pullAction(e, cCtx)
		},
	})
}

// pullAction picks the backup and the destination, then writes the
// manifest or hands over to pullFiles.
func pullAction(e *env, cCtx *cli.Context) error {
	o, args, err := optsArgs(cCtx, 2, 3)
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
	manifest := cCtx.Bool("manifest")
	if manifest && comp != "" {
		return usageError("pull", "--manifest and --compress do not go together")
	}
	read := readHeader
	if manifest {
		read = readWhole
	}
	ctx, r, b, m, unlock, err := openBackup(e, cCtx, o, args[0], vmid, sel, read)
	if err != nil {
		return err
	}
	defer unlock()
	name := b.Name + ".vma"
	if comp == "zstd" {
		name += ".zst"
	}
	if manifest {
		name = b.Name + remote.ManifestExt
	}
	toDir := false
	if dest != "-" {
		if st, err := os.Stat(dest); err == nil && st.IsDir() {
			dest, toDir = filepath.Join(dest, name), true
		}
	}
	if manifest {
		return pullManifest(ctx, e, o, b, m, dest, out)
	}
	if err := pullFiles(ctx, e, o, r, b, m, dest, toDir, out); err != nil {
		return err
	}
	if !o.quiet {
		fmt.Fprintf(e.stderr, "%s: %s (%s, SHA-256 checked)\n", b.Name, displayName(dest), humanBytes(m.ArchiveSize))
	}
	return nil
}

// pullManifest writes backup b's chunk manifest m to dest.
func pullManifest(ctx context.Context, e *env, o opts, b remote.Backup, m *chunkplan.Manifest, dest string, out output.Options) error {
	if err := writeOutput(ctx, dest, out, func(w io.Writer) error { _, err := m.WriteTo(w); return err }); err != nil {
		return fmt.Errorf("pull %s: %w", b.Name, err)
	}
	if !o.quiet {
		fmt.Fprintf(e.stderr, "%s: %s (the manifest: %d chunks of %s)\n", b.Name, displayName(dest), len(m.Chunks), humanBytes(m.ArchiveSize))
	}
	return nil
}

// pullFiles writes backup b (manifest m, perhaps without its chunks) to dest, and when toDir the
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
	err := writeOutput(ctx, dest, out, func(w io.Writer) error { return r.RestoreBackup(ctx, b, w, p.update) })
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

// vmaOptions are push's settings for the streaming reorder: the window
// of the optimize command (32 MiB). A 16 MiB window saved the push 16 MiB
// of RSS but spilled 43 % of a generated Proxmox-like 2 GiB dump to the
// temporary file instead of 13 %, and a 64 GiB push ran out of disk.
func vmaOptions(cCtx *cli.Context) vma.OptimizeOptions {
	return vma.OptimizeOptions{TempDir: cCtx.String("temp-dir")}
}
