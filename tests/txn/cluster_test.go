package txn_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/internal/testharness"
)

// cluster is the test's three brokers.
type cluster struct {
	t    *testing.T
	bs   []*testharness.Broker
	down int32 // the node the test killed and has not restarted yet, or 0
}

// poll is testharness.Poll that fails the test at once when a broker
// process exits without the test killing it (a crash, a panic).
func (c *cluster) poll(timeout, interval time.Duration, fn func() error) error {
	c.t.Helper()
	var crash error
	err := testharness.Poll(timeout, interval, func() error {
		for i, b := range c.bs {
			if int32(i+1) != c.down && !b.Running() {
				crash = fmt.Errorf("broker %d exited on its own (log %s)", i+1, b.LogPath())
				return nil
			}
		}
		return fn()
	})
	if crash != nil {
		c.t.Fatal(crash)
	}
	return err
}

func (c *cluster) seeds() []string {
	var s []string
	for _, b := range c.bs {
		s = append(s, b.Addr())
	}
	return s
}

// partitionMeta is what the metadata says of one partition.
type partitionMeta struct {
	leader int32
	isr    []int32
	err    error
}

// metadata asks a live broker, through a new client, about topics'
// partitions; a topic the cluster does not know is left out.
func (c *cluster) metadata(topics ...string) (map[string][]partitionMeta, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.liveSeeds()...))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req := kmsg.NewPtrMetadataRequest()
	for _, topic := range topics {
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(topic)
		req.Topics = append(req.Topics, rt)
	}
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return nil, err
	}
	out := map[string][]partitionMeta{}
	for _, rt := range resp.Topics {
		if rt.Topic == nil {
			continue
		}
		if err := kerr.ErrorForCode(rt.ErrorCode); errors.Is(err, kerr.UnknownTopicOrPartition) {
			continue
		} else if err != nil {
			return nil, fmt.Errorf("topic %s: %w", *rt.Topic, err)
		}
		ps := make([]partitionMeta, len(rt.Partitions))
		for _, p := range rt.Partitions {
			if p.Partition < 0 || int(p.Partition) >= len(ps) {
				return nil, fmt.Errorf("topic %s: partition %d of %d", *rt.Topic, p.Partition, len(ps))
			}
			ps[p.Partition] = partitionMeta{leader: p.Leader, isr: p.ISR, err: kerr.ErrorForCode(p.ErrorCode)}
		}
		out[*rt.Topic] = ps
	}
	return out, nil
}

// healthTopics are the topics whose partitions must all be fully in sync
// between rounds; the internal ones once they exist.
var healthTopics = []string{etlIn, etlOut, "__consumer_offsets", "__transaction_state"}

// healthy returns nil when every broker serves and every partition of
// healthTopics has a leader and all three replicas in sync.
func (c *cluster) healthy() error {
	for i, b := range c.bs {
		if !b.Running() {
			return fmt.Errorf("broker %d is not running", i+1)
		}
		if err := testharness.ProbeAPIVersions(b.Addr(), time.Second); err != nil {
			return fmt.Errorf("broker %d: %w", i+1, err)
		}
	}
	md, err := c.metadata(healthTopics...)
	if err != nil {
		return err
	}
	for _, topic := range healthTopics {
		ps, ok := md[topic]
		if !ok && !strings.HasPrefix(topic, "__") {
			return fmt.Errorf("the metadata does not list %s", topic)
		}
		for i, p := range ps {
			if p.err != nil || p.leader < 0 || len(p.isr) != len(c.bs) {
				return fmt.Errorf("%s partition %d: leader %d, in-sync replicas %v, %v", topic, i, p.leader, p.isr, p.err)
			}
		}
	}
	return nil
}

func (c *cluster) waitHealthy() time.Duration {
	c.t.Helper()
	start := time.Now()
	if err := c.poll(2*time.Minute, 100*time.Millisecond, c.healthy); err != nil {
		c.t.Fatal(err)
	}
	return time.Since(start)
}

// coordinator is the node FindCoordinator names for key (type 0 a group,
// 1 a transactional ID).
func (c *cluster) coordinator(typ int8, key string) int32 {
	c.t.Helper()
	var node int32
	testharness.CheckFor(c.t, 30*time.Second, 100*time.Millisecond, func() error {
		var err error
		node, err = findCoordinator(c.seeds(), typ, key)
		if err == nil && (node < 1 || int(node) > len(c.bs)) {
			err = fmt.Errorf("FindCoordinator type %d %q: node %d is none of the cluster's", typ, key, node)
		}
		return err
	})
	return node
}

// roundStats is what one kill round did.
type roundStats struct {
	round   int
	node    int32
	role    role
	midTxn  bool
	moved   time.Duration // kill to another broker holding the role
	resumed time.Duration // kill to the commit of a transaction begun after it
	down    time.Duration
	synced  time.Duration // restart to every replica back in sync
}

