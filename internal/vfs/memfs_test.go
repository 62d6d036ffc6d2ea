package vfs

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func mustCreate(t *testing.T, fsys FS, name string) File {
	t.Helper()
	f, err := fsys.OpenFile(name, os.O_CREATE|os.O_RDWR|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func mustWrite(t *testing.T, f File, p []byte) {
	t.Helper()
	if n, err := f.Write(p); err != nil || n != len(p) {
		t.Fatalf("write: n=%d err=%v", n, err)
	}
}

func seq(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	return b
}

func TestMemFSCrashKeepsSyncedAndPrefixOfTail(t *testing.T) {
	synced, tail := seq(3000, 1), seq(5000, 99)
	var lost, partial, whole, garbled int
	for round := range 500 {
		m := NewMemFS()
		if err := m.MkdirAll("/d", 0o755); err != nil {
			t.Fatal(err)
		}
		f := mustCreate(t, m, "/d/f")
		mustWrite(t, f, synced)
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		if err := m.SyncDir("/d"); err != nil {
			t.Fatal(err)
		}
		mustWrite(t, f, tail)

		m.Crash(rand.New(rand.NewPCG(uint64(round), 7)))

		got, err := m.ReadFile("/d/f")
		if err != nil {
			t.Fatalf("round %d: synced file lost: %v", round, err)
		}
		if len(got) < len(synced) || len(got) > len(synced)+len(tail) {
			t.Fatalf("round %d: size %d outside [%d,%d]", round, len(got), len(synced), len(synced)+len(tail))
		}
		if !bytes.Equal(got[:len(synced)], synced) {
			t.Fatalf("round %d: synced bytes changed", round)
		}
		kept := got[len(synced):]
		// Only the last 512 bytes of the kept tail may differ (a torn sector).
		stable := max(len(kept)-512, 0)
		if !bytes.Equal(kept[:stable], tail[:stable]) {
			t.Fatalf("round %d: tail damaged before its last sector", round)
		}
		switch {
		case len(kept) == 0:
			lost++
		case !bytes.Equal(kept, tail[:len(kept)]):
			garbled++
		case len(kept) == len(tail):
			whole++
		default:
			partial++
		}
		if _, err := f.Write([]byte("x")); !errors.Is(err, ErrStaleHandle) {
			t.Fatalf("round %d: write on pre-crash handle: %v, want ErrStaleHandle", round, err)
		}
	}
	t.Logf("lost=%d partial=%d whole=%d garbled=%d", lost, partial, whole, garbled)
	if lost == 0 || partial == 0 || garbled == 0 {
		t.Fatalf("crash model too narrow: lost=%d partial=%d whole=%d garbled=%d", lost, partial, whole, garbled)
	}
}

func TestMemFSCrashAfterSyncLosesNothing(t *testing.T) {
	m := NewMemFS()
	f := mustCreate(t, m, "/f")
	mustWrite(t, f, seq(100, 3))
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := m.SyncDir("/"); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		m.Crash(rand.New(rand.NewPCG(uint64(i), 1)))
		got, err := m.ReadFile("/f")
		if err != nil || !bytes.Equal(got, seq(100, 3)) {
			t.Fatalf("crash %d: got %d bytes, err %v", i, len(got), err)
		}
	}
}

func TestMemFSCrashRevertsUnsyncedDirectoryChanges(t *testing.T) {
	var created, vanished, renamedOld, renamedNew, removedBack, removedGone int
	for round := range 300 {
		m := NewMemFS()
		for _, name := range []string{"/keep", "/old", "/doomed"} {
			f := mustCreate(t, m, name)
			mustWrite(t, f, []byte(name))
			if err := f.Sync(); err != nil {
				t.Fatal(err)
			}
		}
		if err := m.SyncDir("/"); err != nil {
			t.Fatal(err)
		}
		f := mustCreate(t, m, "/new")
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		if err := m.Rename("/old", "/renamed"); err != nil {
			t.Fatal(err)
		}
		if err := m.Remove("/doomed"); err != nil {
			t.Fatal(err)
		}

		m.Crash(rand.New(rand.NewPCG(uint64(round), 2)))

		exists := func(name string) bool {
			_, err := m.ReadFile(name)
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				t.Fatal(err)
			}
			return err == nil
		}
		if !exists("/keep") {
			t.Fatalf("round %d: durable entry lost", round)
		}
		if exists("/old") == exists("/renamed") {
			t.Fatalf("round %d: rename not atomic: old=%v renamed=%v", round, exists("/old"), exists("/renamed"))
		}
		count(exists("/new"), &created, &vanished)
		count(exists("/old"), &renamedOld, &renamedNew)
		count(exists("/doomed"), &removedBack, &removedGone)
		// The log is ordered: a later change survives only with the earlier ones.
		if exists("/new") == false && !exists("/doomed") {
			t.Fatalf("round %d: remove survived but the earlier create did not", round)
		}
	}
	for name, n := range map[string]int{"created": created, "vanished": vanished, "renamed": renamedNew,
		"rename reverted": renamedOld, "remove reverted": removedBack, "removed": removedGone} {
		if n == 0 {
			t.Errorf("never saw outcome %q", name)
		}
	}
}

func count(b bool, yes, no *int) {
	if b {
		*yes++
	} else {
		*no++
	}
}

