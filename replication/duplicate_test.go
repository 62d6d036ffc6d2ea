package replication

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// A second process claiming a live broker's node ID from another data
// directory is refused and gives up with ErrDuplicateBroker naming the ID
// and the live broker's address; the live broker stays registered and
// unfenced throughout. A restart of the same data directory (same
// StorageID) still registers at once.
func TestDuplicateNodeIDRefusedWhileLive(t *testing.T) {
	cfgs := quorumConfigs(t, 3)
	var cs []*Controller
	for i := range cfgs {
		c, err := Open(cfgs[i])
		if err != nil {
			t.Fatal(err)
		}
		c.Start(BrokerInfo{Host: "127.0.0.1", Port: int32(9001 + i), StorageID: fmt.Sprintf("storage-%d", i+1)})
		cs = append(cs, c)
	}
	t.Cleanup(func() {
		for _, c := range cs {
			c.Close()
		}
	})
	waitAllLive(t, cs)
	orig := *cs[1].Self()

	// Node 3's controller heartbeats as a newcomer claiming node ID 2
	// from another data directory, as a second process started with
	// CHRONIK_NODE_ID=2 would.
	imposter := *cs[2].Self()
	imposter.ID, imposter.Incarnation, imposter.StorageID, imposter.Port = 2, "imposter", "storage-other", 9999
	cs[2].self.Store(&imposter)

	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, c := range cs[:2] {
			if b := c.State().Brokers[2]; b.Incarnation != orig.Incarnation || b.Fenced {
				t.Fatalf("node %d sees broker 2 as incarnation %s (fenced %v); want the live %s kept", c.cfg.NodeID, b.Incarnation, b.Fenced, orig.Incarnation)
			}
		}
		select {
		case <-cs[2].Fatal():
		default:
			if time.Now().After(deadline) {
				t.Fatal("the newcomer with a live broker's node ID never gave up")
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		break
	}
	err := cs[2].Err()
	if !errors.Is(err, ErrDuplicateBroker) || !strings.Contains(err.Error(), "node ID 2") || !strings.Contains(err.Error(), "127.0.0.1:9002") {
		t.Fatalf("newcomer's error: %v; want ErrDuplicateBroker naming node ID 2 and 127.0.0.1:9002", err)
	}
	t.Logf("newcomer refused: %v", err)

	// Node 2 restarts quickly from the same data directory (a new
	// incarnation with the same StorageID): that is a restart, and it
	// registers within the old session.
	restarted := orig
	restarted.Incarnation = "restarted"
	cs[1].self.Store(&restarted)
	var resp callResponse
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := cs[0].callLeader(ctx, &callRequest{Heartbeat: &restarted}, &resp); err != nil || resp.Refused != nil {
		t.Fatalf("restart from the same data directory: %v, refused %v", err, resp.Refused)
	}
	waitFor(t, "the restarted incarnation registered", func() bool {
		b := cs[0].State().Brokers[2]
		return b.Incarnation == "restarted" && !b.Fenced
	})
}
