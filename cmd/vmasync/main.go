// Command vmasync reads, checks, unpacks and packs Proxmox VE vzdump VMA
// backups (vzdump-qemu-<vmid>-<date>.vma[.zst|.gz|.lzo]).
//
// This package only wires the command line to the libraries: every
// command reads its archive through internal/input and writes through
// internal/output; vma is the codec, internal/vmafile its file work,
// remote the repository. See docs/cli.md and docs/architecture.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"

	"github.com/urfave/cli/v2"
)

// version is set with -ldflags "-X main.version=..."; otherwise it comes
// from the build information.
var version = ""

// memoryLimit is the Go heap's soft limit unless GOMEMLIMIT says
// otherwise: push keeps pack buffers, the chunk index and the manifest in
// memory, and the garbage collector's default headroom (GOGC=100) would
// let the process grow to twice what is live.
const memoryLimit = 384 << 20

// cachedMemoryLimit is the soft limit of remote commands whose index is
// in the local cache (configureRepo): their memory does not grow with the
// repository, and the target is a peak RSS of 256 MiB, of which the
// binary's own pages take 60-70 MiB. A push keeps 120-140 MiB live (two
// or three pack buffers, the 32 MiB reorder window, the entries it added),
// which leaves the collector room to work without running constantly.
const cachedMemoryLimit = 160 << 20

func main() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}
	// When the reader of stdout goes away (pull ... - | head), writes fail
	// with EPIPE instead of SIGPIPE killing the process: the command stops
	// as on any error, removes its lock and temporary files, and exits 141.
	signal.Ignore(syscall.SIGPIPE)
	os.Exit(run(os.Args, os.Stdin, os.Stdout, os.Stderr))
}

// Exit codes.
const (
	exitOK          = 0
	exitFailure     = 1 // invalid or corrupt input, operational error
	exitUsage       = 2 // unknown flag or command, wrong arguments
	exitInterrupted = 130
	exitBrokenPipe  = 141 // 128+SIGPIPE, what a shell shows for a process killed by it
	exitTerminated  = 143
)

// env is what the commands of one run share.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	ctx            context.Context
	parsed         func() // the command line is parsed: releases cliSetup
}

// reportedError is returned by a command that has already printed its
// error lines (verify with several files); run only maps it to exit 1.
type reportedError struct{}

func (reportedError) Error() string { return "errors reported" }

// usageError makes a usage error (exit 2). cmd may be empty.
func usageError(cmd, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	help := "vmasync --help"
	if cmd != "" {
		msg = cmd + ": " + msg
		help = "vmasync " + cmd + " --help"
	}
	return cli.Exit(fmt.Sprintf("%s (see '%s')", msg, help), exitUsage)
}

// fileError is an error about one input or output file.
type fileError struct {
	name string
	err  error
}

func (e *fileError) Error() string {
	// "x.vma: open x.vma: no such file" says the name twice.
	if pe, ok := e.err.(*fs.PathError); ok && pe.Path == e.name {
		return e.name + ": " + pe.Err.Error()
	}
	return e.name + ": " + cleanMsg(e.err)
}
func (e *fileError) Unwrap() error { return e.err }

// cleanMsg is the error text without the library's "vma: " prefix (the
// line already starts with "vmasync: ").
func cleanMsg(err error) string {
	return strings.TrimPrefix(err.Error(), "vma: ")
}

// run is main without os.Exit, so that tests can call it in-process.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		// After the first signal, a second one kills the process.
		<-ctx.Done()
		stop()
	}()

	e := &env{stdin: stdin, stdout: stdout, stderr: stderr, ctx: ctx}
	cliSetup.Lock()
	var unlock sync.Once
	e.parsed = func() { unlock.Do(cliSetup.Unlock) }
	defer e.parsed()
	app := newApp(e)
	err := app.RunContext(ctx, args)
	return exitCode(ctx, err, stderr)
}

// cliSetup is held by run from its start until the command's Action
// begins (or until run returns, when no Action runs: help, --version, a
// usage error). urfave/cli v2 writes to package-level state of its own
// while it sets up and parses a command line (the shared help and version
// flags' defaults, the shared help command's names), so two runs in one
// process, as the tests make them in parallel, must not parse at the same
// time; everything else of a run (its app, commands and flags) is new for
// each run.
var cliSetup sync.Mutex

// exitCode prints err (one line) and maps it to the exit code.
func exitCode(ctx context.Context, err error, stderr io.Writer) int {
	if ctx.Err() != nil {
		fmt.Fprintln(stderr, "vmasync: interrupted")
		if strings.Contains(context.Cause(ctx).Error(), "terminated") {
			return exitTerminated
		}
		return exitInterrupted
	}
	if err == nil {
		return exitOK
	}
	if errors.Is(err, reportedError{}) {
		return exitFailure
	}
	if isBrokenPipe(err) {
		fmt.Fprintln(stderr, "vmasync: output closed by its reader (broken pipe)")
		return exitBrokenPipe
	}
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		msg := strings.TrimSpace(ec.Error())
		if msg != "" {
			fmt.Fprintln(stderr, "vmasync: "+oneLine(msg))
		}
		if strings.HasPrefix(msg, "No help topic") {
			return exitUsage // urfave/cli's "vmasync help NOSUCH" uses 3
		}
		return ec.ExitCode()
	}
	fmt.Fprintln(stderr, "vmasync: "+oneLine(cleanMsg(err)))
	return exitFailure
}

