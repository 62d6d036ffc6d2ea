package security_test

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/internal/testharness"
	"github.com/chronik-go/chronik/replication"
	"github.com/chronik-go/chronik/security"
)

// secureCluster is three brokers with SSL (client certificates required)
// and SASL_SSL listeners, replicating over SSL with their broker
// certificates, mutual TLS on the controller port, and the authorizer on:
// the brokers' certificate principals and admin are the super users.
type secureCluster struct {
	bs    []*testharness.Broker
	pki   *pki
	seeds []string // every broker's SASL_SSL listener
	adm   *kadm.Client
	alice *kgo.Client
}

func TestCluster(t *testing.T) {
	brokers := []string{"broker-1", "broker-2", "broker-3"}
	p := newPKI(t, brokers, []string{"admin", "alice"})
	superUsers := []string{"User:admin"}
	for _, name := range brokers {
		superUsers = append(superUsers, certPrincipal(name))
	}
	bs := testharness.StartCluster(t, 3, testharness.Options{
		Listeners:           []string{"SSL", "SASL_SSL"},
		InterBrokerListener: "SSL",
		Env: []string{
			"CHRONIK_TLS_CLIENT_AUTH=required",
			"CHRONIK_AUTHORIZER=acl",
			"CHRONIK_SUPER_USERS=" + strings.Join(superUsers, ";"),
			"CHRONIK_BOOTSTRAP_USERS_FILE=" + writeUsersFile(t),
			"CHRONIK_CONTROLLER_TLS=true",
		},
		NodeEnv: func(node int) []string { return p.brokerEnv(brokers[node-1]) },
	})
	c := &secureCluster{bs: bs, pki: p}
	for _, b := range bs {
		c.seeds = append(c.seeds, b.ListenerAddr("SASL_SSL"))
	}
	// The clients present certificates of their own as well as their SCRAM
	// passwords: the sasl-ssl-without-client-certificate case checks that
	// they need not.
	waitForUser(t, c.seeds, p.tls(t, "admin"), "admin")
	waitForUser(t, c.seeds, p.tls(t, "alice"), "alice")
	c.adm = kadm.NewClient(newClient(t, c.seeds, p.tls(t, "admin"), saslMech(mechScram512, "admin", passwords["admin"])))
	c.alice = newClient(t, c.seeds, p.tls(t, "alice"), saslMech(mechScram512, "alice", passwords["alice"]))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	createACLs(ctx, t, c.adm, kadm.NewACLs().Allow("User:alice").
		Topics("sec-").ResourcePatternType(kadm.ACLPatternPrefixed).
		Operations(kadm.OpRead, kadm.OpWrite, kadm.OpDescribe, kadm.OpCreate))

	t.Run("sasl-ssl-without-client-certificate", c.testSASLWithoutCertificate)
	t.Run("controller-port-refuses-non-brokers", c.testControllerPort)
	t.Run("follower-fetch-as-alice", c.testFollowerFetch)
	t.Run("acked-records-survive-leader-kill", c.testLeaderKill)
}

// testSASLWithoutCertificate: Kafka's ssl.client.auth applies to SSL
// listeners only; a SASL_SSL listener takes clients without a certificate
// (KIP-684), which is what SASL is for.
func (c *secureCluster) testSASLWithoutCertificate(t *testing.T) {
	cl := newClient(t, c.seeds[:1], c.pki.tls(t, ""), saslMech(mechScram512, "alice", passwords["alice"]))
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if _, err := cl.Request(ctx, kmsg.NewPtrMetadataRequest()); err != nil {
		t.Errorf("Metadata as alice over SASL_SSL without a client certificate (CHRONIK_TLS_CLIENT_AUTH=required): %v", err)
	}
}

// callFrame is a controller call as a broker sends it: the connection
// kind, then a length-prefixed JSON request.
func callFrame(t *testing.T, call any) []byte {
	t.Helper()
	body, err := json.Marshal(call)
	if err != nil {
		t.Fatal(err)
	}
	frame := []byte{'C'}
	frame = binary.BigEndian.AppendUint32(frame, uint32(len(body)))
	return append(frame, body...)
}

