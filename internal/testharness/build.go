package testharness

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Target names what Start runs.
type Target string

const (
	TargetChronik Target = "chronik" // the real binary (default)
	TargetKfake   Target = "kfake"   // franz-go's in-process fake cluster
)

// CurrentTarget reads CHRONIK_TEST_TARGET; unset means TargetChronik.
func CurrentTarget() Target {
	switch v := os.Getenv("CHRONIK_TEST_TARGET"); v {
	case "", string(TargetChronik):
		return TargetChronik
	case string(TargetKfake):
		return TargetKfake
	default:
		panic(fmt.Sprintf("testharness: CHRONIK_TEST_TARGET=%q: want chronik or kfake", v))
	}
}

var build struct {
	once sync.Once
	dir  string // temporary directory holding the built binary; removed by Main
	path string
	err  error
}

// Main runs the tests and removes the binary built for them. Call it from
// TestMain so the build directory does not outlive the test binary.
func Main(m *testing.M) {
	code := m.Run()
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
	os.Exit(code)
}

// Binary returns the path of the chronik binary, building ./cmd/chronik on
// the first call in this test binary, with CHRONIK_TEST_BUILDFLAGS (such as
// -race) added to go build. CHRONIK_TEST_BINARY overrides the build.
func Binary(t testing.TB) string {
	t.Helper()
	build.once.Do(func() {
		if p := os.Getenv("CHRONIK_TEST_BINARY"); p != "" {
			build.path, build.err = filepath.Abs(p)
			return
		}
		root, err := ModuleRoot()
		if err != nil {
			build.err = err
			return
		}
		if build.dir, err = os.MkdirTemp("", "chronik-testharness-"); err != nil {
			build.err = err
			return
		}
		build.path = filepath.Join(build.dir, "chronik")
		args := []string{"build", "-o", build.path}
		args = append(args, strings.Fields(os.Getenv("CHRONIK_TEST_BUILDFLAGS"))...)
		cmd := exec.Command("go", append(args, "./cmd/chronik")...)
		cmd.Dir = root
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			build.err = fmt.Errorf("go build ./cmd/chronik: %v\n%s", err, out.Bytes())
		}
	})
	if build.err != nil {
		t.Fatalf("testharness: %v", build.err)
	}
	return build.path
}

// ModuleRoot walks up from the working directory (the test's package
// directory under go test) to the directory holding go.mod.
func ModuleRoot() (string, error) {
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
			return "", fmt.Errorf("testharness: no go.mod above the working directory")
		}
		dir = parent
	}
}
