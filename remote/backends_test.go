package remote

// The rclone backends remote's own tests use. The vmasync binary registers
// every backend in package main (cmd/vmasync/backends.go); a library user of
// package remote imports the backends it wants.
import (
	_ "github.com/rclone/rclone/backend/crypt"
	_ "github.com/rclone/rclone/backend/local"
	_ "github.com/rclone/rclone/backend/s3"
	_ "github.com/rclone/rclone/backend/sftp"
)
