package broker

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/chronik-go/chronik/internal/vfs"
	"github.com/chronik-go/chronik/tier1"
	"github.com/chronik-go/chronik/tier2"
)

// replicaBatch is a batch of n records at base, stamped with a leader epoch.
func replicaBatch(base int64, n int, epoch int32, producerID int64, seq int32) []byte {
	b := makeBatch(n, producerID, 0, seq, time.Now().UnixMilli())
	setBaseOffset(b, base)
	setLeaderEpoch(b, epoch)
	return b
}

func replicaPartition(t *testing.T) (*partition, *tier1.WAL) {
	t.Helper()
	return replicaPartitionOn(t, vfs.NewMemFS())
}

// replicaPartitionOn opens the WAL in fs (creating it, or replaying what an
// earlier call left there into the new partition, as a restart does).
func replicaPartitionOn(t *testing.T, fs vfs.FS) (*partition, *tier1.WAL) {
	t.Helper()
	tp := &topic{name: "t", id: [16]byte{1}, fs: fs, cluster: true, segRoot: "/segments", sealKick: make(chan struct{}, 1), configs: map[string]string{}}
	tp.segmentBytes.Store(1 << 30)
	tp.maxMessageBytes.Store(1 << 20)
	p := newPartition(tp, 0)
	tp.partitions = []*partition{p}
	wal, _, err := tier1.Open(tier1.Config{Dir: "/wal", FS: fs, Profile: walProfile("low")}, func(e tier1.Entry) error {
		if e.TP != p.tp {
			return fmt.Errorf("replayed an entry of %+v", e.TP)
		}
		return p.replay(e)
	})
	if err != nil {
		t.Fatal(err)
	}
	p.finishRecovery()
	t.Cleanup(func() { wal.Close() })
	return p, wal
}

func waitDurable(t *testing.T, res *appendResult) {
	t.Helper()
	if res == nil {
		t.Fatal("nothing appended")
	}
	<-res.done
	if res.err != nil {
		t.Fatal(res.err)
	}
}

// A follower appends the leader's batches with their offsets and epochs,
// refuses a gap, and answers OffsetForLeaderEpoch from what it appended.
func TestFollowerAppendKeepsOffsetsAndEpochs(t *testing.T) {
	p, wal := replicaPartition(t)
	p.setLeadership(2, 1, 3, []int32{1, 2}, []int32{1, 2}, 1)
	ctx := context.Background()
	var recs []byte
	recs = append(recs, replicaBatch(0, 5, 2, 7, 0)...)
	recs = append(recs, replicaBatch(5, 5, 3, 7, 5)...)
	res, err := p.appendReplica(ctx, wal, recs, 3)
	if err != nil {
		t.Fatal(err)
	}
	waitDurable(t, res)
	if p.hw != 10 || p.nextOffset != 10 {
		t.Fatalf("durable end %d, next %d; want 10", p.hw, p.nextOffset)
	}
	// Refetching what is held is a no-op; a gap is refused.
	if res, err := p.appendReplica(ctx, wal, replicaBatch(5, 5, 3, 7, 5), 3); err != nil || res != nil {
		t.Fatalf("refetched batch: %v %v", res, err)
	}
	if _, err := p.appendReplica(ctx, wal, replicaBatch(12, 1, 3, -1, -1), 3); err != errDiverged {
		t.Fatalf("gap: %v; want errDiverged", err)
	}
	bad := replicaBatch(10, 1, 3, -1, -1)
	bad[len(bad)-1] ^= 0xff
	if _, err := p.appendReplica(ctx, wal, bad, 3); !errors.Is(err, errBadReplicaBatch) {
		t.Fatalf("damaged batch: %v; want errBadReplicaBatch", err)
	}
	if _, err := p.appendReplica(ctx, wal, replicaBatch(10, 1, 2, -1, -1), 2); err != errStaleFetch {
		t.Fatalf("response fetched under an ended epoch: %v; want errStaleFetch", err)
	}
	// Consumers see nothing above the high watermark the leader reported.
	if _, hw := p.offsets(); hw != 0 {
		t.Fatalf("visible end %d before the leader reported a high watermark", hw)
	}
	p.setFollowerHW(5)
	if _, hw := p.offsets(); hw != 5 {
		t.Fatalf("visible end %d; want 5", hw)
	}
	for _, c := range []struct {
		ask, epoch int32
		end        int64
	}{{1, -1, -1}, {2, 2, 5}, {3, 3, 10}, {9, 3, 10}} {
		if e, end := p.epochEnd(c.ask); e != c.epoch || end != c.end {
			t.Errorf("epochEnd(%d) = %d, %d; want %d, %d", c.ask, e, end, c.epoch, c.end)
		}
	}
	es, ok, err := tier2.ReadLeaderEpochs(p.topic.fs, p.dir)
	if err != nil || !ok || len(es) != 2 || es[1] != (tier2.EpochStart{Epoch: 3, Start: 5}) {
		t.Fatalf("checkpointed epochs %v %v %v", es, ok, err)
	}
}

