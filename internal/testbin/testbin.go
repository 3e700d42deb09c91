// Package testbin builds the project's commands for the tests that run
// them as processes (the real binary killed, piped or called by a
// script). Its one job: link them once per checkout instead of once per
// test run. The binaries are kept in a directory of the system's
// temporary directory named after the checkout, where go build leaves an
// up-to-date binary alone (half a second instead of four seconds of CPU
// to link vmasync), and every caller gets hard links of its own, so a
// rebuild by a later run never changes a binary under a running test.
package testbin

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"syscall"
)

// Build builds the main packages pkgs (paths from the module root, as
// "./cmd/vmasync") without cgo, as the README, install.sh and CI build
// them, and returns the paths of their binaries in dir, in the order of
// pkgs.
func Build(dir string, pkgs ...string) ([]string, error) {
	root, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(root))
	cache := filepath.Join(os.TempDir(), fmt.Sprintf("vmasync-testbin-%x", sum[:6]))
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return nil, err
	}
	// One build at a time per checkout (go test runs packages, and people
	// run go test, side by side).
	lock, err := os.OpenFile(filepath.Join(cache, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return nil, err
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	cmd := exec.Command(goBin, append([]string{"build", "-o", cache + "/"}, pkgs...)...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build: %v\n%s", err, out)
	}
	var bins []string
	for _, p := range pkgs {
		name := path.Base(p)
		dst := filepath.Join(dir, name)
		if err := linkOrCopy(filepath.Join(cache, name), dst); err != nil {
			return nil, err
		}
		bins = append(bins, dst)
	}
	return bins, nil
}

// moduleRoot is the directory of the go.mod above the working directory
// (a test runs in its package's directory).
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("testbin: no go.mod above the working directory")
		}
		dir = parent
	}
}

func linkOrCopy(src, dst string) error {
	if os.Link(src, dst) == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
