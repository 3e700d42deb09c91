package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// referencePath is the command reference generated from the CLI
// definitions. VMASYNC_UPDATE_DOCS=1 go test -run TestReference rewrites it.
const referencePath = "../../docs/reference.md"

// reference renders every command's help text as markdown.
func reference() string {
	var b strings.Builder
	b.WriteString("# vmasync command reference\n\n")
	b.WriteString("Generated from the CLI definitions by `VMASYNC_UPDATE_DOCS=1 go test ./cmd/vmasync -run TestReference`;\n")
	b.WriteString("a test fails when it differs from `vmasync COMMAND --help`. The guide is docs/guide.md,\n")
	b.WriteString("the hand-written details are in docs/cli.md.\n\n")
	help := func(args ...string) string {
		var out, errb bytes.Buffer
		run(append([]string{"vmasync"}, args...), strings.NewReader(""), &out, &errb)
		return out.String()
	}
	b.WriteString("## vmasync\n\n```\n" + help("--help") + "```\n\n")
	app := newApp(&env{})
	for _, c := range app.Commands {
		if c.Hidden || c.Name == "help" {
			continue
		}
		b.WriteString("## vmasync " + c.Name + "\n\n```\n" + help(c.Name, "--help") + "```\n\n")
	}
	return b.String()
}

func TestReferenceUpToDate(t *testing.T) {
	update := os.Getenv("VMASYNC_UPDATE_DOCS") == "1"
	// Flags show the values of their environment variables as defaults:
	// render without them.
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "VMASYNC_") || strings.HasPrefix(k, "RCLONE_") {
			os.Unsetenv(k)
			t.Cleanup(func() { os.Setenv(k, v) })
		}
	}
	got := reference()
	if update {
		if err := os.WriteFile(referencePath, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(referencePath)
	if err != nil {
		t.Fatal(err)
	}
	if string(want) != got {
		t.Fatal("docs/reference.md is not what the CLI says; regenerate it: VMASYNC_UPDATE_DOCS=1 go test ./cmd/vmasync -run TestReference")
	}
	for _, c := range []string{"push", "pull", "prune", "check", "snapshots", "optimize", "verify"} {
		if !strings.Contains(got, "## vmasync "+c+"\n") {
			t.Errorf("reference lacks %s", c)
		}
	}
}