// A follower whose append meets a full disk fetches the same batches again
// and appends them at the same offsets once there is space.
func TestFollowerResumesAfterDiskFull(t *testing.T) {
	efs := vfs.NewErrorFS(vfs.NewMemFS())
	var full atomic.Bool
	efs.SetHook(func(op vfs.Op, path string) error {
		if full.Load() && op == vfs.OpWrite && strings.HasPrefix(path, "/wal") {
			return syscall.ENOSPC
		}
		return nil
	})
	p, wal := replicaPartitionOn(t, efs)
	p.setLeadership(2, 1, 3, []int32{1, 2}, []int32{1, 2}, 1)
	ctx := context.Background()
	res, err := p.appendReplica(ctx, wal, replicaBatch(0, 5, 3, 7, 0), 3)
	if err != nil {
		t.Fatal(err)
	}
	waitDurable(t, res)
	full.Store(true)
	for range 2 { // the fetcher retries from the durable end while the disk is full
		res, err := p.appendReplica(ctx, wal, replicaBatch(5, 5, 3, 7, 5), 3)
		if err == nil {
			<-res.done
			err = res.err
		}
		if !errors.Is(err, tier1.ErrDiskFull) {
			t.Fatalf("append on a full disk: %v, want ErrDiskFull", err)
		}
	}
	full.Store(false)
	var last *appendResult
	waitFor(t, 5*time.Second, func() error {
		res, err := p.appendReplica(ctx, wal, replicaBatch(5, 5, 3, 7, 5), 3)
		last = res
		return err // ErrDiskFull while the WAL still fails the group's callbacks
	})
	waitDurable(t, last)
	if p.hw != 10 || p.nextOffset != 10 {
		t.Fatalf("durable end %d, next %d after space returned; want 10", p.hw, p.nextOffset)
	}
}

// Truncation drops the unconfirmed tail, its epochs and the idempotent
// windows pointing into it, and its WAL entry makes a restart do the same:
// the truncated batches stay gone and the new leader's batch at the same
// offsets is what a restarted follower serves.
func TestTruncateDropsTailAndSurvivesRestart(t *testing.T) {
	mem := vfs.NewMemFS()
	p, wal := replicaPartitionOn(t, mem)
	p.setLeadership(2, 1, 4, []int32{1, 2}, []int32{1, 2}, 1)
	ctx := context.Background()
	var recs []byte
	recs = append(recs, replicaBatch(0, 5, 3, 7, 0)...)
	recs = append(recs, replicaBatch(5, 5, 4, 7, 5)...)
	res, err := p.appendReplica(ctx, wal, recs, 4)
	if err != nil {
		t.Fatal(err)
	}
	waitDurable(t, res)
	if err := p.truncateTo(ctx, wal, 5); err != nil {
		t.Fatal(err)
	}
	if p.nextOffset != 5 || p.hw != 5 || len(p.batches) != 1 || len(p.epochs) != 1 {
		t.Fatalf("after truncation: next %d durable %d batches %d epochs %v", p.nextOffset, p.hw, len(p.batches), p.epochs)
	}
	if ps := p.producers[7]; ps == nil || ps.n != 1 || ps.recent[(ps.head-1+producerWindow)%producerWindow].baseOffset != 0 {
		t.Fatalf("producer window after truncation: %+v", ps)
	}
	// The new leader's batch at 5 is accepted.
	res, err = p.appendReplica(ctx, wal, replicaBatch(5, 2, 5, -1, -1), 4)
	if err != nil {
		t.Fatal(err)
	}
	waitDurable(t, res)

	want := slices.Clone(p.batches)
	if err := wal.Close(); err != nil {
		t.Fatal(err)
	}

	// Restart: a fresh partition recovers from the same WAL.
	q, wal := replicaPartitionOn(t, mem)
	if q.nextOffset != 7 || len(q.epochs) != 2 || q.epochs[1] != (tier2.EpochStart{Epoch: 5, Start: 5}) {
		t.Fatalf("after restart: next %d epochs %v; want 7, epochs 3 from 0 and 5 from 5", q.nextOffset, q.epochs)
	}
	// appended is when this process took a batch in: recovery takes it in
	// again, so it is the one field the restart does not keep.
	recovered := slices.Clone(q.batches)
	for i := range recovered {
		recovered[i].appended = 0
	}
	for i := range want {
		want[i].appended = 0
	}
	if !slices.Equal(recovered, want) || q.activeBytes != p.activeBytes {
		t.Fatalf("after restart: batches %+v (%d bytes), want %+v (%d bytes)", q.batches, q.activeBytes, want, p.activeBytes)
	}
	if ps := q.producers[7]; ps == nil || ps.n != 1 || ps.recent[(ps.head-1+producerWindow)%producerWindow].baseOffset != 0 {
		t.Fatalf("producer window after restart: %+v", ps)
	}
	got, err := q.readFrom(wal, 5, 1<<20, nil)
	if err != nil || len(got) < batchHeaderLen || batchBaseOffset(got) != 5 || batchLeaderEpoch(got) != 5 {
		t.Fatalf("read at 5 after restart: %d bytes, %v; want the new leader's batch", len(got), err)
	}
}