// oneLine folds a message onto one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		v := bi.Main.Version
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 && (v == "" || v == "(devel)") {
				v = "devel-" + s.Value[:12]
			}
		}
		if v != "" && v != "(devel)" {
			return v
		}
	}
	return "devel"
}

// onUsageError turns urfave/cli's flag parsing errors into exit code 2.
func onUsageError(cCtx *cli.Context, err error, isSubcommand bool) error {
	name := ""
	if isSubcommand && cCtx.Command != nil {
		name = cCtx.Command.Name
	}
	return usageError(name, "%v", err)
}

// globalFlags are accepted before the command and, for convenience, also
// after it (each call makes new flag values).
func globalFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print only errors: no progress, no \"ok\" lines"},
		&cli.StringFlag{Name: "progress", Value: "auto", Usage: "progress line on stderr: `WHEN` is auto (only if stderr is a terminal), always or never"},
	}
}

func init() {
	// -v is verbose in the commands; the version is --version only.
	cli.VersionFlag = &cli.BoolFlag{Name: "version", Usage: "print the version and exit"}
}

func newApp(e *env) *cli.App {
	commands := []*cli.Command{infoCommand(e), verifyCommand(e), optimizeCommand(e), unpackCommand(e), packCommand(e), reportCommand(e), manifestCommand(e),
		initCommand(e), pushCommand(e), snapshotsCommand(e), pullCommand(e), mountCommand(e), checkCommand(e), pruneCommand(e), repairCommand(e), migrateCommand(e), unlockCommand(e),
		configCommand(e), obscureCommand(e)}
	for _, c := range commands {
		c.OnUsageError = onUsageError
		action := c.Action
		c.Action = func(cCtx *cli.Context) error {
			if e.parsed != nil {
				e.parsed()
			}
			return action(cCtx)
		}
		c.Flags = append(c.Flags, globalFlags()...)
	}
	return &cli.App{
		Name:  "vmasync",
		Usage: "verify, optimize and push Proxmox VE vzdump VMA backups, deduplicated, to any rclone remote",
		UsageText: "vmasync [--quiet] [--progress auto|always|never] COMMAND [options] ARGS...\n" +
			"vmasync COMMAND --help",
		Description:            help("vmasync"),
		Version:                buildVersion(),
		Flags:                  globalFlags(),
		Commands:               commands,
		Reader:                 e.stdin,
		Writer:                 e.stdout,
		ErrWriter:              e.stderr,
		OnUsageError:           onUsageError,
		ExitErrHandler:         func(*cli.Context, error) {},
		UseShortOptionHandling: true,
		Action: func(cCtx *cli.Context) error {
			if cCtx.Args().Present() {
				return usageError("", "unknown command %q", cCtx.Args().First())
			}
			return usageError("", "no command given; commands: push, pull, mount, snapshots, check, prune, unlock, init, info, verify, optimize, unpack, pack, report, manifest, config, obscure")
		},
	}
}

// opts are the global options as seen by one command.
type opts struct {
	quiet    bool
	progress string // auto, always, never
	verbose  bool   // the command's -v, where it has one
}

// globalOpts reads --quiet and --progress, which may be given before or
// after the command name (after wins), and the command's -v, which
// excludes --quiet.
func globalOpts(cCtx *cli.Context) (opts, error) {
	o := opts{progress: "auto"}
	lineage := cCtx.Lineage()
	for i := len(lineage) - 1; i >= 0; i-- { // root first
		c := lineage[i]
		if c.Command == nil {
			continue
		}
		if c.IsSet("quiet") {
			o.quiet = c.Bool("quiet")
		}
		if c.IsSet("progress") {
			o.progress = c.String("progress")
		}
	}
	switch o.progress {
	case "auto", "always", "never":
	default:
		return o, usageError(cCtx.Command.Name, "invalid value %q for --progress (use auto, always or never)", o.progress)
	}
	o.verbose = cCtx.Bool("verbose")
	if o.verbose && o.quiet {
		return o, usageError(cCtx.Command.Name, "-v and --quiet exclude each other")
	}
	return o, nil
}

// optsArgs is the start of every command: the global options, then the
// positional arguments (checkArgs).
func optsArgs(cCtx *cli.Context, min, max int) (opts, []string, error) {
	o, err := globalOpts(cCtx)
	if err != nil {
		return o, nil, err
	}
	args, err := checkArgs(cCtx, min, max)
	return o, args, err
}

// checkArgs checks the number of positional arguments and that none of
// them looks like an option (urfave/cli stops parsing options at the first
// argument, so "FILE -v" would otherwise treat -v as a file name).
func checkArgs(cCtx *cli.Context, min, max int) ([]string, error) {
	a := cCtx.Args().Slice()
	name := cCtx.Command.Name
	for _, s := range a {
		if len(s) > 1 && strings.HasPrefix(s, "-") {
			return nil, usageError(name, "option %s after the arguments: options must come before them (a file named %s can be given as ./%s)", s, s, s)
		}
	}
	switch {
	case len(a) < min:
		return nil, usageError(name, "missing arguments; usage: %s", cCtx.Command.UsageText)
	case max >= 0 && len(a) > max:
		return nil, usageError(name, "too many arguments; usage: %s", cCtx.Command.UsageText)
	}
	return a, nil
}
