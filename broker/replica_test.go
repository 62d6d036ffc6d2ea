package broker

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

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

func replicaPartitionOn(t *testing.T, fs vfs.FS) (*partition, *tier1.WAL) {
	t.Helper()
	tp := &topic{name: "t", id: [16]byte{1}, fs: fs, cluster: true, segRoot: "/segments", sealKick: make(chan struct{}, 1), configs: map[string]string{}}
	tp.segmentBytes.Store(1 << 30)
	p := newPartition(tp, 0)
	tp.partitions = []*partition{p}
	wal, _, err := tier1.Open(tier1.Config{Dir: "/wal", FS: fs, Profile: walProfile("low")}, func(tier1.Entry) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
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
// windows pointing into it, and a WAL marker makes replay do the same.
func TestTruncateDropsTailAndReplaysTheSame(t *testing.T) {
	p, wal := replicaPartition(t)
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

	// Replay the same sequence of WAL entries into a fresh partition.
	q, _ := replicaPartition(t)
	q.replay(replicaBatch(0, 5, 3, 7, 0), tier1.Position{})
	q.replay(replicaBatch(5, 5, 4, 7, 5), tier1.Position{})
	q.replay(truncMarker(5), tier1.Position{})
	q.replay(replicaBatch(5, 2, 5, -1, -1), tier1.Position{})
	if q.nextOffset != 7 || len(q.batches) != 2 || len(q.epochs) != 2 || q.epochs[1].Epoch != 5 {
		t.Fatalf("replayed: next %d batches %d epochs %v; want 7, 2, epochs 3 and 5", q.nextOffset, len(q.batches), q.epochs)
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
