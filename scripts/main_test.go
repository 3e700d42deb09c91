package scripts

import (
	"os"
	"testing"

	"github.com/vmasync/vmasync/internal/testpar"
)

// TestMain gives the vmasync runs of these tests an index cache
// directory of their own instead of ~/.cache/vmasync.
func TestMain(m *testing.M) {
	testpar.Waiting() // the tests wait on the scripts they run
	cache, err := os.MkdirTemp("", "vmasync-cache-")
	if err != nil {
		panic(err)
	}
	os.Setenv("VMASYNC_CACHE_DIR", cache)
	code := m.Run()
	os.RemoveAll(cache)
	os.Exit(code)
}