// legacyTruncation is a truncation as releases before the truncation entry
// type wrote it: a batch entry of "CHRTRUNC" and the offset, big-endian.
func legacyTruncation(offset int64) []byte {
	return binary.BigEndian.AppendUint64([]byte("CHRTRUNC"), uint64(offset))
}

// A data directory whose WAL holds a truncation recovers with the
// truncation applied through Broker.open, whether the truncation is an
// entry of its own type or the legacy batch an earlier release wrote; the
// log continues at the truncation offset.
func TestTruncationRecoversThroughOpen(t *testing.T) {
	for _, legacy := range []bool{false, true} {
		name := "truncation entry"
		if legacy {
			name = "legacy CHRTRUNC batch"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			b := testBroker(t, dir, nil)
			createTopic(t, b, "cut", nil)
			c := dialRaw(t, b)
			for i := range 5 { // batches at 0, 2, 4, 6, 8
				if sp := produceRaw(t, c, "cut", makeBatch(2, -1, -1, -1, 1)); sp.ErrorCode != 0 || sp.BaseOffset != int64(2*i) {
					t.Fatalf("produce %d: base %d, %v", i, sp.BaseOffset, kerr.ErrorForCode(sp.ErrorCode))
				}
			}
			p := b.partitionOf(b.lookupTopic("cut"), 0)
			if !legacy {
				if err := p.truncateTo(testCtx(t), b.wal, 4); err != nil {
					t.Fatal(err)
				}
			}
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			// The WAL as the broker left it: the five batches, then, if
			// truncateTo ran, its truncation as an entry of its own type
			// (never as a batch).
			var types []tier1.EntryType
			wal, _, err := tier1.Open(tier1.Config{Dir: filepath.Join(dir, "wal"), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
				func(e tier1.Entry) error {
					if e.TP == p.tp {
						types = append(types, e.Type)
					}
					if e.Type == tier1.EntryTruncation && e.Offset != 4 {
						t.Errorf("truncation entry to %d, want 4", e.Offset)
					}
					return nil
				})
			if err != nil {
				t.Fatal(err)
			}
			b1 := tier1.EntryBatch
			wantTypes := []tier1.EntryType{b1, b1, b1, b1, b1}
			if !legacy {
				wantTypes = append(wantTypes, tier1.EntryTruncation)
			}
			if !slices.Equal(types, wantTypes) {
				t.Fatalf("the WAL holds entries of types %v, want %v", types, wantTypes)
			}
			if legacy {
				// What an earlier release left: its truncation went
				// through Append as a 16-byte batch.
				done := make(chan error, 1)
				if _, err := wal.Append(testCtx(t), p.tp, legacyTruncation(4), func(_ tier1.Position, err error) { done <- err }); err != nil {
					t.Fatal(err)
				}
				if err := <-done; err != nil {
					t.Fatal(err)
				}
			}
			if err := wal.Close(); err != nil {
				t.Fatal(err)
			}

			b = testBroker(t, dir, nil)
			p = b.partitionOf(b.lookupTopic("cut"), 0)
			if _, hw := p.offsets(); hw != 4 || p.nextOffset != 4 || len(p.batches) != 2 {
				t.Fatalf("after restart: high watermark %d, next %d, %d batches; want 4, 4, 2", hw, p.nextOffset, len(p.batches))
			}
			if sp := produceRaw(t, dialRaw(t, b), "cut", makeBatch(3, -1, -1, -1, 1)); sp.ErrorCode != 0 || sp.BaseOffset != 4 {
				t.Fatalf("produce after restart: base %d, %v; want 4", sp.BaseOffset, kerr.ErrorForCode(sp.ErrorCode))
			}
			for i, r := range consumeAll(t, b.Addr().String(), "cut", 7) {
				if r.Offset != int64(i) {
					t.Fatalf("record %d has offset %d", i, r.Offset)
				}
			}
		})
	}
}

