// Package ops_test runs the operator procedures of docs/cluster.md and
// docs/tier3.md against real broker processes sharing one archive: growing
// a standalone broker into a three-broker cluster, replacing a broker
// whose disk died, restoring a topic into a new cluster from the archive,
// recovering from a lost controller quorum, and the refusal of a data
// directory or an archive of another cluster. Every procedure ends with
// every acknowledged record read back.
//
//	go test ./tests/ops -v
package ops_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/chronik-go/chronik/internal/testharness"
)

func TestMain(m *testing.M) { testharness.Main(m) }

// archiveEnv points brokers at one shared archive directory; the batch
// indexer stays off (these tests do not search).
func archiveEnv(archive string) []string {
	return []string{"CHRONIK_TIER3_URL=file://" + archive, "CHRONIK_INDEX_WORKERS=0"}
}

// tieredConfigs seal often and keep little locally: most of a topic is
// read back from the archive.
var tieredConfigs = map[string]string{"segment.bytes": "65536", "segment.ms": "1000", "local.retention.bytes": "100000", "retention.ms": "-1"}

func client(t *testing.T, seeds []string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(seeds...), kgo.MetadataMinAge(250 * time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func addrs(bs ...*testharness.Broker) []string {
	var out []string
	for _, b := range bs {
		out = append(out, b.Addr())
	}
	return out
}

func createTopic(t *testing.T, seeds []string, topic string, partitions int32, rf int16, configs map[string]string) {
	t.Helper()
	set := map[string]*string{}
	for k, v := range configs {
		set[k] = kadm.StringPtr(v)
	}
	adm := kadm.NewClient(client(t, seeds))
	testharness.CheckFor(t, 60*time.Second, 200*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		resp, err := adm.CreateTopic(ctx, partitions, rf, set, topic)
		if err != nil {
			return err
		}
		if resp.Err != nil && !strings.Contains(resp.Err.Error(), "TOPIC_ALREADY_EXISTS") {
			return fmt.Errorf("%v: %s", resp.Err, resp.ErrMessage)
		}
		return nil
	})
}

// value is record i of topic: about 100 bytes, unique.
func value(topic string, i int) string {
	return fmt.Sprintf("%s-%08d-%s", topic, i, strings.Repeat("x", 80))
}

// produce writes records [from, to) of topic with acks=all, uncompressed,
// and fails the test on any error.
func produce(t *testing.T, seeds []string, topic string, from, to int) {
	t.Helper()
	cl := client(t, seeds, kgo.DefaultProduceTopic(topic), kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordDeliveryTimeout(60*time.Second), kgo.ProducerLinger(time.Millisecond), kgo.ProducerBatchCompression(kgo.NoCompression()))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	errs := make(chan error, 1)
	for i := from; i < to; i++ {
		cl.Produce(ctx, &kgo.Record{Value: []byte(value(topic, i))}, func(_ *kgo.Record, err error) {
			if err != nil {
				select {
				case errs <- err:
				default:
				}
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatalf("flush: %v", err)
	}
	select {
	case err := <-errs:
		t.Fatalf("produce to %s: %v", topic, err)
	default:
	}
}

// consumeAll reads every partition of topic from offset 0 until want
// records arrived and checks each value [0, want) appears exactly once, in
// order within its partition.
func consumeAll(t *testing.T, seeds []string, topic string, want int) {
	t.Helper()
	cl := client(t, seeds, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	seen := make(map[string]int, want)
	last := map[int32]int64{}
	for len(seen) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("%s: read %d of %d records", topic, len(seen), want)
		}
		for _, e := range fs.Errors() {
			t.Logf("fetch %s/%d: %v", e.Topic, e.Partition, e.Err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if prev, ok := last[r.Partition]; ok && r.Offset <= prev {
				t.Fatalf("%s/%d: offset %d after %d", topic, r.Partition, r.Offset, prev)
			}
			last[r.Partition] = r.Offset
			seen[string(r.Value)]++
		})
	}
	for i := range want {
		if v := value(topic, i); seen[v] != 1 {
			t.Fatalf("%s read %d times", v, seen[v])
		}
	}
	if len(seen) != want {
		t.Fatalf("%s: %d distinct records, want %d", topic, len(seen), want)
	}
}

// waitArchived waits until the archive holds at least min bytes of the
// topic's segments (its .log objects).
func waitArchived(t *testing.T, archive string, min int64) {
	t.Helper()
	testharness.CheckFor(t, 2*time.Minute, 200*time.Millisecond, func() error {
		var n int64
		filepath.WalkDir(filepath.Join(archive, "topics"), func(path string, d os.DirEntry, err error) error {
			if err == nil && strings.HasSuffix(path, ".log") {
				if fi, err := d.Info(); err == nil {
					n += fi.Size()
				}
			}
			return nil
		})
		if n < min {
			return fmt.Errorf("%d bytes archived", n)
		}
		return nil
	})
}

// listing returns every file under dir with its size and content hash
// prefix, to tell whether anything was touched.
func listing(t *testing.T, dir string) string {
	t.Helper()
	var lines []string
	filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		b, rerr := os.ReadFile(path)
		if rerr != nil {
			return nil
		}
		rel, _ := filepath.Rel(dir, path)
		lines = append(lines, fmt.Sprintf("%s %d %x", rel, len(b), b[:min(len(b), 32)]))
		return nil
	})
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// runChronik runs the binary with args and env until it exits or timeout
// passes, returning its combined output and exit error.
func runChronik(t *testing.T, timeout time.Duration, env []string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, testharness.Binary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		return out.String(), fmt.Errorf("still running after %v", timeout)
	}
	return out.String(), err
}