// testControllerPort plays a process without a broker certificate on
// every broker's controller port: it tries to register as broker 4, to
// propose an ACL making alice a cluster admin, to read the controller's
// state and to speak Raft. Each connection must be closed without a byte
// of answer, and nothing may change. (Without CHRONIK_CONTROLLER_TLS the
// same call frames are answered, and the leader registers broker 4.)
func (c *secureCluster) testControllerPort(t *testing.T) {
	register := callFrame(t, map[string]any{"heartbeat": replication.BrokerInfo{
		ID: 4, Host: "127.0.0.1", Port: 1, RaftAddr: "127.0.0.1:1", Incarnation: "intruder",
	}})
	propose := callFrame(t, map[string]any{"propose": replication.Request{Security: &replication.SecurityChange{
		CreateACLs: []security.ACL{{
			ResourceType: kmsg.ACLResourceTypeCluster, ResourceName: security.ClusterResourceName,
			PatternType: kmsg.ACLResourcePatternTypeLiteral, Principal: "User:alice", Host: "*",
			Operation: kmsg.ACLOperationAll, Permission: kmsg.ACLPermissionTypeAllow,
		}},
	}}})
	// Reading the controller's state is refused too.
	probe := callFrame(t, map[string]any{"probe": true})
	// A Raft connection: the kind byte and some bytes of a first message.
	raft := append([]byte{'R'}, make([]byte, 64)...)

	dialers := []struct {
		name string
		tls  *tls.Config // nil: plain TCP
	}{
		{"plain-tcp", nil},
		{"tls-alice-certificate", c.pki.tls(t, "alice")},
		{"tls-no-certificate", c.pki.tls(t, "")},
	}
	payloads := []struct {
		name  string
		bytes []byte
	}{{"register", register}, {"propose", propose}, {"probe", probe}, {"raft", raft}}
	for _, d := range dialers {
		for _, pl := range payloads {
			t.Run(d.name+"/"+pl.name, func(t *testing.T) {
				for i, b := range c.bs {
					if err := refused(b.RaftAddr(), d.tls, pl.bytes); err != nil {
						t.Errorf("broker %d's controller port %s: %v", i+1, b.RaftAddr(), err)
					}
				}
			})
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	t.Run("nothing-changed", func(t *testing.T) {
		md, err := c.adm.BrokerMetadata(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ids := md.Brokers.NodeIDs()
		slices.Sort(ids)
		if !slices.Equal(ids, []int32{1, 2, 3}) {
			t.Errorf("brokers after the intruder: %v, want [1 2 3]", ids)
		}
		acls, err := c.adm.DescribeACLs(ctx, kadm.NewACLs().Allow("User:alice").AllowHosts().Clusters().
			ResourcePatternType(kadm.ACLPatternAny).Operations(kadm.OpAny))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range acls {
			if r.Err != nil {
				t.Fatalf("DescribeAcls: %v", r.Err)
			}
			if len(r.Described) > 0 {
				t.Errorf("alice has cluster ACLs after the intruder's proposal: %+v", r.Described)
			}
		}
	})
}

// refused connects to addr (with TLS when cfg is set), writes payload and
// returns nil if the connection is closed within 5 s without a byte of
// answer; a TLS handshake the server refuses counts as closed.
func refused(addr string, cfg *tls.Config, payload []byte) error {
	start := time.Now()
	raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer raw.Close()
	raw.SetDeadline(start.Add(10 * time.Second))
	var nc net.Conn = raw
	if cfg != nil {
		tc := tls.Client(raw, cfg)
		if err := tc.Handshake(); err != nil {
			return checkClosed(start, nil, err, "TLS handshake")
		}
		nc = tc
	}
	if _, err := nc.Write(payload); err != nil {
		return checkClosed(start, nil, err, "write")
	}
	got, err := io.ReadAll(nc)
	return checkClosed(start, got, err, "read")
}

func checkClosed(start time.Time, got []byte, err error, step string) error {
	took := time.Since(start)
	var ne net.Error
	switch {
	case len(got) > 0:
		return fmt.Errorf("answered %d bytes: %q", len(got), got)
	case errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("still open after %v (%s)", took.Round(time.Millisecond), step)
	case took > 5*time.Second:
		return fmt.Errorf("closed only after %v (%s: %v)", took.Round(time.Millisecond), step, err)
	}
	return nil
}

// testFollowerFetch: a Fetch claiming to come from replica 2, sent by a
// client, not a broker, must be refused even on a topic the client may
// read. Kafka needs CLUSTER_ACTION on the cluster for a follower's fetch
// and, without it, answers TOPIC_AUTHORIZATION_FAILED in every partition
// (KafkaApis.handleFetchRequest, unchanged from 2.x to 4.x), not
// CLUSTER_AUTHORIZATION_FAILED.
func (c *secureCluster) testFollowerFetch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const topic = "sec-replica"
	aliceAdm := kadm.NewClient(c.alice)
	createTopic(ctx, t, aliceAdm, topic, 1, 3, nil)
	if err := c.alice.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("alice's record")}).FirstErr(); err != nil {
		t.Fatalf("produce to %s as alice: %v", topic, err)
	}
	md, err := aliceAdm.Metadata(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	td := md.Topics[topic]
	if td.Err != nil || len(td.Partitions) != 1 {
		t.Fatalf("metadata of %s as alice: %v, %d partitions", topic, td.Err, len(td.Partitions))
	}
	leader := td.Partitions[0].Leader

	fetch := func(replica int32) *kmsg.FetchResponse {
		req := kmsg.NewPtrFetchRequest()
		req.ReplicaID = replica // before v15
		req.ReplicaState.ID = replica
		req.ReplicaState.Epoch = -1
		req.MaxWaitMillis = 100
		req.MaxBytes = 1 << 20
		req.SessionEpoch = -1
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic, rt.TopicID = topic, td.ID
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.PartitionMaxBytes = 1 << 20
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		resp, err := c.alice.Broker(int(leader)).Request(ctx, req)
		if err != nil {
			t.Fatalf("Fetch as replica %d: %v", replica, err)
		}
		return resp.(*kmsg.FetchResponse)
	}
	// A consumer's fetch by alice works: the refusal below is about the
	// replica ID alone.
	if resp := fetch(-1); resp.ErrorCode != 0 || len(resp.Topics) != 1 || resp.Topics[0].Partitions[0].ErrorCode != 0 {
		t.Fatalf("consumer Fetch of %s as alice: %+v, want success", topic, resp)
	}
	resp := fetch(2)
	if resp.ErrorCode != 0 || len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		t.Fatalf("Fetch v%d as replica 2 by alice: top-level %s, %d topics; want one partition with TOPIC_AUTHORIZATION_FAILED",
			resp.Version, errName(resp.ErrorCode), len(resp.Topics))
	}
	p := resp.Topics[0].Partitions[0]
	if p.ErrorCode != kerr.TopicAuthorizationFailed.Code {
		t.Errorf("Fetch v%d as replica 2 by alice: %s, want TOPIC_AUTHORIZATION_FAILED (Kafka's answer to a follower fetch without CLUSTER_ACTION)",
			resp.Version, errName(p.ErrorCode))
	}
	if len(p.RecordBatches) > 0 {
		t.Errorf("Fetch v%d as replica 2 by alice returned %d bytes of records", resp.Version, len(p.RecordBatches))
	}
}

