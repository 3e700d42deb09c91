package main

import (
	"errors"
	"slices"
	"strings"

	"github.com/rclone/rclone/fs"
	"github.com/rclone/rclone/fs/fspath"
)

// maskRemote is the remote s as vmasync shows it: a connection string's
// passwords, secrets, tokens and key files as *** (the backend's password
// options, and any option whose name says so; host and user are shown),
// e.g. ":sftp,host=x,pass=***,key_file=***:path". A remote of rclone.conf
// without options and a local path are shown unchanged.
func maskRemote(s string) string {
	p, err := fspath.Parse(s)
	if err != nil || len(p.Config) == 0 {
		return s
	}
	var ri *fs.RegInfo
	if name, ok := strings.CutPrefix(p.Name, ":"); ok {
		ri, _ = fs.Find(name)
	}
	keys := make([]string, 0, len(p.Config))
	for k := range p.Config {
		keys = append(keys, k)
	}
	// In the order they were given.
	pos := func(k string) int {
		if i := strings.Index(p.ConfigString, ","+k+"="); i >= 0 {
			return i
		}
		return len(p.ConfigString)
	}
	slices.SortStableFunc(keys, func(a, b string) int { return pos(a) - pos(b) })
	var b strings.Builder
	b.WriteString(p.Name)
	for _, k := range keys {
		v := p.Config[k]
		if secretOption(ri, k, v) {
			v = "***"
		} else if strings.ContainsAny(v, ",:'\"") {
			v = "'" + strings.ReplaceAll(v, "'", "''") + "'"
		}
		b.WriteString("," + k + "=" + v)
	}
	b.WriteString(":" + p.Path)
	return b.String()
}

// secretOption says whether option k (value v) of backend ri (nil: not
// known) is to be masked.
func secretOption(ri *fs.RegInfo, k, v string) bool {
	if v == "" || v == "true" || v == "false" {
		return false
	}
	if ri != nil {
		for _, o := range ri.Options {
			if o.Name == k && o.IsPassword {
				return true
			}
		}
	}
	k = strings.ToLower(strings.ReplaceAll(k, "-", "_"))
	if k == "known_hosts_file" {
		return false
	}
	for _, w := range []string{"pass", "secret", "token", "key", "credential", "sas_url"} {
		if strings.Contains(k, w) {
			return true
		}
	}
	return strings.HasSuffix(k, "_file")
}

// maskedError is err with the remote s shown masked in its text.
type maskedError struct {
	err  error
	s, m string
}

func (e *maskedError) Error() string { return strings.ReplaceAll(e.err.Error(), e.s, e.m) }
func (e *maskedError) Unwrap() error { return e.err }

// maskErr masks the remote s in err's text.
func maskErr(err error, s string) error {
	m := maskRemote(s)
	if err == nil || m == s {
		return err
	}
	var ec interface{ ExitCode() int }
	if errors.As(err, &ec) {
		return err // a usage error: about the options, not the remote
	}
	return &maskedError{err, s, m}
}
