package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vmasync/vmasync/internal/testbin"
	"github.com/vmasync/vmasync/internal/testpar"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
	binDir  string
)

func TestMain(m *testing.M) {
	// The parallel tests here mostly wait, on the processes they start
	// and kill (TestKillAnywhere, TestPushKilled), on restic and on the
	// SFTP server: with go test's default, TestKillAnywhere waited 11 s
	// for a slot to start.
	set := testpar.Waiting()
	// A run of the whole package starts building the binary now, beside
	// the first (in-process, serial) tests, instead of in the first test
	// that runs it: linking it takes seconds of CPU after a change to the
	// sources. A run of chosen tests (-run) builds it only if one needs it.
	early := !set["test.run"]
	if early {
		go builtBinaryErr()
	}
	// The index caches of the tests' repositories (in-process runs and
	// the binary's) go into one directory of their own, not ~/.cache.
	cache, err := os.MkdirTemp("", "vmasync-cache-")
	if err != nil {
		panic(err)
	}
	os.Setenv("VMASYNC_CACHE_DIR", cache)
	code := m.Run()
	if early {
		builtBinaryErr() // the build may still be going on (-list, a panic)
	}
	os.RemoveAll(cache)
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// builtBinary builds vmasync once per test run (a link only when its
// sources changed: internal/testbin).
func builtBinary(t *testing.T) string {
	t.Helper()
	if err := builtBinaryErr(); err != nil {
		t.Fatal(err)
	}
	return binPath
}

// builtBinaryErr builds the binary once (builtBinary's work, for TestMain
// too).
func builtBinaryErr() error {
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "vmasync-bin-")
		if binErr != nil {
			return
		}
		var bins []string
		bins, binErr = testbin.Build(binDir, "./cmd/vmasync")
		if binErr == nil {
			binPath = bins[0]
		}
	})
	return binErr
}

// exe runs the built binary with stdin (nil: none) and returns the result.
func exe(t *testing.T, stdin io.Reader, args ...string) result {
	t.Helper()
	r, err := exeErr(builtBinary(t), stdin, args...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// exeErr runs the binary bin as exe does, returning an error instead of
// failing the test (for goroutines other than the test's).
func exeErr(bin string, stdin io.Reader, args ...string) (result, error) {
	cmd := exec.Command(bin, args...)
	cmd.Stdin = stdin
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return result{}, err
	}
	return result{cmd.ProcessState.ExitCode(), out.String(), errb.String()}, nil
}

func TestBinaryExitCodes(t *testing.T) {
	t.Parallel()
	s := needReal(t)
	archive, _ := packed(t)
	data, _ := os.ReadFile(archive)
	bad := filepath.Join(t.TempDir(), "bad.vma")
	corrupt := bytes.Clone(data)
	corrupt[40] ^= 1
	os.WriteFile(bad, corrupt, 0o644)

	for _, c := range []struct {
		args []string
		code int
		out  string // expected in stdout
		err  string // expected in the one stderr line
	}{
		{[]string{"--version"}, 0, "vmasync version ", ""},
		{[]string{"verify", archive}, 0, archive + ": ok", ""},
		{[]string{"verify", s}, 1, "", "missing cluster 23"},
		{[]string{"verify", "--proxmox", s}, 0, "completeness not checked", ""},
		{[]string{"verify", bad}, 1, "", "byte offset"},
		{[]string{}, 2, "", "no command"},
		{[]string{"frobnicate"}, 2, "", "unknown command"},
		{[]string{"verify", "--frob", archive}, 2, "", "flag provided but not defined"},
		{[]string{"unpack", archive}, 2, "", "missing arguments"},
	} {
		r := exe(t, nil, c.args...)
		if r.code != c.code || !strings.Contains(r.stdout, c.out) {
			t.Errorf("%q: want exit %d and %q in stdout, got %v", c.args, c.code, c.out, r)
			continue
		}
		if c.code != 0 {
			wantOneErrorLine(t, r, c.err)
		} else if r.stderr != "" {
			t.Errorf("%q: stderr %q", c.args, r.stderr)
		}
	}
}

// TestBinaryStdin pipes archives into the binary (a real pipe, not a file).
func TestBinaryStdin(t *testing.T) {
	t.Parallel()
	archive, images := packed(t)
	data, _ := os.ReadFile(archive)
	pipe := func(b []byte) io.Reader {
		pr, pw := io.Pipe()
		go func() { pw.Write(b); pw.Close() }()
		return pr
	}
	if r := exe(t, pipe(data), "verify", "-"); r.code != 0 || r.stdout != "stdin: ok\n" {
		t.Fatalf("verify -: %v", r)
	}
	out := filepath.Join(t.TempDir(), "u")
	if r := exe(t, pipe(data), "unpack", "-", out); r.code != 0 || r.stdout != "" {
		t.Fatalf("unpack -: %v", r)
	}
	sameFiles(t, images, out)

	gz, _ := os.ReadFile(needReal(t))
	r := exe(t, pipe(gz), "verify", "-")
	if r.code != 1 {
		t.Fatalf("verify - of the real sample: %v", r)
	}
	wantOneErrorLine(t, r, "stdin: ", "missing cluster 23", "drive-scsi0")
	if r := exe(t, pipe(gz), "info", "--json", "-"); r.code != 0 || !strings.Contains(r.stdout, `"first_missing_cluster": 23`) {
		t.Fatalf("info -: %v", r)
	}

	// pack to stdout, piped into verify.
	packOut := exe(t, nil, "pack", images, "-")
	if packOut.code != 0 {
		t.Fatalf("pack -: %v", packOut)
	}
	if r := exe(t, pipe([]byte(packOut.stdout)), "verify", "-"); r.code != 0 {
		t.Fatalf("verify of pack -: %v", r)
	}
}

// TestBinaryInterrupt sends SIGINT while verify waits for more input on a
// pipe: exit 130, one line.
func TestBinaryInterrupt(t *testing.T) {
	t.Parallel()
	archive, _ := packed(t)
	data, _ := os.ReadFile(archive)
	cmd := exec.Command(builtBinary(t), "verify", "-")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// More than a pipe buffer: when Write returns, the process is reading
	// (and so has its signal handler).
	if _, err := stdin.Write(data[:600000]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatal("vmasync did not stop on SIGINT")
	}
	stdin.Close()
	if code := cmd.ProcessState.ExitCode(); code != 130 {
		t.Fatalf("exit %d after SIGINT, stderr %q", code, errb.String())
	}
	if errb.String() != "vmasync: interrupted\n" {
		t.Errorf("stderr %q", errb.String())
	}
}

// A reader that closes the pipe (pull ... - | head -c 1) ends vmasync with
// exit 141 and one line, not SIGPIPE; the lock is removed.
func TestBinaryBrokenPipe(t *testing.T) {
	rem, _ := pushedRemote(t)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	pr.Close() // the reader is gone before the first write
	cmd := exec.Command(builtBinary(t), "pull", rem, "105", "-")
	cmd.Stdout = pw
	var errb bytes.Buffer
	cmd.Stderr = &errb
	err = cmd.Run()
	pw.Close()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	if code := cmd.ProcessState.ExitCode(); code != exitBrokenPipe || !strings.Contains(errb.String(), "broken pipe") {
		t.Errorf("exit %d (%v), stderr %q; want %d and a broken pipe line", code, cmd.ProcessState, errb.String(), exitBrokenPipe)
	}
	if l := lockFiles(t, rem); len(l) != 0 {
		t.Errorf("locks left: %v", l)
	}
}