// acked is where an acknowledged record was written.
type acked struct {
	partition int32
	offset    int64
}

// testLeaderKill produces with an idempotent acks=all producer as admin
// over SASL_SSL, kills -9 the leader of partition 0 half way, keeps
// producing, and then reads everything back: every acknowledged record
// exactly once, at its acknowledged offset, and nothing else.
func (c *secureCluster) testLeaderKill(t *testing.T) {
	n := intKnob(t, "CHRONIK_SECURITY_CLUSTER_RECORDS", 2000)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const topic = "sec-acked"
	minISR := "2"
	createTopic(ctx, t, c.adm, topic, 3, 3, map[string]*string{"min.insync.replicas": &minISR})
	var leader int32
	testharness.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		md, err := c.adm.Metadata(ctx, topic)
		if err != nil {
			return err
		}
		td := md.Topics[topic]
		if td.Err != nil {
			return td.Err
		}
		for _, p := range td.Partitions {
			if p.Err != nil || len(p.ISR) != 3 {
				return fmt.Errorf("partition %d: ISR %v (%v)", p.Partition, p.ISR, p.Err)
			}
		}
		leader = td.Partitions[0].Leader
		return nil
	})

	cl := newClient(t, c.seeds, c.pki.tls(t, "admin"), saslMech(mechScram512, "admin", passwords["admin"]),
		kgo.DefaultProduceTopic(topic), kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()), kgo.RecordDeliveryTimeout(90*time.Second),
		kgo.ProducerLinger(time.Millisecond), kgo.MaxBufferedRecords(100),
		// Fail over quickly: refresh metadata soon after the leader dies.
		kgo.MetadataMinAge(250*time.Millisecond), kgo.RequestTimeoutOverhead(2*time.Second))
	var (
		mu       sync.Mutex
		byValue  = map[string]acked{}
		failures []error
	)
	start := time.Now()
	for i := range n {
		if i == n/2 {
			mu.Lock()
			ackedBefore := len(byValue)
			mu.Unlock()
			t.Logf("%d records sent, %d acknowledged: killing broker %d, the leader of partition 0", i, ackedBefore, leader)
			c.bs[leader-1].Kill()
		}
		rec := &kgo.Record{Value: fmt.Appendf(nil, "acked-%06d", i)}
		cl.Produce(ctx, rec, func(r *kgo.Record, err error) {
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failures = append(failures, fmt.Errorf("%s: %w", r.Value, err))
				return
			}
			byValue[string(r.Value)] = acked{r.Partition, r.Offset}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatalf("flush: %v", err)
	}
	mu.Lock()
	t.Logf("%d of %d records acknowledged in %v, %d failed", len(byValue), n, time.Since(start).Round(time.Millisecond), len(failures))
	if len(failures) > 0 {
		t.Errorf("%d records were not acknowledged with two of three replicas up (min.insync.replicas=2), first: %v", len(failures), failures[0])
	}
	mu.Unlock()

	// Read every partition up to its high watermark from the survivors.
	var live []string
	for i, b := range c.bs {
		if int32(i+1) != leader {
			live = append(live, b.ListenerAddr("SASL_SSL"))
		}
	}
	liveAdm := kadm.NewClient(newClient(t, live, c.pki.tls(t, "admin"), saslMech(mechScram512, "admin", passwords["admin"])))
	var ends kadm.ListedOffsets
	testharness.CheckFor(t, 30*time.Second, 200*time.Millisecond, func() error {
		var err error
		if ends, err = liveAdm.ListEndOffsets(ctx, topic); err == nil {
			err = ends.Error()
		}
		return err
	})
	md, err := liveAdm.Metadata(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	if p0 := md.Topics[topic].Partitions[0]; p0.Leader == leader || p0.Leader < 0 {
		t.Errorf("partition 0 is led by %d after its leader %d was killed", p0.Leader, leader)
	} else {
		t.Logf("partition 0 is now led by broker %d, ISR %v", p0.Leader, p0.ISR)
	}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) { want[o.Partition] = o.Offset })
	offsets := map[int32]kgo.Offset{}
	for p := range want {
		offsets[p] = kgo.NewOffset().AtStart()
	}
	cons := newClient(t, live, c.pki.tls(t, "admin"), saslMech(mechScram512, "admin", passwords["admin"]),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}))
	read := map[string][]acked{}
	next := map[int32]int64{}
	done := func() bool {
		for p, end := range want {
			if next[p] < end {
				return false
			}
		}
		return true
	}
	for !done() {
		fs := cons.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("reading back: %v (at %v of %v)", err, next, want)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Logf("fetch %s[%d]: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			read[string(r.Value)] = append(read[string(r.Value)], acked{r.Partition, r.Offset})
			next[r.Partition] = r.Offset + 1
		})
	}

	var problems []string
	for v, at := range byValue {
		switch got := read[v]; {
		case len(got) == 0:
			problems = append(problems, fmt.Sprintf("acknowledged %s at %d/%d lost", v, at.partition, at.offset))
		case len(got) > 1:
			problems = append(problems, fmt.Sprintf("%s read %d times: %v", v, len(got), got))
		case got[0] != at:
			problems = append(problems, fmt.Sprintf("%s acknowledged at %d/%d, read at %d/%d", v, at.partition, at.offset, got[0].partition, got[0].offset))
		}
	}
	for v, got := range read {
		if _, ok := byValue[v]; !ok && len(got) > 1 {
			problems = append(problems, fmt.Sprintf("unacknowledged %s read %d times: %v", v, len(got), got))
		}
	}
	slices.Sort(problems)
	for i, p := range problems {
		if i == 20 {
			t.Errorf("and %d more", len(problems)-20)
			break
		}
		t.Error(p)
	}
	t.Logf("read %d distinct records back up to the high watermarks %v", len(read), want)
}
