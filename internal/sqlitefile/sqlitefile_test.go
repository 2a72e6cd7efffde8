package sqlitefile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestCreate(t *testing.T) {
	p := filepath.Join(t.TempDir(), "new dir", "x.db")
	abs, err := Create(p)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(abs)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("file %v %v", fi, err)
	}
	if di, err := os.Stat(filepath.Dir(abs)); err != nil || di.Mode().Perm() != 0o700 {
		t.Fatalf("directory %v %v", di, err)
	}
	if _, err := Create(""); err == nil {
		t.Fatal("empty path accepted")
	}
	if _, err := Create(t.TempDir()); err == nil {
		t.Fatal("a directory accepted as the database file")
	}
}

func TestURI(t *testing.T) {
	if got := URI("/tmp/a b/x?.db", ""); got != "file:/tmp/a%20b/x%3F.db" {
		t.Fatalf("URI = %q", got)
	}
	if got := URI("/d/x.db", "mode=ro"); got != "file:/d/x.db?mode=ro" {
		t.Fatalf("URI = %q", got)
	}
}
