// Package scripts holds no Go code: it is the home of the tests of the
// shell scripts and systemd units in this directory (vzdump-hook,
// vmasync-nightly, install.sh, systemd/), so that `go test ./...` runs them.
package scripts
