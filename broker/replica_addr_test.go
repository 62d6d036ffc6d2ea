package broker

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestReplicaAddrsMatches(t *testing.T) {
	lookups := 0
	answer := []netip.Addr{netip.MustParseAddr("10.0.0.7")}
	var fail error
	r := &replicaAddrs{lookup: func(_ context.Context, host string) ([]netip.Addr, error) {
		lookups++
		return answer, fail
	}}
	ip := netip.MustParseAddr
	for _, tt := range []struct {
		host string
		ip   netip.Addr
		want bool
	}{
		{"10.0.0.7", ip("10.0.0.7"), true},
		{"10.0.0.7", ip("10.0.0.8"), false},
		{"::ffff:10.0.0.7", ip("10.0.0.7"), true},
		{"127.0.0.1", ip("127.0.0.1"), true},
		{"127.0.1.1", ip("127.0.0.1"), true}, // both on this machine
		{"127.0.0.1", ip("10.0.0.7"), false},
		{"10.0.0.7", netip.Addr{}, false}, // not an IP connection
	} {
		if got := r.matches(tt.host, tt.ip); got != tt.want {
			t.Errorf("matches(%s, %v) = %v, want %v", tt.host, tt.ip, got, tt.want)
		}
	}
	if lookups != 0 {
		t.Fatalf("%d lookups for IP literals", lookups)
	}

	if !r.matches("broker-2.internal", ip("10.0.0.7")) || lookups != 1 {
		t.Fatalf("a host name resolving to the peer: want a match after 1 lookup (%d)", lookups)
	}
	if !r.matches("broker-2.internal", ip("10.0.0.7")) || lookups != 1 {
		t.Fatalf("a cached match looked the host up again (%d lookups)", lookups)
	}
	// The broker moved: the mismatch is not looked up again within the
	// refresh interval, then is.
	answer = []netip.Addr{netip.MustParseAddr("10.0.0.9")}
	if r.matches("broker-2.internal", ip("10.0.0.9")) || lookups != 1 {
		t.Fatalf("a mismatch within the refresh interval: want no match and no lookup (%d)", lookups)
	}
	r.mu.Lock()
	h := r.hosts["broker-2.internal"]
	h.at = h.at.Add(-replicaAddrRefresh)
	r.hosts["broker-2.internal"] = h
	r.mu.Unlock()
	if !r.matches("broker-2.internal", ip("10.0.0.9")) || lookups != 2 {
		t.Fatalf("a mismatch past the refresh interval: want a new lookup and a match (%d)", lookups)
	}
	// A failed lookup keeps the previous answer.
	fail = errors.New("dns down")
	r.mu.Lock()
	h = r.hosts["broker-2.internal"]
	h.at = h.at.Add(-replicaAddrRefresh)
	r.hosts["broker-2.internal"] = h
	r.mu.Unlock()
	if r.matches("broker-2.internal", ip("10.0.0.1")) || !r.matches("broker-2.internal", ip("10.0.0.9")) {
		t.Fatal("a failed lookup lost the previous answer")
	}
}

// localNonLoopback is an address of this machine other than loopback,
// from which a test can reach a listener on 127.0.0.1.
func localNonLoopback(t *testing.T) net.IP {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Skip(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() {
			return n.IP
		}
	}
	t.Skip("no non-loopback IPv4 address to connect from")
	return nil
}

// A fetch that carries a follower's ID and its real broker epoch (leaked,
// say) but does not come from an address of the follower's registered
// internal host moves no high watermark: it is answered STALE_BROKER_EPOCH.
// Before, the epoch alone made it the follower's.
func TestReplicaFetchFromAnotherAddressMovesNothing(t *testing.T) {
	from := localNonLoopback(t)
	ln, _, follower, p, base := stalledFollower(t, "elsewhere")

	// Someone holding the follower's epoch fetches at the leader's end,
	// from an address that is not the follower's.
	epoch := ln.b.ctl.State().Brokers[follower].Epoch()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: from}, Timeout: 5 * time.Second}
	nc, err := d.Dial("tcp", ln.b.Addr().String())
	if err != nil {
		t.Skipf("cannot reach the broker from %v: %v", from, err)
	}
	t.Cleanup(func() { nc.Close() })
	c := &rawConn{t: t, nc: nc}
	refused := counterValue(ln.b.metrics.replicaFetchesRefused)
	for i := 0; i < 5; i++ {
		req := kmsg.NewPtrFetchRequest()
		req.Version = 15
		req.ReplicaState.ID, req.ReplicaState.Epoch, req.ReplicaID = follower, epoch, follower
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic, rt.TopicID = "elsewhere", p.topic.id
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition, rp.FetchOffset, rp.CurrentLeaderEpoch, rp.PartitionMaxBytes = 0, base+3, -1, 1<<20
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		c.send(req)
		resp := req.ResponseKind().(*kmsg.FetchResponse)
		resp.Version = req.Version
		if err := c.recv(resp); err != nil {
			t.Fatal(err)
		}
		if resp.ErrorCode != kerr.StaleBrokerEpoch.Code {
			t.Fatalf("fetch from %v claiming broker %d answered %v; want STALE_BROKER_EPOCH", from, follower, kerr.ErrorForCode(resp.ErrorCode))
		}
	}
	if _, hw := p.offsets(); hw > base {
		t.Fatalf("the high watermark moved to %d on a fetch from %v claiming broker %d; the follower holds nothing past %d",
			hw, from, follower, base)
	}
	if n := counterValue(ln.b.metrics.replicaFetchesRefused) - refused; n < 5 {
		t.Errorf("%v fetches counted refused, want at least 5", n)
	}
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}
