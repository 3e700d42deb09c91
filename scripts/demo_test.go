package scripts_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDemoRefusesForeignDir: demo.sh deletes DEMO_DIR only when an earlier
// demo made it (its marker file); any other existing directory, or a
// symlink, is refused before anything is built or written.
func TestDemoRefusesForeignDir(t *testing.T) {
	t.Parallel()
	mine := t.TempDir()
	keep := filepath.Join(mine, "important")
	if err := os.WriteFile(keep, []byte("not the demo's"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(mine, link); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{mine, link} {
		cmd := exec.Command("bash", "demo.sh")
		cmd.Env = append(os.Environ(), "DEMO_DIR="+dir)
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "refusing to delete it") {
			t.Fatalf("DEMO_DIR=%s: %v\n%s", dir, err, out)
		}
		if strings.Contains(string(out), "building") {
			t.Errorf("DEMO_DIR=%s: built before refusing:\n%s", dir, out)
		}
		if b, err := os.ReadFile(keep); err != nil || string(b) != "not the demo's" {
			t.Fatalf("DEMO_DIR=%s: the directory's file is gone or changed: %v", dir, err)
		}
	}
}
