package remote

// The rclone backends vmasync is built with (ecosystem reference §8.2):
// the ones Proxmox admins use for offsite copies, plus crypt for
// client-side encryption. Add a blank import here to support another.
import (
	_ "github.com/rclone/rclone/backend/azureblob"
	_ "github.com/rclone/rclone/backend/b2"
	_ "github.com/rclone/rclone/backend/crypt"
	_ "github.com/rclone/rclone/backend/drive"
	_ "github.com/rclone/rclone/backend/local"
	_ "github.com/rclone/rclone/backend/s3"
	_ "github.com/rclone/rclone/backend/sftp"
	_ "github.com/rclone/rclone/backend/swift"
	_ "github.com/rclone/rclone/backend/webdav"
)