func (r roundStats) String() string {
	never := func(d time.Duration) string {
		if d <= 0 {
			return "never"
		}
		return d.Round(time.Millisecond).String()
	}
	return fmt.Sprintf("#%d broker %d (%s, mid-transaction %v): role moved after %s, committed again after %s, down %v, in sync %v after restart",
		r.round, r.node, r.role, r.midTxn, never(r.moved), never(r.resumed), r.down.Round(time.Millisecond), r.synced.Round(time.Millisecond))
}

// role is what a killed broker was to the ETL.
type role struct {
	txnCoordinator   bool
	groupCoordinator bool
	leaderOf         int32 // an eos-out partition, when neither of the above
}

func (r role) String() string {
	switch {
	case r.txnCoordinator:
		return "transaction coordinator of " + etlTxnID
	case r.groupCoordinator:
		return "coordinator of group " + etlGroup
	}
	return fmt.Sprintf("leader of %s partition %d", etlOut, r.leaderOf)
}

// holder asks the cluster (FindCoordinator or Metadata) which broker has
// the role now.
func (c *cluster) holder(r role) (int32, error) {
	switch {
	case r.txnCoordinator:
		return findCoordinator(c.liveSeeds(), 1, etlTxnID)
	case r.groupCoordinator:
		return findCoordinator(c.liveSeeds(), 0, etlGroup)
	}
	md, err := c.metadata(etlOut)
	if err != nil {
		return 0, err
	}
	if ps := md[etlOut]; int(r.leaderOf) < len(ps) {
		return ps[r.leaderOf].leader, ps[r.leaderOf].err
	}
	return 0, fmt.Errorf("the metadata does not list %s partition %d", etlOut, r.leaderOf)
}

// victim picks round r's role and the broker holding it: the transaction
// coordinator, a leader of an eos-out partition (one that is not the
// transaction coordinator when there is one), the group coordinator, in
// turn.
func (c *cluster) victim(r int) (int32, role) {
	txnCoord := c.coordinator(1, etlTxnID)
	switch r % 3 {
	case 0:
		return txnCoord, role{txnCoordinator: true}
	case 2:
		return c.coordinator(0, etlGroup), role{groupCoordinator: true}
	}
	var ps []partitionMeta
	testharness.CheckFor(c.t, 30*time.Second, 100*time.Millisecond, func() error {
		md, err := c.metadata(etlOut)
		if err != nil {
			return err
		}
		ps = md[etlOut]
		if len(ps) != etlPartitions {
			return fmt.Errorf("%s has %d partitions", etlOut, len(ps))
		}
		for i, p := range ps {
			if p.leader < 1 {
				return fmt.Errorf("%s partition %d has no leader", etlOut, i)
			}
		}
		return nil
	})
	first := (r / 3) % etlPartitions
	for k := range etlPartitions {
		if p := (first + k) % etlPartitions; ps[p].leader != txnCoord {
			return ps[p].leader, role{leaderOf: int32(p)}
		}
	}
	return ps[first].leader, role{leaderOf: int32(first)}
}

func (c *cluster) liveSeeds() []string {
	var seeds []string
	for _, b := range c.bs {
		if b.Running() {
			seeds = append(seeds, b.Addr())
		}
	}
	return seeds
}

// killRound kills round r's victim while the ETL runs, waits until
// another broker holds its role and the ETL commits without it, restarts
// it after etlDowntime at least, and waits until the cluster is fully in
// sync again.
func (c *cluster) killRound(r int, e *etl) roundStats {
	t := c.t
	t.Helper()
	node, ro := c.victim(r)
	rs := roundStats{round: r + 1, node: node, role: ro}
	b := c.bs[node-1]
	// Kill with a transaction open when one comes soon.
	rs.midTxn = testharness.Poll(5*time.Second, time.Millisecond, func() error {
		if !e.open.Load() {
			return errors.New("no transaction open")
		}
		return nil
	}) == nil
	killed := time.Now()
	b.Kill()
	c.down = node
	t.Logf("round %d: killed broker %d, the %s, at %d input records committed (a transaction open: %v)",
		r+1, node, ro, e.committedRecords.Load(), rs.midTxn)

	err := c.poll(etlMaxResume, 20*time.Millisecond, func() error {
		h, err := c.holder(ro)
		if err == nil && (h == node || h < 1) {
			err = fmt.Errorf("the %s is broker %d", ro, h)
		}
		return err
	})
	if err != nil {
		t.Errorf("round %d: no other broker became the %s while broker %d was down: %v", r+1, ro, node, err)
	} else {
		rs.moved = time.Since(killed)
	}
	err = c.poll(etlMaxResume, 20*time.Millisecond, func() error {
		if rs.resumed = e.committedSince(killed); rs.resumed == 0 {
			return fmt.Errorf("no transaction begun after the kill has committed (%s)", e.stats())
		}
		return nil
	})
	if err != nil {
		t.Errorf("round %d: the ETL did not commit while broker %d (%s) was down: %v", r+1, node, ro, err)
	}
	if d := etlDowntime - time.Since(killed); d > 0 {
		time.Sleep(d)
	}
	rs.down = time.Since(killed)
	b.Restart()
	c.down = 0
	rs.synced = c.waitHealthy()
	t.Logf("round %d: %v", r+1, rs)
	return rs
}
