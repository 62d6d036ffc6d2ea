package broker

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/chronik-go/chronik/internal/vfs"
)

// A power loss at any filesystem operation of sealing (segment files,
// indexes, checkpoints, directory syncs, WAL trimming) loses no acked
// record: each round crashes a MemFS at a different Tier 2 operation while
// appends and rolls run, and a broker recovered from what survived serves
// every acknowledged record.
func TestCrashDuringRollLosesNoAckedRecord(t *testing.T) {
	rounds := 40
	if testing.Short() {
		rounds = 10
	}
	rng := rand.New(rand.NewPCG(7, 11))
	crashedInRoll := 0
	for round := 0; round < rounds; round++ {
		if crashDuringRollRound(t, rng.IntN(120)+1, rng.Uint64()) {
			crashedInRoll++
		}
	}
	if crashedInRoll < rounds/2 {
		t.Fatalf("only %d of %d rounds crashed inside a roll", crashedInRoll, rounds)
	}
}

func crashDuringRollRound(t *testing.T, crashAt int, seed uint64) (inRoll bool) {
	mem := vfs.NewMemFS()
	efs := vfs.NewErrorFS(mem)
	var dead atomic.Bool
	var ops atomic.Int64
	crashRng := rand.New(rand.NewPCG(seed, 3))
	var once sync.Once
	crash := func() { once.Do(func() { dead.Store(true); mem.Crash(crashRng) }) }
	efs.SetHook(func(op vfs.Op, path string) error {
		if dead.Load() {
			return syscall.EIO
		}
		if strings.Contains(path, "segments") && ops.Add(1) == int64(crashAt) {
			inRoll = true
			crash()
			return syscall.EIO
		}
		return nil
	})
	cfg := DefaultConfig()
	cfg.DataDir = "/data"
	cfg.FS = efs
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.WALSegmentBytes = 4 << 10
	tier2Config(&cfg)
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := testPartition(t, b, "crash", map[string]string{"segment.bytes": "1500"})
	acked := map[int64]string{}
	var mu sync.Mutex
	now := time.Now().UnixMilli()
	for i := 0; i < 400 && !dead.Load(); i++ {
		batch := makeRecordBatch([]testRecord{{ts: now, key: "k", value: fmt.Sprintf("r%d", i)}, {ts: now, key: "k", value: fmt.Sprintf("s%d", i)}})
		out, _ := p.append(context.Background(), b.wal, batch, readBatchHeader(batch), false)
		if out.err != nil {
			break
		}
		<-out.wait.done
		if out.wait.err == nil {
			mu.Lock()
			acked[out.baseOffset] = fmt.Sprintf("r%d", i)
			acked[out.baseOffset+1] = fmt.Sprintf("s%d", i)
			mu.Unlock()
		}
		if i%10 == 0 {
			b.sealDue(time.Now())
		}
	}
	crash()
	b.Close()

	cfg.FS = mem
	b2, err := New(cfg)
	if err != nil {
		t.Fatalf("crash at tier2 op %d: recover: %v", crashAt, err)
	}
	defer b2.Close()
	p2 := b2.lookupTopic("crash").partitions[0]
	got := map[int64]string{}
	for _, r := range readAllRecords(t, b2, p2, 700) {
		got[r.offset] = r.value
	}
	for off, v := range acked {
		if got[off] != v {
			t.Fatalf("crash at tier2 op %d: acked record %d (%s) reads back as %q; %d acked, %d segments",
				crashAt, off, v, got[off], len(acked), segCount(p2))
		}
	}
	t.Logf("crash at tier2 op %d: %d acked, %d recovered, %d segments", crashAt, len(acked), len(got), segCount(p2))
	return inRoll
}
