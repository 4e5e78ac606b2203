package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// TestEnvironmentDocumented: every environment variable the Go code of
// the repository reads — os.Getenv, os.LookupEnv and the backends'
// getenv, with a string constant or a named constant — is in
// docs/environment.md.
func TestEnvironmentDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/environment.md")
	if err != nil {
		t.Fatal(err)
	}
	consts := map[string][]string{} // constant name → the values constants of that name have
	var calls []ast.Expr            // the variable-name argument of every call
	fset := token.NewFileSet()
	err = filepath.WalkDir("../..", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "node_modules" || d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && p != "../.." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, p, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch x := n.(type) {
			case *ast.ValueSpec:
				for i, name := range x.Names {
					if i < len(x.Values) {
						if lit, ok := x.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
							v, _ := strconv.Unquote(lit.Value)
							consts[name.Name] = append(consts[name.Name], v)
						}
					}
				}
			case *ast.CallExpr:
				if isEnvRead(x) && len(x.Args) == 1 {
					calls = append(calls, x.Args[0])
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	read := map[string]bool{}
	for _, arg := range calls {
		switch a := arg.(type) {
		case *ast.BasicLit:
			v, _ := strconv.Unquote(a.Value)
			read[v] = true
		case *ast.Ident:
			for _, v := range consts[a.Name] {
				read[v] = true
			}
		case *ast.SelectorExpr:
			for _, v := range consts[a.Sel.Name] {
				read[v] = true
			}
		}
	}
	delete(read, "PATH")
	if len(read) < 10 {
		t.Fatalf("found only %v: the scan is broken", read)
	}
	var missing []string
	for v := range read {
		if !strings.Contains(string(doc), "`"+v+"`") {
			missing = append(missing, v)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("docs/environment.md does not describe %s", strings.Join(missing, ", "))
	}
}

// isEnvRead reports whether call reads the process environment:
// os.Getenv, os.LookupEnv, or a backend's getenv (testscript's ts.Getenv
// and env.Getenv read the script's own environment, not the process's).
func isEnvRead(call *ast.CallExpr) bool {
	switch f := call.Fun.(type) {
	case *ast.SelectorExpr:
		pkg, _ := f.X.(*ast.Ident)
		switch {
		case pkg != nil && pkg.Name == "os":
			return f.Sel.Name == "Getenv" || f.Sel.Name == "LookupEnv"
		case f.Sel.Name == "getenv":
			return true
		}
	case *ast.Ident:
		return f.Name == "getenv"
	}
	return false
}
