package testharness

import (
	"context"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestMain(m *testing.M) { Main(m) }

// TestLifecycle drives one broker through every harness operation: a record
// acknowledged before a SIGKILL is served after Restart, on the same address.
func TestLifecycle(t *testing.T) {
	b := Start(t, Options{Args: []string{"--auto-create-topics=true"}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.DefaultProduceTopic("lifecycle"), kgo.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctx, kgo.StringRecord("before kill")).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}

	b.Kill()
	if b.Running() {
		t.Fatal("Running after Kill")
	}
	if err := ProbeAPIVersions(b.Addr(), time.Second); err == nil {
		t.Fatal("ApiVersions answered after Kill")
	}

	addr := b.Addr()
	b.Restart()
	if b.Addr() != addr {
		t.Fatalf("address changed across Restart: %s, then %s", addr, b.Addr())
	}
	if err := ProbeAPIVersions(b.Addr(), time.Second); err != nil {
		t.Fatalf("ApiVersions after Restart: %v", err)
	}

	cons, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{"lifecycle": {0: kgo.NewOffset().AtStart()}}))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	fs := cons.PollFetches(ctx)
	if err := fs.Err(); err != nil {
		t.Fatalf("fetch after restart: %v", err)
	}
	var got []string
	fs.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
	if diff := cmp.Diff([]string{"before kill"}, got); diff != "" {
		t.Fatalf("records after kill and restart (-want +got):\n%s", diff)
	}

	if err := b.Stop(); err != nil {
		t.Errorf("SIGTERM: broker exited with %v, want status 0", err)
	}
	if b.Running() {
		t.Fatal("Running after Stop")
	}
}

func TestKfakeArgs(t *testing.T) {
	type parsed struct {
		AutoCreate bool
		Partitions int
	}
	for _, tc := range []struct {
		args []string
		want parsed
	}{
		{nil, parsed{true, 1}},
		{[]string{"--default-partitions", "3"}, parsed{true, 3}},
		{[]string{"--default-partitions=5", "--auto-create-topics=false"}, parsed{false, 5}},
		{[]string{"--auto-create-topics", "--wal-profile", "low"}, parsed{true, 1}},
	} {
		auto, n, err := kfakeArgs(tc.args)
		if err != nil {
			t.Fatalf("%q: %v", tc.args, err)
		}
		if diff := cmp.Diff(tc.want, parsed{auto, n}); diff != "" {
			t.Errorf("%q (-want +got):\n%s", tc.args, diff)
		}
	}
	if _, _, err := kfakeArgs([]string{"--default-partitions", "x"}); err == nil {
		t.Error("--default-partitions x: no error")
	}
}

// TestWipeDataDir: a broker killed, wiped and restarted comes back on the
// same address with none of its topics.
func TestWipeDataDir(t *testing.T) {
	if CurrentTarget() != TargetChronik {
		t.Skip("a kfake cluster has no data directory")
	}
	b := Start(t, Options{Args: []string{"--auto-create-topics=true"}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.DefaultProduceTopic("wiped"), kgo.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctx, kgo.StringRecord("before the wipe")).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}

	b.Kill()
	files, bytes := b.WipeDataDir()
	if files == 0 || bytes == 0 {
		t.Fatalf("WipeDataDir removed %d files, %d bytes: the broker had written nothing?", files, bytes)
	}
	if ents, err := os.ReadDir(b.DataDir()); err != nil || len(ents) != 0 {
		t.Fatalf("data directory after the wipe: %d entries, %v", len(ents), err)
	}
	b.Restart()
	topics, err := kadm.NewClient(cl).ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if topics.Has("wiped") {
		t.Fatalf("the topic survived the wipe: %v", topics.Names())
	}
	if _, err := b.TryScrape(10 * time.Second); err != nil {
		t.Fatalf("TryScrape after the restart: %v", err)
	}
}

// TestHostsCutStaysLocal: traffic for a host that is cut off fails at once
// instead of following the default route off the machine.
func TestHostsCutStaysLocal(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	h := NewHosts(t, 1)
	cmd := h.Command(1, "sleep", "30")
	cmd.Start() // something in the namespace, not needed for the routes
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	h.Cut(1)
	start := time.Now()
	c, err := net.DialTimeout("tcp", h.IP(1)+":9092", 5*time.Second)
	if err == nil {
		c.Close()
		t.Fatalf("dialled %s while it was cut off: something off this machine answered", h.IP(1))
	}
	if e := err.Error(); !strings.Contains(e, "unreachable") && !strings.Contains(e, "no route to host") {
		t.Fatalf("dial %s while cut off: %v after %v; want no route at once", h.IP(1), err, time.Since(start))
	}
	h.Heal(1)
	if out, err := exec.Command("ip", "route", "get", h.IP(1)).CombinedOutput(); err != nil || strings.Contains(string(out), "unreachable") {
		t.Fatalf("after Heal: ip route get %s: %v %s", h.IP(1), err, out)
	}
}
