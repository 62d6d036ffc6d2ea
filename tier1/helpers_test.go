package tier1

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chronik-go/chronik/internal/vfs"
	"github.com/google/go-cmp/cmp"
)

const memDir = "/wal"

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func testConfig(fs vfs.FS) Config {
	return Config{Dir: memDir, FS: fs, Logger: quietLogger()}
}

func tpOf(i int) TopicPartition {
	var tp TopicPartition
	binary.BigEndian.PutUint64(tp.TopicID[:], uint64(i%7+1))
	tp.TopicID[15] = 0xAB
	tp.Partition = int32(i)
	return tp
}

// batchFor returns deterministic batch bytes for entry id of partition p:
// the first 12 bytes name the entry, the rest is a pattern, so any replayed
// batch can be checked against what was appended.
func batchFor(p int, id uint64, size int) []byte {
	size = max(size, 12)
	b := make([]byte, size)
	binary.BigEndian.PutUint32(b, uint32(p))
	binary.BigEndian.PutUint64(b[4:], id)
	for i := 12; i < size; i++ {
		b[i] = byte(uint64(i)*31 + id*7 + uint64(p))
	}
	return b
}

func idOf(batch []byte) (p int, id uint64) {
	return int(binary.BigEndian.Uint32(batch)), binary.BigEndian.Uint64(batch[4:])
}

// sizeFor picks a pseudo-random batch size for an entry.
func sizeFor(p int, id uint64, maxSize int) int {
	return 12 + int((id*2654435761+uint64(p)*40503)%uint64(maxSize-12+1))
}

type replayed struct {
	tp    TopicPartition
	batch []byte // nil for a truncation
	pos   Position
	// trunc marks a truncation entry, to offset.
	trunc  bool
	offset int64
}

// recorder collects replayed entries.
type recorder struct{ entries []replayed }

func (r *recorder) replay(e Entry) error {
	switch e.Type {
	case EntryBatch:
		r.entries = append(r.entries, replayed{tp: e.TP, batch: bytes.Clone(e.Batch), pos: e.Pos})
	case EntryTruncation:
		r.entries = append(r.entries, replayed{tp: e.TP, pos: e.Pos, trunc: true, offset: e.Offset})
	default:
		return fmt.Errorf("replayed an entry of unknown type %d", e.Type)
	}
	return nil
}

func mustOpen(t testing.TB, cfg Config) (*WAL, RecoveryReport, *recorder) {
	t.Helper()
	rec := &recorder{}
	w, rep, err := Open(cfg, rec.replay)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return w, rep, rec
}

// ack is what a DoneFunc reported.
type ack struct {
	pos Position
	err error
}

// appendWait appends and waits for done.
func appendWait(t testing.TB, w *WAL, tp TopicPartition, batch []byte) (Position, error) {
	t.Helper()
	ch := make(chan ack, 1)
	if _, err := w.Append(context.Background(), tp, batch, func(p Position, err error) { ch <- ack{p, err} }); err != nil {
		return Position{}, err
	}
	a := <-ch
	return a.pos, a.err
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// syncGate holds each fsync of a segment file until the test releases it
// with the error that fsync should return.
type syncGate struct {
	entered chan string
	release chan error

	mu   sync.Mutex // guards the following
	open bool
}

func newSyncGate() *syncGate {
	return &syncGate{entered: make(chan string, 100), release: make(chan error)}
}

func (g *syncGate) hook(op vfs.Op, path string) error {
	if op != vfs.OpSync || !strings.HasSuffix(path, segSuffix) {
		return nil
	}
	g.mu.Lock()
	open := g.open
	g.mu.Unlock()
	if open {
		return nil
	}
	g.entered <- path
	return <-g.release
}

// next waits until a sync is held and lets it finish with err.
func (g *syncGate) next(t testing.TB, err error) {
	t.Helper()
	g.waitEntered(t)
	g.release <- err
}

func (g *syncGate) waitEntered(t testing.TB) {
	t.Helper()
	select {
	case <-g.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("no fsync arrived")
	}
}

// openAll stops holding syncs; a sync already held must be released first.
func (g *syncGate) openAll() {
	g.mu.Lock()
	g.open = true
	g.mu.Unlock()
}

func segmentFiles(t testing.TB, fs vfs.FS, dir string) []string {
	t.Helper()
	ents, err := fs.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		if _, ok := parseSegmentName(e.Name()); ok {
			names = append(names, filepath.Join(dir, e.Name()))
		}
	}
	return names
}

// bytesEqual makes cmp compare byte slices whole instead of byte by byte.
var bytesEqual = cmp.Comparer(bytes.Equal)

var errDead = errors.New("test: process crashed")

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed^0x9E3779B97F4A7C15)) }
