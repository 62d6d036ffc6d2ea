// Package diskfull_test fills a real broker's disk: its data directory is a
// small tmpfs, and a ballast file takes most of it. Produces must fail with
// KAFKA_STORAGE_ERROR while nothing acknowledged is lost and reads go on;
// once the ballast is deleted the same broker process takes produces again,
// and after a kill -9 and a restart the log is still dense and complete.
// Needs root (mount).
package diskfull_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/chronik-go/chronik/internal/testharness"
)

func TestMain(m *testing.M) { testharness.Main(m) }

const (
	topic   = "cramped"
	tmpfsMB = 48
	valueB  = 1000
)

// mountTmpfs mounts a tmpfs of size MiB at a new directory, unmounted when
// the test ends.
func mountTmpfs(t *testing.T, size int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("mounting a small tmpfs needs root (run this suite as root, as CI does)")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+strconv.Itoa(size)+"m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

func TestDiskFullRecoversWhenSpaceReturns(t *testing.T) {
	mnt := mountTmpfs(t, tmpfsMB)
	// Most of the disk is ballast; the broker gets what is left.
	ballast := filepath.Join(mnt, "ballast")
	if err := os.WriteFile(ballast, make([]byte, (tmpfsMB-16)<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(mnt, "data")
	b := testharness.Start(t, testharness.Options{
		DataDir: data,
		// The archive and index cache live elsewhere: this test is about
		// the log's own disk.
		Env: []string{"CHRONIK_TIER3_URL=file://" + t.TempDir(), "CHRONIK_INDEX_WORKERS=0"},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	adm, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	if resp, err := kadm.NewClient(adm).CreateTopic(ctx, 1, 1, nil, topic); err != nil || resp.Err != nil {
		t.Fatalf("create topic: %v %v", err, resp.Err)
	}
	// No retries: each failure is seen as it happens.
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.DefaultProduceTopic(topic),
		kgo.DisableIdempotentWrite(), kgo.RecordRetries(0), kgo.ProducerLinger(0))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	acked := map[string]int64{} // value → offset
	sent := 0
	produce := func(n int) (storageErrs int) {
		t.Helper()
		for range n {
			sent++
			v := fmt.Sprintf("%08d-", sent)
			r := &kgo.Record{Value: append([]byte(v), make([]byte, valueB)...)}
			err := cl.ProduceSync(ctx, r).FirstErr()
			switch {
			case err == nil:
				acked[string(r.Value)] = r.Offset
			case errors.Is(err, kerr.KafkaStorageError):
				storageErrs++
			default:
				t.Fatalf("produce: %v, want success or KAFKA_STORAGE_ERROR", err)
			}
		}
		return storageErrs
	}
	var failedWhileFull int
	for round := 0; failedWhileFull == 0; round++ {
		if round == 100 {
			t.Fatalf("%d records acknowledged and no produce failed: the disk never filled", len(acked))
		}
		failedWhileFull = produce(1000)
	}
	t.Logf("disk full after %d acknowledged records; %d produces failed", len(acked), failedWhileFull)
	if more := produce(20); more != 20 {
		t.Fatalf("%d of 20 produces failed on the full disk, want all", more)
	}
	if m := b.Scrape(); m["chronik_wal_disk_full"] != 1 || m["chronik_wal_disk_full_groups_total"] < 20 {
		t.Fatalf("chronik_wal_disk_full %v, chronik_wal_disk_full_groups_total %v on the full disk; want 1 and at least 20",
			m["chronik_wal_disk_full"], m["chronik_wal_disk_full_groups_total"])
	}
	check := func(when string) {
		t.Helper()
		recs := consumeAll(t, ctx, b.Addr(), len(acked))
		for i, r := range recs {
			if r.Offset != int64(i) {
				t.Fatalf("%s: record %d at offset %d: the log has a gap or a repeat", when, i, r.Offset)
			}
			if off, ok := acked[string(r.Value)]; !ok || off != r.Offset {
				t.Fatalf("%s: offset %d holds record %.8s, which was not acknowledged there", when, r.Offset, r.Value)
			}
		}
	}
	check("on the full disk")

	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	before := len(acked)
	if failed := produce(200); failed > 0 {
		t.Fatalf("%d of 200 produces failed after space returned, want none", failed)
	}
	if len(acked) != before+200 {
		t.Fatalf("%d records acknowledged after space returned, want 200", len(acked)-before)
	}
	if m := b.Scrape(); m["chronik_wal_disk_full"] != 0 {
		t.Fatalf("chronik_wal_disk_full %v once produces succeed again, want 0", m["chronik_wal_disk_full"])
	}
	check("once space returned")

	b.Kill()
	b.Restart()
	check("after kill -9 and a restart")
}

// consumeAll reads n records from the start of the topic's partition.
func consumeAll(t *testing.T, ctx context.Context, addr string, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	for len(recs) < n {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d of %d records: %v", len(recs), n, err)
		}
		fs.EachError(func(_ string, _ int32, err error) { t.Fatalf("fetch: %v", err) })
		recs = append(recs, fs.Records()...)
	}
	if len(recs) != n {
		t.Fatalf("consumed %d records, want %d", len(recs), n)
	}
	return recs
}
