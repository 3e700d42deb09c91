package main

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestBinaryStatic: the binary is built without cgo, so it is static and
// runs on any Linux (a Proxmox host of any version) without a matching libc.
func TestBinaryStatic(t *testing.T) {
	t.Parallel()
	bin := builtBinary(t)
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	out, err := exec.Command(goBin, "version", "-m", bin).CombinedOutput()
	if err != nil {
		t.Fatalf("go version -m: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "CGO_ENABLED=0") {
		t.Errorf("not built with CGO_ENABLED=0:\n%s", out)
	}
	if _, err := exec.LookPath("file"); err != nil {
		t.Log("file(1) not installed; checked the build settings only")
		return
	}
	out, err = exec.Command("file", "-L", bin).CombinedOutput()
	if err != nil {
		t.Fatalf("file: %v\n%s", err, out)
	}
	if runtime.GOOS == "linux" && !strings.Contains(string(out), "statically linked") {
		t.Errorf("the binary is not statically linked: %s", out)
	}
}
