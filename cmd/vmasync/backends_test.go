package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/rclone/rclone/fs"
)

// rcloneBackends reads the backends that rclone's backend/all imports, from
// the source of the rclone module vmasync is built with: the name each one
// registers (fs.RegInfo's Name), by package.
func rcloneBackends(t *testing.T) map[string][]string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	out, err := exec.Command(goBin, "list", "-m", "-f", "{{.Dir}}", "github.com/rclone/rclone").Output()
	if err != nil {
		t.Fatalf("go list -m github.com/rclone/rclone: %v", err)
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		t.Fatal("go list -m github.com/rclone/rclone: no module directory (run go mod download)")
	}
	fset := token.NewFileSet()
	all, err := parser.ParseFile(fset, filepath.Join(dir, "backend", "all", "all.go"), nil, parser.ImportsOnly)
	if err != nil {
		t.Fatal(err)
	}
	const prefix = "github.com/rclone/rclone/backend/"
	names := map[string][]string{}
	for _, imp := range all.Imports {
		p, _ := strconv.Unquote(imp.Path.Value)
		pkg, ok := strings.CutPrefix(p, prefix)
		if !ok {
			continue
		}
		names[pkg] = registeredNames(t, fset, filepath.Join(dir, "backend", pkg))
		if len(names[pkg]) == 0 {
			t.Errorf("backend/%s: found no fs.RegInfo name in its source", pkg)
		}
	}
	if len(names) < 40 {
		t.Fatalf("backend/all imports only %d backends; the parse is broken", len(names))
	}
	return names
}

// registeredNames finds the Name fields of the fs.RegInfo literals of the
// package in dir (a string literal or a string constant of the package).
func registeredNames(t *testing.T, fset *token.FileSet, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	consts := map[string]string{}
	var exprs []ast.Expr
	for _, e := range ents {
		n := e.Name()
		if !strings.HasSuffix(n, ".go") || strings.HasSuffix(n, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, n), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.ValueSpec:
				for i, id := range n.Names {
					if i < len(n.Values) {
						if bl, ok := n.Values[i].(*ast.BasicLit); ok && bl.Kind == token.STRING {
							consts[id.Name], _ = strconv.Unquote(bl.Value)
						}
					}
				}
			case *ast.CompositeLit:
				sel, ok := n.Type.(*ast.SelectorExpr)
				if !ok || sel.Sel.Name != "RegInfo" {
					return true
				}
				for _, el := range n.Elts {
					if kv, ok := el.(*ast.KeyValueExpr); ok {
						if k, ok := kv.Key.(*ast.Ident); ok && k.Name == "Name" {
							exprs = append(exprs, kv.Value)
						}
					}
				}
			}
			return true
		})
	}
	var names []string
	for _, x := range exprs {
		switch x := x.(type) {
		case *ast.BasicLit:
			s, _ := strconv.Unquote(x.Value)
			names = append(names, s)
		case *ast.Ident:
			if s, ok := consts[x.Name]; ok {
				names = append(names, s)
			}
		}
	}
	return names
}

// TestBackendsAll: every backend of the rclone version vmasync links is
// registered (cmd/vmasync/backends.go), so any remote of a user's
// rclone.conf works.
func TestBackendsAll(t *testing.T) {
	registered := map[string]bool{}
	for _, ri := range fs.Registry {
		registered[ri.Name] = true
	}
	want := rcloneBackends(t)
	n := 0
	for pkg, names := range want {
		for _, name := range names {
			n++
			if !registered[name] {
				t.Errorf("rclone backend %q (backend/%s) is not registered in vmasync", name, pkg)
			}
		}
	}
	// The backends beyond the nine vmasync had before, that users asked for.
	for _, name := range []string{"smb", "ftp", "onedrive", "dropbox", "pcloud", "mega", "hidrive", "koofr", "sharefile", "storj", "sftp", "s3", "crypt", "local"} {
		if !registered[name] {
			t.Errorf("backend %q is not registered", name)
		}
	}
	var regs []string
	for name := range registered {
		regs = append(regs, name)
	}
	slices.Sort(regs)
	t.Logf("%d backends registered (%d names in rclone's backend/all): %s", len(regs), n, strings.Join(regs, " "))
}

// TestB2HardDeleteDefault: after the rclone set-up, a B2 remote deletes
// for real unless its section says otherwise, so that prune frees space.
func TestB2HardDeleteDefault(t *testing.T) {
	if r := runCLI(t, nil, "snapshots", "--rclone-config", os.DevNull, t.TempDir()); r.code == 0 {
		t.Fatalf("snapshots of an empty directory: %v", r)
	}
	ri, err := fs.Find("b2")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range ri.Options {
		if o.Name == "hard_delete" && o.Default != true {
			t.Fatalf("b2 hard_delete default = %v", o.Default)
		}
	}
}