func TestMemFSCrashAfterTruncateKeepsOldOrNew(t *testing.T) {
	old := seq(1000, 5)
	var sawOld, sawNew bool
	for round := range 100 {
		m := NewMemFS()
		f := mustCreate(t, m, "/f")
		mustWrite(t, f, old)
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		if err := m.SyncDir("/"); err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(400); err != nil {
			t.Fatal(err)
		}
		m.Crash(rand.New(rand.NewPCG(uint64(round), 3)))
		got, _ := m.ReadFile("/f")
		switch {
		case bytes.Equal(got, old):
			sawOld = true
		case bytes.Equal(got, old[:400]):
			sawNew = true
		default:
			t.Fatalf("round %d: got %d bytes, neither old nor truncated content", round, len(got))
		}
	}
	if !sawOld || !sawNew {
		t.Fatalf("sawOld=%v sawNew=%v", sawOld, sawNew)
	}
}

func TestMemFSFileSemantics(t *testing.T) {
	m := NewMemFS()
	if _, err := m.OpenFile("/nodir/f", os.O_CREATE|os.O_RDWR, 0o644); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("create in missing dir: %v", err)
	}
	if err := m.MkdirAll("/a/b", 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := m.OpenFile("/a/b/f", os.O_RDWR, 0); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("open missing: %v", err)
	}
	f := mustCreate(t, m, "/a/b/f")
	if _, err := m.OpenFile("/a/b/f", os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o644); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("O_EXCL on existing: %v", err)
	}
	mustWrite(t, f, []byte("hello "))
	mustWrite(t, f, []byte("world"))
	if err := f.Truncate(5); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, f, []byte("!")) // O_APPEND writes at the new end
	buf := make([]byte, 10)
	n, err := f.ReadAt(buf, 0)
	if err != io.EOF || string(buf[:n]) != "hello!" {
		t.Fatalf("ReadAt = %q, %v", buf[:n], err)
	}
	if n, err := f.ReadAt(buf[:2], 4); err != nil || string(buf[:n]) != "o!" {
		t.Fatalf("ReadAt(4) = %q, %v", buf[:n], err)
	}
	if fi, err := f.Stat(); err != nil || fi.Size() != 6 {
		t.Fatalf("Stat = %v, %v", fi, err)
	}
	ro, err := m.OpenFile("/a/b/f", os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ro.Write([]byte("x")); !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("write on O_RDONLY: %v", err)
	}
	tr, err := m.OpenFile("/a/b/f", os.O_RDWR|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := tr.Stat(); fi.Size() != 0 {
		t.Fatalf("O_TRUNC left %d bytes", fi.Size())
	}
	ents, err := m.ReadDir("/a")
	if err != nil || len(ents) != 1 || ents[0].Name() != "b" || !ents[0].IsDir() {
		t.Fatalf("ReadDir(/a) = %v, %v", ents, err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("x")); !errors.Is(err, fs.ErrClosed) {
		t.Fatalf("write after close: %v", err)
	}
}

func TestErrorFS(t *testing.T) {
	m := NewMemFS()
	e := NewErrorFS(m)
	f := mustCreate(t, e, "/f")
	boom := errors.New("boom")

	e.FailNextSync(boom)
	if err := f.Sync(); !errors.Is(err, boom) {
		t.Fatalf("first sync: %v", err)
	}
	if err := f.Sync(); err != nil {
		t.Fatalf("second sync: %v", err)
	}

	e.FailWritesAfter(5, syscall.ENOSPC)
	mustWrite(t, f, []byte("abc"))
	n, err := f.Write([]byte("defgh"))
	if n != 2 || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("write across budget: n=%d err=%v", n, err)
	}
	if n, err := f.Write([]byte("x")); n != 0 || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("write past budget: n=%d err=%v", n, err)
	}
	if got, _ := m.ReadFile("/f"); string(got) != "abcde" {
		t.Fatalf("content %q, want %q", got, "abcde")
	}
	e.FailWritesAfter(0, nil)
	mustWrite(t, f, []byte("z"))

	var ops []Op
	e.SetHook(func(op Op, path string) error {
		ops = append(ops, op)
		if op == OpSyncDir {
			return boom
		}
		return nil
	})
	if err := e.SyncDir("/"); !errors.Is(err, boom) {
		t.Fatalf("hooked SyncDir: %v", err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if len(ops) != 2 || ops[0] != OpSyncDir || ops[1] != OpSync {
		t.Fatalf("hook saw %v", ops)
	}
}

func TestDefaultFS(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "x", "y")
	if err := Default.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	name := filepath.Join(dir, "f")
	f := mustCreate(t, Default, name)
	mustWrite(t, f, []byte("data"))
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := Default.SyncDir(dir); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := f.ReadAt(buf, 0); err != nil || string(buf) != "data" {
		t.Fatalf("ReadAt = %q, %v", buf, err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := Default.Rename(name, name+"2"); err != nil {
		t.Fatal(err)
	}
	ents, err := Default.ReadDir(dir)
	if err != nil || len(ents) != 1 || ents[0].Name() != "f2" {
		t.Fatalf("ReadDir = %v, %v", ents, err)
	}
	if err := Default.Remove(name + "2"); err != nil {
		t.Fatal(err)
	}
}
