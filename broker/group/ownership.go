package group

import (
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kerr"
)

// In a cluster a group's coordinator is the leader of its partition of
// __consumer_offsets (Partition). The broker tells the coordinator which
// partitions it leads (SetLeadership); the coordinator loads a partition's
// groups from its replica when it takes it up (requests for them get
// COORDINATOR_LOAD_IN_PROGRESS meanwhile) and drops them when it gives it
// up, answering parked members NOT_COORDINATOR, so they find the new
// leader, which loads them from its own replica: committed offsets and
// membership (metadata.go), so members go on where they were.

// ownedPartition is a partition of __consumer_offsets this broker leads.
type ownedPartition struct {
	epoch  int32  // the leader epoch it was taken at
	gen    uint64 // unique per ownership: groups remember theirs
	loaded bool
	// markers is the transaction markers completed (CompleteTxn) while
	// loading, applied once loaded: the load may have read the log
	// before them. Past maxLoadMarkers they are dropped and reload set:
	// the load starts over, and reads them from the log.
	markers []queuedMarker
	reload  bool
}

// Partition is Kafka's coordinator rule: a group's partition of
// __consumer_offsets is abs(hashCode(group)) % partitions, hashCode being
// Java's String.hashCode over UTF-16 code units and abs(MinInt32) taken as
// 0, so tools that compute coordinators agree.
func Partition(group string, partitions int) int32 {
	var h int32
	for _, r := range group {
		if r1, r2 := utf16.EncodeRune(r); r1 != utf8.RuneError {
			h = 31*(31*h+r1) + r2 // a surrogate pair
		} else {
			h = 31*h + r
		}
	}
	if h == -1<<31 {
		h = 0
	} else if h < 0 {
		h = -h
	}
	return h % int32(partitions)
}

// SetLeadership tells a cluster's coordinator which partitions of
// __consumer_offsets this broker leads now, with their leader epochs: it
// takes up the new ones (loading their groups in the background) and
// gives up those it no longer leads, or leads under another epoch (another
// broker may have led it in between).
func (c *Coordinator) SetLeadership(led map[int32]int32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || !c.cfg.Cluster {
		return
	}
	for k, o := range c.owned {
		if epoch, ok := led[k]; !ok || epoch != o.epoch {
			c.unloadLocked(k)
		}
	}
	for k, epoch := range led {
		if c.owned[k] != nil {
			continue
		}
		c.ownSeq++
		o := &ownedPartition{epoch: epoch, gen: c.ownSeq}
		c.owned[k] = o
		go c.load(k, o)
	}
}

// load reads partition p's groups and serves them, unless the ownership o
// ended meanwhile. A failed read is retried while o lasts.
func (c *Coordinator) load(p int32, o *ownedPartition) {
	start := time.Now()
	for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 5*time.Second) {
		groups := map[string]*group{}
		records, err := c.replayPartition(p, groups)
		c.mu.Lock()
		if c.closed || c.owned[p] != o {
			c.mu.Unlock()
			stopAll(groups)
			return
		}
		if err == nil && o.reload {
			o.reload = false
			c.mu.Unlock()
			stopAll(groups)
			c.log.Warn("too many transaction markers while loading an offsets partition; loading it again", "partition", p)
			continue
		}
		if err == nil {
			for name, g := range groups {
				g.gen = o.gen
				c.groups[name] = g
			}
			c.indexTxnsLocked(groups)
			for _, m := range o.markers {
				c.endTxnLocked(txnKey{p, m.producer}, m.marker)
			}
			o.markers = nil
			o.loaded = true
			c.mu.Unlock()
			c.log.Info("loaded the groups of an offsets partition", "partition", p, "leader_epoch", o.epoch,
				"groups", len(groups), "records", records, "took", time.Since(start).Round(time.Millisecond))
			return
		}
		c.mu.Unlock()
		stopAll(groups)
		c.log.Warn("loading the groups of an offsets partition failed; retrying", "partition", p, "err", err)
		select {
		case <-c.closing:
			return
		case <-time.After(backoff):
		}
	}
}

// unloadLocked gives up partition k: its groups are dropped, their timers
// stopped and parked members answered NOT_COORDINATOR, so they find the
// new coordinator. Writes in flight for them are not applied here (the new
// leader reads them from the log). c.mu is held.
func (c *Coordinator) unloadLocked(k int32) {
	delete(c.owned, k)
	for key := range c.txns {
		if key.part == k {
			delete(c.txns, key)
		}
	}
	n := 0
	for name, g := range c.groups {
		if g.part != k {
			continue
		}
		g.mu.Lock()
		g.stopLocked(kerr.NotCoordinator)
		g.state = groupDead
		g.mu.Unlock()
		delete(c.groups, name)
		n++
	}
	c.log.Info("gave up an offsets partition; its groups move with its leadership", "partition", k, "groups", n)
}

// stopAll stops the timers of groups loaded but never served (restored
// members' sessions).
func stopAll(groups map[string]*group) {
	for _, g := range groups {
		g.mu.Lock()
		g.stopLocked(kerr.NotCoordinator)
		g.mu.Unlock()
	}
}