// acks=all waits for the high watermark, fails when leadership moves, and
// the high watermark is the minimum over the ISR.
func TestHighWatermarkIsISRMinimum(t *testing.T) {
	p, wal := replicaPartition(t)
	p.setLeadership(1, 1, 1, []int32{1, 2, 3}, []int32{1, 2, 3}, 2)
	h := readBatchHeader(makeBatch(3, -1, 0, -1, 1))
	out, _ := p.append(context.Background(), wal, makeBatch(3, -1, 0, -1, 1), h, false)
	waitDurable(t, out.wait)
	if _, hw := p.offsets(); hw != 0 {
		t.Fatalf("high watermark %d before any follower fetched", hw)
	}
	p.followerFetched(2, 3, time.Now())
	if _, hw := p.offsets(); hw != 0 {
		t.Fatalf("high watermark %d with follower 3 not caught up", hw)
	}
	p.followerFetched(3, 2, time.Now())
	if _, hw := p.offsets(); hw != 2 {
		t.Fatalf("high watermark %d; want 2 (the slowest ISR member)", hw)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.replicationWait(ctx, 3, 1) }()
	p.followerFetched(3, 3, time.Now())
	if err := <-done; err != nil {
		t.Fatalf("acks=all after the ISR caught up: %v", err)
	}
	go func() { done <- p.replicationWait(ctx, 4, 1) }()
	p.setLeadership(1, 2, 2, []int32{2, 3}, []int32{1, 2, 3}, 2)
	if err := <-done; err == nil || kafkaErr(err).Code != 6 {
		t.Fatalf("acks=all when leadership moved: %v; want NOT_LEADER_OR_FOLLOWER", err)
	}
}

// A follower whose log ends below the leader's log start restarts there.
func TestJumpToLeaderLogStart(t *testing.T) {
	p, wal := replicaPartition(t)
	p.setLeadership(2, 1, 1, []int32{1, 2}, []int32{1, 2}, 1)
	res, err := p.appendReplica(context.Background(), wal, replicaBatch(0, 10, 1, -1, -1), 1)
	if err != nil {
		t.Fatal(err)
	}
	waitDurable(t, res)
	b := &Broker{fs: p.topic.fs}
	if err := b.jumpTo(p, 50); err != nil {
		t.Fatal(err)
	}
	if p.logStart != 50 || p.nextOffset != 50 || p.hw != 50 || len(p.batches) != 0 || p.activeBytes != 0 {
		t.Fatalf("after the jump: start %d next %d durable %d batches %d bytes %d", p.logStart, p.nextOffset, p.hw, len(p.batches), p.activeBytes)
	}
	if ls, ok, err := tier2.ReadLogStart(p.topic.fs, p.dir); err != nil || !ok || ls != 50 {
		t.Fatalf("checkpointed log start %d %v %v; want 50", ls, ok, err)
	}
	// The leader's next batch continues there.
	res, err = p.appendReplica(context.Background(), wal, replicaBatch(50, 2, 1, -1, -1), 1)
	if err != nil {
		t.Fatal(err)
	}
	waitDurable(t, res)
}
