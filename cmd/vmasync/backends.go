package main

// Every backend of the rclone version vmasync links, so that any remote of
// the user's rclone.conf works (smb, ftp, onedrive, dropbox, ... as well as
// sftp, s3, b2 and crypt). TestBackendsAll checks the registered types
// against rclone's own list.
import (
	_ "github.com/rclone/rclone/backend/all"
)
