package scripts

import (
	"os"
	"testing"
)

// TestMain gives the vmasync runs of these tests an index cache
// directory of their own instead of ~/.cache/vmasync.
func TestMain(m *testing.M) {
	cache, err := os.MkdirTemp("", "vmasync-cache-")
	if err != nil {
		panic(err)
	}
	os.Setenv("VMASYNC_CACHE_DIR", cache)
	code := m.Run()
	os.RemoveAll(cache)
	os.Exit(code)
}
