package group

import (
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The coordinator rule is Kafka's: Java's String.hashCode over UTF-16 code
// units, abs() with MinInt32 as 0, modulo the partition count.
func TestPartitionIsKafkasRule(t *testing.T) {
	for _, c := range []struct {
		group string
		n     int
		want  int32
	}{
		{"hello", 50, 99162322 % 50},              // "hello".hashCode() = 99162322
		{"polygenelubricants", 50, 0},             // hashCode() = Integer.MIN_VALUE
		{"ü", 50, 252 % 50},                       // one UTF-16 unit, 0xFC
		{"😀", 50, 1772899 % 50},                   // a surrogate pair: 31*0xD83D + 0xDE00
		{"console-consumer-12345", 1, 0},          // one partition
		{"abcdefghijklmnop", 50, 2093879032 % 50}, // hashCode() = -2093879032
	} {
		if got := Partition(c.group, c.n); got != c.want {
			t.Errorf("Partition(%q, %d) = %d, want %d", c.group, c.n, got, c.want)
		}
	}
}

// groupIn returns a group name whose partition of n is p.
func groupIn(p int32, n int, prefix string) string {
	for i := 0; ; i++ {
		if name := fmt.Sprintf("%s-%d", prefix, i); Partition(name, n) == p {
			return name
		}
	}
}

// leaderOf starts a cluster coordinator over l leading partition p at
// epoch 1, and returns it with a group name of that partition, served.
func leaderOf(t *testing.T, l *memLog, p int32, prefix string) (*Coordinator, string) {
	t.Helper()
	name := groupIn(p, l.Partitions(), prefix)
	c := newTestCoordinator(t, l, true)
	c.SetLeadership(map[int32]int32{p: 1})
	waitServed(t, c, name)
	return c, name
}

func waitServed(t *testing.T, c *Coordinator, name string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for c.Unavailable(name) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("group %s not served: %v", name, c.Unavailable(name))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// In a cluster the coordinator serves only the groups of the partitions it
// leads: it loads them from the log when it takes a partition up (answering
// COORDINATOR_LOAD_IN_PROGRESS meanwhile) and drops them when it gives it
// up; the next leader loads what was committed, in flight or not.
func TestLeadershipMovesGroups(t *testing.T) {
	const parts = 4
	l := newMemLog(parts)
	a := groupIn(1, parts, "a")
	b := groupIn(2, parts, "b")

	// The previous leader of partition 1 committed for group a.
	prev := newTestCoordinator(t, l, false)
	if code := commit(prev, a, "t", 0, 17); code != nil {
		t.Fatal(code)
	}
	prev.Close()

	cfg := testConfig(true)
	cfg.GroupInitialRebalanceDelay = time.Minute // holds the first join round
	c, err := New(cfg, l, memTopics{"t": 4})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if code := c.Unavailable(a); code != kerr.NotCoordinator {
		t.Fatalf("before leadership: %v, want NOT_COORDINATOR", code)
	}
	if code := commit(c, a, "t", 0, 18); code != kerr.NotCoordinator {
		t.Fatalf("commit before leadership: %v, want NOT_COORDINATOR", code)
	}
	l.mu.Lock()
	l.gate = make(chan struct{})
	l.mu.Unlock()
	c.SetLeadership(map[int32]int32{1: 5})
	if code := c.Unavailable(a); code != kerr.CoordinatorLoadInProgress {
		t.Fatalf("while loading: %v, want COORDINATOR_LOAD_IN_PROGRESS", code)
	}
	if _, code := fetch(c, a, "t", 0); code != kerr.CoordinatorLoadInProgress {
		t.Fatalf("fetch while loading: %v", code)
	}
	close(l.gate)
	waitServed(t, c, a)
	if off, code := fetch(c, a, "t", 0); code != nil || off != 17 {
		t.Fatalf("loaded offset %d %v, want 17", off, code)
	}
	if code := c.Unavailable(b); code != kerr.NotCoordinator {
		t.Fatalf("group of a partition not led: %v", code)
	}

	// A member parked in a join round is told to find the new
	// coordinator when the partition moves away.
	join := kmsg.NewPtrJoinGroupRequest()
	join.Version = 3
	join.Group, join.ProtocolType = a, "consumer"
	join.SessionTimeoutMillis, join.RebalanceTimeoutMillis = 10000, 10000
	p := kmsg.NewJoinGroupRequestProtocol()
	p.Name = "range"
	join.Protocols = append(join.Protocols, p)
	resp, wait := c.JoinGroup(join, "cl", "host")
	if wait == nil {
		t.Fatalf("first join answered at once: %+v", resp)
	}
	// A commit enqueued, not yet durable, when leadership moves.
	l.mu.Lock()
	l.hold = true
	l.mu.Unlock()
	a2 := groupIn(1, parts, "a2") // a has a member: its commits need one
	inflight, inflightWait := c.OffsetCommit(commitReq(a2, "t", 1, 99))

	c.SetLeadership(map[int32]int32{2: 3})
	select {
	case jr := <-wait:
		if jr.ErrorCode != kerr.NotCoordinator.Code {
			t.Fatalf("parked join answered %v, want NOT_COORDINATOR", kerr.ErrorForCode(jr.ErrorCode))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("parked join not answered when the partition moved")
	}
	if st, _, _ := c.Status(a); st != "Dead" {
		t.Fatalf("group of a partition given up: %s", st)
	}
	l.release(nil)
	inflightWait()
	if code := inflight.Topics[0].Partitions[0].ErrorCode; code != 0 {
		t.Fatalf("in-flight commit: %v", kerr.ErrorForCode(code))
	}
	if c.group(a2, false) != nil {
		t.Fatal("a durable commit recreated a group of a partition given up")
	}
	waitServed(t, c, b)

	// The partition comes back under a new epoch: reloaded, with the
	// commit that was in flight.
	l.mu.Lock()
	l.hold = false
	l.mu.Unlock()
	c.SetLeadership(map[int32]int32{1: 7, 2: 3})
	waitServed(t, c, a2)
	if off, code := fetch(c, a2, "t", 1); code != nil || off != 99 {
		t.Fatalf("offset committed while moving: %d %v, want 99", off, code)
	}
}

// A partition led under a new epoch is reloaded: another broker may have
// led it in between and written to it.
func TestNewEpochReloads(t *testing.T) {
	l := newMemLog(2)
	c, a := leaderOf(t, l, 0, "a")
	if code := commit(c, a, "t", 0, 1); code != nil {
		t.Fatal(code)
	}
	// Another leader's write, unseen by c.
	other := newTestCoordinator(t, l, false)
	if code := commit(other, a, "t", 0, 2); code != nil {
		t.Fatal(code)
	}
	c.SetLeadership(map[int32]int32{0: 1}) // same epoch: nothing changes
	if off, _ := fetch(c, a, "t", 0); off != 1 {
		t.Fatalf("offset %d under the same epoch, want 1", off)
	}
	c.SetLeadership(map[int32]int32{0: 3})
	waitServed(t, c, a)
	if off, _ := fetch(c, a, "t", 0); off != 2 {
		t.Fatalf("offset %d after a new epoch, want the other leader's 2", off)
	}
}
