package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// docs/operations.md is exactly what the generator writes, so it cannot
// drift from the code.
func TestOperationsDocIsCurrent(t *testing.T) {
	path := filepath.Join("..", "..", "docs", "operations.md")
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v: generate it with `%s` from the repository root", err, regenerate)
	}
	if want := render(); !bytes.Equal(got, want) {
		t.Fatalf("docs/operations.md is stale: regenerate it with `%s` from the repository root", regenerate)
	}
}

func TestGroupDigits(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 15000: "15,000", 100000: "100,000", 1234567: "1,234,567"} {
		if got := groupDigits(n); got != want {
			t.Errorf("groupDigits(%d) = %q; want %q", n, got, want)
		}
	}
}
