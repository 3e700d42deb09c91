package rclonebe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/rclone/rclone/fs"
	"github.com/rclone/rclone/fs/accounting"
	"github.com/rclone/rclone/fs/config"
	"github.com/rclone/rclone/fs/config/configfile"
	"github.com/rclone/rclone/fs/config/configmap"
	"github.com/rclone/rclone/fs/config/configstruct"
)

// Settings are the rclone settings of one vmasync run.
type Settings struct {
	// ConfigPath is the rclone.conf to read remotes from; "" uses rclone's
	// default search (~/.config/rclone/rclone.conf, ...).
	ConfigPath string
	// Transfers is how many objects are uploaded at once (0: rclone's 4).
	Transfers int
	// BwLimit is rclone's --bwlimit value, timetables included ("" none).
	BwLimit string
	// LowLevelRetries is rclone's per-request retry count (0: rclone's 10).
	LowLevelRetries int
	// Options are further rclone global options by name
	// (e.g. "contimeout" = "10s"); an unknown name is an error. They
	// override the fields above.
	Options map[string]string
	// Logger receives rclone's log records (nil: only errors, on stderr
	// through slog's default logger). Verbose raises rclone's level to INFO.
	Logger  slog.Handler
	Verbose bool
}

var setupOnce struct {
	sync.Mutex
	done bool
}

// Setup initialises rclone for this process (config file, environment
// variables RCLONE_*, logging, bandwidth limiter) and returns a context
// carrying the run's rclone settings. Call it once, before Open.
func Setup(ctx context.Context, s Settings) (context.Context, error) {
	setupOnce.Lock()
	defer setupOnce.Unlock()
	if !setupOnce.done {
		if err := fs.GlobalOptionsInit(); err != nil {
			return nil, fmt.Errorf("rclone options: %w", err)
		}
		setupOnce.done = true
	}
	b2HardDelete()
	if s.ConfigPath != "" {
		if err := config.SetConfigPath(s.ConfigPath); err != nil {
			return nil, fmt.Errorf("rclone config %s: %w", s.ConfigPath, err)
		}
	}
	configfile.Install()
	if s.Logger != nil {
		fs.SetLogger(s.Logger)
	}

	ctx, ci := fs.AddConfig(ctx)
	set := configmap.Simple{}
	if s.Transfers > 0 {
		set["transfers"] = fmt.Sprint(s.Transfers)
	}
	if s.BwLimit != "" {
		set["bwlimit"] = s.BwLimit
	}
	if s.LowLevelRetries > 0 {
		set["low_level_retries"] = fmt.Sprint(s.LowLevelRetries)
	}
	for k, v := range s.Options { // by name, after the typed settings: they win
		if fs.ConfigOptionsInfo.Get(k) == nil {
			return nil, fmt.Errorf("unknown rclone option %q", k)
		}
		set[k] = v
	}
	if err := configstruct.Set(set, ci); err != nil {
		return nil, fmt.Errorf("rclone options: %w", err)
	}
	if s.Verbose && ci.LogLevel < fs.LogLevelInfo {
		ci.LogLevel = fs.LogLevelInfo
	}
	accounting.Start(ctx)
	return ctx, nil
}

// NewFs opens the rclone remote s: a remote of the config file
// ("name:path"), a connection string (":sftp,host=...:path") or a local
// path. The directory need not exist yet.
func NewFs(ctx context.Context, s string) (fs.Fs, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("empty remote")
	}
	f, err := fs.NewFs(ctx, s)
	if errors.Is(err, fs.ErrorIsFile) {
		return nil, fmt.Errorf("remote %s: is a file, not a directory", s)
	}
	if err != nil {
		return nil, fmt.Errorf("remote %s: %w", s, err)
	}
	return f, nil
}

// b2HardDelete makes hard_delete the default of B2 remotes: B2's Remove
// only hides a file otherwise, so prune would free nothing until the
// bucket's lifecycle rules remove the old versions. As a default, it
// gives way to hard_delete in rclone.conf, a connection string, or
// RCLONE_B2_HARD_DELETE.
func b2HardDelete() {
	ri, err := fs.Find("b2")
	if err != nil {
		return // not built in
	}
	for i := range ri.Options {
		if ri.Options[i].Name == "hard_delete" {
			ri.Options[i].Default = true
		}
	}
}
