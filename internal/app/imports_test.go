package app

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/fhirgate/fhirgate"

// pkgInfo is the part of `go list -json` the import rules need.
type pkgInfo struct {
	ImportPath string
	Dir        string
	GoFiles    []string
	Imports    []string
	Deps       []string
}

func goList(t *testing.T) []pkgInfo {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not found; import rules not checked")
	}
	cmd := exec.Command(gobin, "list", "-deps=false", "-json", module+"/...")
	cmd.Dir = "../.."
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("go list: %v\n%s", err, errb.String())
	}
	var pkgs []pkgInfo
	dec := json.NewDecoder(&out)
	for dec.More() {
		var p pkgInfo
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 10 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	return pkgs
}

func rel(p string) string { return strings.TrimPrefix(strings.TrimPrefix(p, module), "/") }

// TestImportRules checks DESIGN.md "Import rules" on non-test code with go list.
func TestImportRules(t *testing.T) {
	pkgs := goList(t)
	vocabulary := map[string]bool{"internal/oauth": true, "internal/scope": true, "internal/fhir": true}
	adapters := []string{"internal/storage/sqlite", "internal/storage/postgres", "internal/replay/redis", "internal/ratelimit/redis", "internal/anomaly/redis"}
	// Packages allowed to import net/http outside http*.go files: the ones
	// DESIGN.md names (httpx, gateway), the composition root, the TLS
	// middleware, and outbound HTTP clients whose whole job is HTTP.
	httpPackages := map[string]bool{"internal/httpx": true, "internal/gateway": true, "internal/app": true,
		"internal/tlsconfig": true, "internal/jwksfetch": true, "cmd/fhirgate": true,
		// The remote-issuer key fetcher (an outbound client) and the demo
		// SMART app (a small web app whose every file is HTTP).
		"internal/jwtverify": true, "internal/demoapp": true}

	for _, p := range pkgs {
		name := rel(p.ImportPath)
		ours := func(deps []string) []string {
			var o []string
			for _, d := range deps {
				if strings.HasPrefix(d, module+"/") || strings.Contains(strings.SplitN(d, "/", 2)[0], ".") {
					o = append(o, d)
				}
			}
			return o
		}
		// Vocabulary packages import only the standard library.
		if vocabulary[name] {
			if nonStd := ours(p.Deps); len(nonStd) > 0 {
				t.Errorf("%s is vocabulary but depends on %v", name, nonStd)
			}
		}
		isRoot := name == "internal/app" || strings.HasPrefix(name, "cmd/")
		// Only app and cmd import config.
		if !isRoot && name != "internal/config" {
			for _, d := range p.Deps {
				if d == module+"/internal/config" {
					t.Errorf("%s imports internal/config; only app and cmd may", name)
				}
			}
		}
		// Features never import an adapter (tests excepted: go list Deps
		// covers non-test files only; storagetest/backends is a helper that
		// only _test.go files import, to run feature tests on every backend).
		if !isRoot && name != "internal/storage/storagetest/backends" {
			for _, d := range p.Deps {
				for _, a := range adapters {
					if d == module+"/"+a && name != a {
						t.Errorf("%s depends on adapter %s; only app and tests may", name, a)
					}
				}
			}
		}
		// net/http stays in http*.go files (and a few edge packages).
		if !httpPackages[name] {
			for _, f := range p.GoFiles {
				base := strings.TrimSuffix(path.Base(f), ".go")
				if base == "http" || strings.HasPrefix(base, "http_") {
					continue
				}
				if fileImports(t, filepath.Join(p.Dir, f), "net/http") {
					t.Errorf("%s/%s imports net/http outside an http.go file", name, f)
				}
			}
		}
	}
}

// fileImports reports whether the Go file imports pkg.
func fileImports(t *testing.T, file, pkg string) bool {
	t.Helper()
	f, err := parseImports(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, imp := range f {
		if imp == pkg {
			return true
		}
	}
	return false
}
