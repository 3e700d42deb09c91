package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/rclone/rclone/fs"
	"github.com/rclone/rclone/fs/config"
	"github.com/rclone/rclone/fs/config/configfile"
	"github.com/rclone/rclone/fs/config/obscure"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"
)

// The rclone tools a user needs to write rclone.conf without installing
// rclone: its interactive config editor and obscure.

func configCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:        "config",
		Usage:       "create or edit the remotes of rclone.conf interactively (rclone's own config editor)",
		UsageText:   "vmasync config [--rclone-config FILE]",
		Description: help("config"),
		Flags: []cli.Flag{
			&cli.PathFlag{Name: "rclone-config", EnvVars: []string{"VMASYNC_RCLONE_CONFIG", "RCLONE_CONFIG"}, Usage: "rclone config `FILE` to edit (default: rclone's own search, ~/.config/rclone/rclone.conf)"},
		},
		Action: func(cCtx *cli.Context) (err error) {
			o, err := globalOpts(cCtx)
			if err != nil {
				return err
			}
			if _, err := checkArgs(cCtx, 0, 0); err != nil {
				return err
			}
			// The config file as the remote commands find it (Setup of
			// package remote does the same), without their run settings.
			if p := cCtx.Path("rclone-config"); p != "" {
				if err := config.SetConfigPath(p); err != nil {
					return fmt.Errorf("rclone config %s: %w", p, err)
				}
			}
			configfile.Install()
			fs.SetLogger(&rcloneLog{w: e.stderr, level: slog.Level(fs.SlogLevelNotice)})
			if !o.quiet {
				fmt.Fprintf(e.stderr, "rclone config file: %s\n", config.GetConfigPath())
			}
			restore := readLinesFrom(e.stdin, e.stdout)
			defer restore()
			defer func() {
				if r := recover(); r != nil {
					if r != errInputEnded {
						panic(r)
					}
					err = errors.New("config: standard input ended before quit (q)")
				}
			}()
			return config.EditConfig(e.ctx)
		},
	}
}

var errInputEnded = errors.New("input ended")

// readLinesFrom makes rclone's config editor read its answers from in
// (printing the prompts to out) unless in and stdout are the terminal,
// where rclone's own line editor serves. The end of the input stops the
// editor by a panic of errInputEnded (rclone would exit the process). It
// returns a function that restores rclone's reader.
func readLinesFrom(in io.Reader, out io.Writer) func() {
	old := config.ReadLine
	if f, ok := in.(*os.File); ok && f == os.Stdin && term.IsTerminal(int(f.Fd())) && term.IsTerminal(int(os.Stdout.Fd())) {
		return func() {}
	}
	br := bufio.NewReader(in)
	config.ReadLine = func(prompt string) string {
		fmt.Fprint(out, prompt)
		line, err := br.ReadString('\n')
		if err != nil && line == "" {
			fmt.Fprintln(out)
			panic(errInputEnded)
		}
		if prompt != "" && !strings.HasSuffix(line, "\n") {
			fmt.Fprintln(out)
		}
		return strings.TrimSpace(line)
	}
	return func() { config.ReadLine = old }
}

func obscureCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:        "obscure",
		Usage:       "obscure a password for rclone.conf (as 'rclone obscure')",
		UsageText:   "vmasync obscure [PASSWORD|-]",
		Description: help("obscure"),
		Action: func(cCtx *cli.Context) error {
			if _, err := globalOpts(cCtx); err != nil {
				return err
			}
			args, err := checkArgs(cCtx, 0, 1)
			if err != nil {
				return err
			}
			var pw string
			if len(args) == 1 && args[0] != "-" {
				pw = args[0]
			} else if pw, err = readPassword(e); err != nil {
				return err
			}
			s, err := obscure.Obscure(pw)
			if err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, s)
			return nil
		},
	}
}

// readPassword reads obscure's password: without echo from a terminal,
// else the first line of stdin without its line end.
func readPassword(e *env) (string, error) {
	if f, ok := e.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(e.stderr, "password: ")
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(e.stderr)
		if err != nil {
			return "", fmt.Errorf("reading the password: %w", err)
		}
		return string(b), nil
	}
	line, err := bufio.NewReader(e.stdin).ReadString('\n')
	if err != nil && err != io.EOF {
		return "", fmt.Errorf("reading the password from stdin: %w", err)
	}
	if err == io.EOF && line == "" {
		return "", usageError("obscure", "no password: give it as the argument or on standard input")
	}
	return strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r"), nil
}
