package remote

import (
	"os"
	"testing"

	"github.com/vmasync/vmasync/internal/testpar"
)

// The parallel tests here wait much of their time: on rclone's SFTP, S3
// and FTP servers and OpenSSH's sshd, on the binary's processes
// (TestConcurrentPushes), on lock back-offs (TestLockLostStopsCommand).
func TestMain(m *testing.M) {
	testpar.Waiting()
	os.Exit(m.Run())
}
