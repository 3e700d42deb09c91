package chunkplan

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/restic/chunker"
	"github.com/vmasync/vmasync/internal/restictest"
)

// restic runs the restic binary against the repository in dir.
func restic(ctx context.Context, t *testing.T, dir string, stdin []byte, args ...string) []byte {
	t.Helper()
	cmd := exec.CommandContext(ctx, "restic", args...)
	cmd.Env = append(os.Environ(),
		"RESTIC_REPOSITORY="+filepath.Join(dir, "repo"),
		"RESTIC_PASSWORD=chunkplan-test",
		"RESTIC_CACHE_DIR="+filepath.Join(dir, "cache"),
	)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("restic %v: %v\n%s", args, err, stderr.Bytes())
	}
	return out
}

// resticBackup backs data up from stdin and returns the summary's
// data_added and data_blobs.
func resticBackup(ctx context.Context, t *testing.T, dir string, data []byte) (added uint64, blobs int) {
	t.Helper()
	out := restic(ctx, t, dir, data, "backup", "--compression", "off", "--stdin", "--stdin-filename", "x.vma", "--json")
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line struct {
			MessageType string  `json:"message_type"`
			DataAdded   *uint64 `json:"data_added"`
			DataBlobs   int     `json:"data_blobs"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.MessageType == "summary" {
			if line.DataAdded == nil {
				t.Fatalf("summary without data_added: %s", sc.Bytes())
			}
			return *line.DataAdded, line.DataBlobs
		}
	}
	t.Fatalf("no summary line in restic output:\n%s", out)
	return 0, 0
}

// TestPredictsRestic checks that Compare's NewBytes, computed with the
// repository's polynomial and ResticParams, predicts what restic 0.14
// really stores.
func TestPredictsRestic(t *testing.T) {
	t.Parallel() // mostly waiting for restic
	if _, err := exec.LookPath("restic"); err != nil {
		t.Fatalf("restic binary not found (%v): apt-get install restic", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()

	// A new repository as restic init makes one, with a key that is cheap
	// to derive (restic init spends 3 s calibrating scrypt, and every
	// later command half a second on the key).
	if _, err := restictest.Init(filepath.Join(dir, "repo"), "chunkplan-test"); err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Pol *chunker.Pol `json:"chunker_polynomial"`
	}
	out := restic(ctx, t, dir, nil, "cat", "config")
	if err := json.Unmarshal(out, &cfg); err != nil || cfg.Pol == nil {
		t.Fatalf("restic cat config: %v\n%s", err, out)
	}
	p := ResticParams(*cfg.Pol)
	if err := p.Validate(); err != nil {
		t.Fatalf("repository polynomial: %v", err)
	}

	// A: 24 MiB random. B: A with four 64 KiB regions rewritten and 7
	// bytes inserted.
	a := randomBytes(42, 24<<20)
	b := bytes.Clone(a)
	for i, off := range []int{3 << 20, 9<<20 + 4096, 15 << 20, 20 << 20} {
		copy(b[off:], randomBytes(uint64(100+i), 64<<10))
	}
	ins := 12<<20 + 777
	b = append(b[:ins:ins], append([]byte("INSERT!"), b[ins:]...)...)

	ma, err := Build(bytes.NewReader(a), p)
	if err != nil {
		t.Fatal(err)
	}
	mb, err := Build(bytes.NewReader(b), p)
	if err != nil {
		t.Fatal(err)
	}
	predA := Compare(nil, ma)
	predB := Compare(ma, mb)

	addedA, blobsA := resticBackup(ctx, t, dir, a)
	addedB, blobsB := resticBackup(ctx, t, dir, b)

	check := func(name string, added, predicted uint64, chunks, blobs int) {
		slack := predicted/100 + 64<<10
		t.Logf("%s: restic data_added %d, predicted NewBytes %d (%d new chunks), overhead %d bytes",
			name, added, predicted, chunks, int64(added)-int64(predicted))
		if added < predicted || added > predicted+slack {
			t.Errorf("%s: restic data_added %d outside [%d, %d]", name, added, predicted, predicted+slack)
		}
		if blobs != chunks {
			t.Errorf("%s: restic added %d data blobs, predicted %d new chunks", name, blobs, chunks)
		}
	}
	check("A", addedA, predA.NewBytes, predA.NewChunks, blobsA)
	check("B", addedB, predB.NewBytes, predB.NewChunks, blobsB)
	if predB.NewBytes == 0 || predB.SharedBytes == 0 {
		t.Errorf("test data gives no meaningful overlap: %+v", predB)
	}
	t.Logf("polynomial %s; B: %d of %d chunks new, %.1f%% of bytes", fmt.Sprint(*cfg.Pol), predB.NewChunks, predB.TotalChunks, 100*predB.NewRatio())
}
