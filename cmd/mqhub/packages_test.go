package main

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// repoRoot is the repository's top directory, seen from this package.
const repoRoot = "../.."

// goPackages returns the directories of the repository holding non-test Go
// files, relative to the root.
func goPackages(t *testing.T) []string {
	t.Helper()
	seen := map[string]bool{}
	err := filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") && path != repoRoot {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go") {
			rel, _ := filepath.Rel(repoRoot, filepath.Dir(path))
			seen[rel] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for d := range seen {
		dirs = append(dirs, d)
	}
	return dirs
}

// TestEveryPackageHasADocComment: a newcomer reads a package's doc comment
// first; every package has one.
func TestEveryPackageHasADocComment(t *testing.T) {
	for _, dir := range goPackages(t) {
		pkgs, err := parser.ParseDir(token.NewFileSet(), filepath.Join(repoRoot, dir), func(fi fs.FileInfo) bool {
			return !strings.HasSuffix(fi.Name(), "_test.go")
		}, parser.ParseComments|parser.PackageClauseOnly)
		if err != nil {
			t.Fatal(err)
		}
		for name, pkg := range pkgs {
			documented := false
			for _, f := range pkg.Files {
				documented = documented || f.Doc != nil
			}
			if !documented {
				t.Errorf("package %s in %s has no doc comment", name, dir)
			}
		}
	}
}

// TestClientsImportNoServerPackage: clients/ (the SDK, when it exists)
// speaks MQTT and imports none of the hub's packages, so that it can
// become a module of its own.
func TestClientsImportNoServerPackage(t *testing.T) {
	root := filepath.Join(repoRoot, "clients")
	if _, err := os.Stat(root); os.IsNotExist(err) {
		return // nothing to check yet
	}
	server := []string{"broker", "hooks", "storage", "bridge", "cmd", "internal/crashtest"}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") {
			return err
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			for _, s := range server {
				if p == "github.com/mqhub/mqhub/"+s || strings.HasPrefix(p, "github.com/mqhub/mqhub/"+s+"/") {
					t.Errorf("%s imports %s, a server package", path, p)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
