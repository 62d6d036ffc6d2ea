package broker

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/chronik-go/chronik/security"
)

// aclBroker starts a standalone broker with a PLAINTEXT and a
// SASL_PLAINTEXT listener, the authorizer az (nil: none) and the SCRAM
// users admin and alice, and returns it with the SASL listener's address
// once both users exist.
func aclBroker(t *testing.T, az *security.Authorizer) (*Broker, string) {
	t.Helper()
	b := testBroker(t, t.TempDir(), func(c *Config) {
		c.Listeners = []security.Listener{
			{Name: "PLAINTEXT", Protocol: security.Plaintext, Host: "127.0.0.1", Port: 0},
			{Name: "SASL_PLAINTEXT", Protocol: security.SaslPlaintext, Host: "127.0.0.1", Port: 0},
		}
		c.Authorizer = az
		c.BootstrapUsers = []security.ScramUser{
			{Mechanism: security.MechanismScramSHA512, Name: "admin", Password: "admin-secret"},
			{Mechanism: security.MechanismScramSHA512, Name: "alice", Password: "alice-secret"},
		}
		c.GroupInitialRebalanceDelay = 0
	})
	checkFor(t, 10*time.Second, func() error {
		for _, u := range []string{"admin", "alice"} {
			if _, ok := b.secState().Credential(u, security.MechanismScramSHA512); !ok {
				return fmt.Errorf("bootstrap user %s not created yet", u)
			}
		}
		return nil
	})
	l := b.listenerNamed("SASL_PLAINTEXT")
	if l == nil {
		t.Fatal("no SASL_PLAINTEXT listener")
	}
	return b, l.ln.Addr().String()
}

// aclClient is a client of the SASL listener at addr authenticated as
// user (password user-secret).
func aclClient(t *testing.T, addr, user string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(addr),
		kgo.SASL(scram.Auth{User: user, Pass: user + "-secret"}.AsSha512Mechanism()),
		kgo.RequestRetries(0),
	}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// aclEnv is a broker's admin client and the IDs of the topics it
// created.
type aclEnv struct {
	t     *testing.T
	admin *kadm.Client
	ids   map[string][16]byte
}

func newACLEnv(t *testing.T, addr string, topics ...string) *aclEnv {
	t.Helper()
	e := &aclEnv{t: t, admin: kadm.NewClient(aclClient(t, addr, "admin")), ids: map[string][16]byte{}}
	ctx := testCtx(t)
	if _, err := e.admin.CreateTopics(ctx, 1, 1, nil, topics...); err != nil {
		t.Fatal(err)
	}
	details, err := e.admin.ListTopics(ctx, topics...)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range topics {
		if details[name].Err != nil {
			t.Fatalf("topic %s: %v", name, details[name].Err)
		}
		e.ids[name] = details[name].ID
	}
	return e
}

func (e *aclEnv) grant(b *kadm.ACLBuilder) {
	e.t.Helper()
	res, err := e.admin.CreateACLs(testCtx(e.t), b)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, r := range res {
		if r.Err != nil {
			e.t.Fatalf("create ACL %+v: %v", r, r.Err)
		}
	}
}

// The requests of the table: each returns the error codes the response
// gives the resource asked about (one per partition, group or topic).
func (e *aclEnv) produce(cl *kgo.Client, topic string) []int16 {
	req := produceReq(topic, 0, makeBatch(1, -1, -1, 0, time.Now().UnixMilli()), -1)
	req.Topics[0].TopicID = e.ids[topic]
	resp := e.issue(cl, req).(*kmsg.ProduceResponse)
	var codes []int16
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			codes = append(codes, p.ErrorCode)
		}
	}
	return codes
}

func (e *aclEnv) fetch(cl *kgo.Client, topic string, replica int32) []int16 {
	req := kmsg.NewPtrFetchRequest()
	req.ReplicaID, req.ReplicaState.ID = replica, replica
	req.MaxBytes, req.MaxWaitMillis = 1<<20, 0
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic, rt.TopicID = topic, e.ids[topic]
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.Partition, rp.PartitionMaxBytes, rp.CurrentLeaderEpoch = 0, 1<<20, -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp := e.issue(cl, req).(*kmsg.FetchResponse)
	if resp.ErrorCode != 0 {
		return []int16{resp.ErrorCode}
	}
	var codes []int16
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			codes = append(codes, p.ErrorCode)
		}
	}
	return codes
}

// issue sends req to the broker itself: the client's routing would look
// up partition leaders and coordinators first, which alice may be denied.
func (e *aclEnv) issue(cl *kgo.Client, req kmsg.Request) kmsg.Response {
	e.t.Helper()
	resp, err := cl.SeedBrokers()[0].Request(testCtx(e.t), req)
	if err != nil {
		e.t.Fatalf("%s: %v", kmsg.NameForKey(req.Key()), err)
	}
	return resp
}

// metadata returns the topics a Metadata request answers, by name (or
// by ID when unnamed), with their error codes and authorized operations.
func (e *aclEnv) metadata(cl *kgo.Client, topics ...string) (codes map[string]int16, ops map[string]int32, cluster int32) {
	req := kmsg.NewPtrMetadataRequest()
	req.IncludeTopicAuthorizedOperations, req.IncludeClusterAuthorizedOperations = true, true
	req.AllowAutoTopicCreation = true
	if topics != nil {
		req.Topics = []kmsg.MetadataRequestTopic{}
		for _, name := range topics {
			rt := kmsg.NewMetadataRequestTopic()
			rt.Topic = kmsg.StringPtr(name)
			req.Topics = append(req.Topics, rt)
		}
	}
	resp := e.issue(cl, req).(*kmsg.MetadataResponse)
	codes, ops = map[string]int16{}, map[string]int32{}
	for _, t := range resp.Topics {
		name := fmt.Sprintf("%x", t.TopicID)
		if t.Topic != nil {
			name = *t.Topic
		}
		codes[name], ops[name] = t.ErrorCode, t.AuthorizedOperations
	}
	return codes, ops, resp.AuthorizedOperations
}

func opBits(ops ...kmsg.ACLOperation) int32 {
	var bits int32
	for _, op := range ops {
		bits |= 1 << op
	}
	return bits
}

var (
	allTopicOps = opBits(kmsg.ACLOperationRead, kmsg.ACLOperationWrite, kmsg.ACLOperationCreate, kmsg.ACLOperationDescribe,
		kmsg.ACLOperationDelete, kmsg.ACLOperationAlter, kmsg.ACLOperationDescribeConfigs, kmsg.ACLOperationAlterConfigs)
	allClusterOps = opBits(kmsg.ACLOperationCreate, kmsg.ACLOperationClusterAction, kmsg.ACLOperationDescribeConfigs,
		kmsg.ACLOperationAlterConfigs, kmsg.ACLOperationIdempotentWrite, kmsg.ACLOperationAlter, kmsg.ACLOperationDescribe)
)

func code(e *kerr.Error) int16 { return e.Code }

// TestACLEnforcement runs every request of the table as alice: first with
// no ACLs (everything denied), then with WRITE and READ on the topics
// prefixed "orders", READ on group billing and a DENY of everything on
// orders-secret. Each runs at the newest versions (topics by ID where the
// API allows) and at Kafka 2.4's (by name).
func TestACLEnforcement(t *testing.T) {
	b, addr := aclBroker(t, &security.Authorizer{SuperUsers: []string{"User:admin"}})
	e := newACLEnv(t, addr, "orders-eu", "orders-secret", "payments")
	versions := map[string]*kversion.Versions{"newest": nil, "kafka-2.4": kversion.V2_4_0()}
	alice := map[string]*kgo.Client{}
	for name, v := range versions {
		var opts []kgo.Opt
		if v != nil {
			opts = append(opts, kgo.MaxVersions(v))
		}
		alice[name] = aclClient(t, addr, "alice", opts...)
	}
	taf, gaf, caf := code(kerr.TopicAuthorizationFailed), code(kerr.GroupAuthorizationFailed), code(kerr.ClusterAuthorizationFailed)

	type check struct {
		name string
		run  func(cl *kgo.Client) []int16
		want []int16
	}
	joinGroup := func(cl *kgo.Client, group string) []int16 {
		req := kmsg.NewPtrJoinGroupRequest()
		req.Group, req.ProtocolType, req.SessionTimeoutMillis, req.RebalanceTimeoutMillis = group, "consumer", 10000, 10000
		req.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range"}}
		return []int16{e.issue(cl, req).(*kmsg.JoinGroupResponse).ErrorCode}
	}
	deleteTopic := func(cl *kgo.Client, topic string) []int16 {
		req := kmsg.NewPtrDeleteTopicsRequest()
		req.TopicNames = []string{topic}
		req.Topics = []kmsg.DeleteTopicsRequestTopic{{Topic: kmsg.StringPtr(topic)}}
		return []int16{e.issue(cl, req).(*kmsg.DeleteTopicsResponse).Topics[0].ErrorCode}
	}
	createTopic := func(cl *kgo.Client, topic string) []int16 {
		req := kmsg.NewPtrCreateTopicsRequest()
		rt := kmsg.NewCreateTopicsRequestTopic()
		rt.Topic, rt.NumPartitions, rt.ReplicationFactor = topic, 1, 1
		req.Topics = append(req.Topics, rt)
		return []int16{e.issue(cl, req).(*kmsg.CreateTopicsResponse).Topics[0].ErrorCode}
	}
	initProducerID := func(cl *kgo.Client) []int16 {
		req := kmsg.NewPtrInitProducerIDRequest()
		req.ProducerID, req.ProducerEpoch = -1, -1
		return []int16{e.issue(cl, req).(*kmsg.InitProducerIDResponse).ErrorCode}
	}
	findCoordinator := func(cl *kgo.Client, group string) []int16 {
		req := kmsg.NewPtrFindCoordinatorRequest()
		req.CoordinatorKey, req.CoordinatorKeys = group, []string{group}
		resp := e.issue(cl, req).(*kmsg.FindCoordinatorResponse)
		if len(resp.Coordinators) > 0 {
			return []int16{resp.Coordinators[0].ErrorCode}
		}
		return []int16{resp.ErrorCode}
	}
	listOffsets := func(cl *kgo.Client, topic string) []int16 {
		req := kmsg.NewPtrListOffsetsRequest()
		rt := kmsg.NewListOffsetsRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Timestamp = -1
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		return []int16{e.issue(cl, req).(*kmsg.ListOffsetsResponse).Topics[0].Partitions[0].ErrorCode}
	}
	describeConfigs := func(cl *kgo.Client, typ kmsg.ConfigResourceType, name string) []int16 {
		req := kmsg.NewPtrDescribeConfigsRequest()
		rr := kmsg.NewDescribeConfigsRequestResource()
		rr.ResourceType, rr.ResourceName = typ, name
		req.Resources = append(req.Resources, rr)
		return []int16{e.issue(cl, req).(*kmsg.DescribeConfigsResponse).Resources[0].ErrorCode}
	}
	electLeaders := func(cl *kgo.Client) []int16 {
		req := kmsg.NewPtrElectLeadersRequest()
		rt := kmsg.NewElectLeadersRequestTopic()
		rt.Topic, rt.Partitions = "orders-eu", []int32{0}
		req.Topics = append(req.Topics, rt)
		return []int16{e.issue(cl, req).(*kmsg.ElectLeadersResponse).ErrorCode}
	}
	metadataCode := func(cl *kgo.Client, topic string) []int16 {
		codes, _, _ := e.metadata(cl, topic)
		return []int16{codes[topic]}
	}

	denied := []check{
		{"produce", func(cl *kgo.Client) []int16 { return e.produce(cl, "orders-eu") }, []int16{taf}},
		{"fetch", func(cl *kgo.Client) []int16 { return e.fetch(cl, "orders-eu", -1) }, []int16{taf}},
		{"fetch as a replica", func(cl *kgo.Client) []int16 { return e.fetch(cl, "orders-eu", 1) }, []int16{taf}},
		{"list offsets", func(cl *kgo.Client) []int16 { return listOffsets(cl, "orders-eu") }, []int16{taf}},
		{"join group", func(cl *kgo.Client) []int16 { return joinGroup(cl, "billing") }, []int16{gaf}},
		{"find coordinator", func(cl *kgo.Client) []int16 { return findCoordinator(cl, "billing") }, []int16{gaf}},
		{"delete topic", func(cl *kgo.Client) []int16 { return deleteTopic(cl, "orders-eu") }, []int16{taf}},
		{"create topic", func(cl *kgo.Client) []int16 { return createTopic(cl, "orders-new") }, []int16{taf}},
		{"init producer ID", initProducerID, []int16{caf}},
		{"describe topic configs", func(cl *kgo.Client) []int16 {
			return describeConfigs(cl, kmsg.ConfigResourceTypeTopic, "orders-eu")
		}, []int16{taf}},
		{"describe broker configs", func(cl *kgo.Client) []int16 {
			return describeConfigs(cl, kmsg.ConfigResourceTypeBroker, "")
		}, []int16{caf}},
		{"metadata of an existing topic", func(cl *kgo.Client) []int16 { return metadataCode(cl, "payments") }, []int16{taf}},
		{"metadata of a missing topic", func(cl *kgo.Client) []int16 { return metadataCode(cl, "nope") }, []int16{taf}},
		{"elect leaders", electLeaders, []int16{caf}},
	}
	for vname, cl := range alice {
		for _, c := range denied {
			t.Run("no ACLs/"+vname+"/"+c.name, func(t *testing.T) {
				if got := c.run(cl); !slices.Equal(got, c.want) {
					t.Errorf("error codes %v, want %v", got, c.want)
				}
			})
		}
		t.Run("no ACLs/"+vname+"/metadata of every topic", func(t *testing.T) {
			codes, _, cluster := e.metadata(cl)
			if len(codes) != 0 {
				t.Errorf("alice sees topics %v; want none", codes)
			}
			if vname == "kafka-2.4" && cluster != 0 {
				t.Errorf("cluster authorized operations %b, want 0 without DESCRIBE on the cluster", cluster)
			}
		})
	}
	if b.lookupTopic("nope") != nil {
		t.Error("a denied Metadata request auto-created topic nope")
	}

	e.grant(kadm.NewACLs().Allow("User:alice").Topics("orders").ResourcePatternType(kadm.ACLPatternPrefixed).
		Operations(kadm.OpWrite, kadm.OpRead))
	e.grant(kadm.NewACLs().Allow("User:alice").Groups("billing").Operations(kadm.OpRead))
	e.grant(kadm.NewACLs().Deny("User:alice").Topics("orders-secret").Operations(kadm.OpAll))

	allowed := []check{
		{"produce", func(cl *kgo.Client) []int16 { return e.produce(cl, "orders-eu") }, []int16{0}},
		{"fetch", func(cl *kgo.Client) []int16 { return e.fetch(cl, "orders-eu", -1) }, []int16{0}},
		{"fetch as a replica", func(cl *kgo.Client) []int16 { return e.fetch(cl, "orders-eu", 1) }, []int16{taf}},
		{"list offsets", func(cl *kgo.Client) []int16 { return listOffsets(cl, "orders-eu") }, []int16{0}},
		{"produce denied", func(cl *kgo.Client) []int16 { return e.produce(cl, "orders-secret") }, []int16{taf}},
		{"fetch denied", func(cl *kgo.Client) []int16 { return e.fetch(cl, "orders-secret", -1) }, []int16{taf}},
		{"produce to another topic", func(cl *kgo.Client) []int16 { return e.produce(cl, "payments") }, []int16{taf}},
		{"find coordinator", func(cl *kgo.Client) []int16 { return findCoordinator(cl, "billing") }, []int16{0}},
		{"find another coordinator", func(cl *kgo.Client) []int16 { return findCoordinator(cl, "other") }, []int16{gaf}},
		{"join another group", func(cl *kgo.Client) []int16 { return joinGroup(cl, "other") }, []int16{gaf}},
		{"delete topic", func(cl *kgo.Client) []int16 { return deleteTopic(cl, "orders-eu") }, []int16{taf}},
		{"create topic", func(cl *kgo.Client) []int16 { return createTopic(cl, "orders-new") }, []int16{taf}},
		{"init producer ID", initProducerID, []int16{0}},
		{"elect leaders", electLeaders, []int16{caf}},
		{"metadata of a denied topic", func(cl *kgo.Client) []int16 { return metadataCode(cl, "orders-secret") }, []int16{taf}},
		{"metadata of a topic it may not create", func(cl *kgo.Client) []int16 { return metadataCode(cl, "orders-auto") }, []int16{taf}},
	}
	for vname, cl := range alice {
		for _, c := range allowed {
			t.Run("ACLs/"+vname+"/"+c.name, func(t *testing.T) {
				if got := c.run(cl); !slices.Equal(got, c.want) {
					t.Errorf("error codes %v, want %v", got, c.want)
				}
			})
		}
		t.Run("ACLs/"+vname+"/metadata of every topic", func(t *testing.T) {
			codes, ops, _ := e.metadata(cl)
			want := map[string]int16{"orders-eu": 0}
			if fmt.Sprint(codes) != fmt.Sprint(want) {
				t.Errorf("alice sees %v, want %v", codes, want)
			}
			if got, want := ops["orders-eu"], opBits(kmsg.ACLOperationRead, kmsg.ACLOperationWrite, kmsg.ACLOperationDescribe); got != want {
				t.Errorf("orders-eu authorized operations %b, want %b", got, want)
			}
		})
	}
	if b.lookupTopic("orders-auto") != nil {
		t.Error("Metadata auto-created orders-auto without CREATE")
	}

	t.Run("admin", func(t *testing.T) {
		admin := aclClient(t, addr, "admin", kgo.MaxVersions(kversion.V2_4_0()))
		codes, ops, cluster := e.metadata(admin)
		for _, name := range []string{"orders-eu", "orders-secret", "payments"} {
			if codes[name] != 0 || ops[name] != allTopicOps {
				t.Errorf("admin: %s code %d, operations %b; want 0, %b", name, codes[name], ops[name], allTopicOps)
			}
		}
		if cluster != allClusterOps {
			t.Errorf("admin: cluster operations %b, want %b", cluster, allClusterOps)
		}
		if got := e.fetch(admin, "orders-eu", 1); !slices.Equal(got, []int16{0}) {
			t.Errorf("admin fetch as a replica: %v, want [0] (a super user has CLUSTER_ACTION)", got)
		}
	})

	t.Run("consumer group", func(t *testing.T) {
		cl := alice["newest"]
		ctx := testCtx(t)
		for i := range 3 {
			if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "orders-eu", Value: fmt.Appendf(nil, "v%d", i)}).FirstErr(); err != nil {
				t.Fatalf("produce: %v", err)
			}
		}
		consumer := aclClient(t, addr, "alice", kgo.ConsumerGroup("billing"), kgo.ConsumeTopics("orders-eu"),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit())
		n := 0
		for n < 5 { // two raw produces above, three here
			fs := consumer.PollFetches(ctx)
			if err := fs.Err0(); err != nil {
				t.Fatalf("poll: %v", err)
			}
			n += fs.NumRecords()
		}
		if err := consumer.CommitUncommittedOffsets(ctx); err != nil {
			t.Fatalf("commit: %v", err)
		}

		adm := kadm.NewClient(cl)

		// A commit of a topic alice may not read commits the others.
		commit := kmsg.NewPtrOffsetCommitRequest()
		commit.Group, commit.Generation = "billing-offsets", -1
		for _, name := range []string{"orders-eu", "payments"} {
			rt := kmsg.NewOffsetCommitRequestTopic()
			rt.Topic, rt.TopicID = name, e.ids[name]
			rp := kmsg.NewOffsetCommitRequestTopicPartition()
			rp.Offset = 1
			rt.Partitions = append(rt.Partitions, rp)
			commit.Topics = append(commit.Topics, rt)
		}
		e.grant(kadm.NewACLs().Allow("User:alice").Groups("billing-offsets").Operations(kadm.OpRead))
		cresp := e.issue(cl, commit).(*kmsg.OffsetCommitResponse)
		got := map[string]int16{}
		for _, t := range cresp.Topics {
			name := t.Topic
			if name == "" {
				for n, id := range e.ids {
					if id == t.TopicID {
						name = n
					}
				}
			}
			got[name] = t.Partitions[0].ErrorCode
		}
		if want := map[string]int16{"orders-eu": 0, "payments": taf}; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("offset commit codes %v, want %v", got, want)
		}

		if o, err := adm.FetchOffsets(ctx, "billing"); err != nil {
			t.Fatal(err)
		} else if o, ok := o.Lookup("orders-eu", 0); !ok || o.At != 5 {
			t.Errorf("alice's offset of orders-eu in billing: %v, want 5", o)
		}

		// The group's committed offsets: of every topic, the denied ones
		// are left out; a denied one named gets TOPIC_AUTHORIZATION_FAILED,
		// and a group alice may not describe GROUP_AUTHORIZATION_FAILED.
		var admOffsets kadm.Offsets
		admOffsets.Add(kadm.Offset{Topic: "payments", Partition: 0, At: 7, LeaderEpoch: -1})
		if _, err := e.admin.CommitOffsets(ctx, "billing-offsets", admOffsets); err != nil {
			t.Fatal(err)
		}
		offsets, err := adm.FetchOffsets(ctx, "billing-offsets")
		if err != nil {
			t.Fatal(err)
		}
		if o, ok := offsets.Lookup("orders-eu", 0); !ok || o.At != 1 || len(offsets) != 1 {
			t.Errorf("alice's offsets of billing-offsets: %v, want orders-eu at 1 only", offsets)
		}
		freq := kmsg.NewPtrOffsetFetchRequest()
		for _, g := range []string{"billing-offsets", "other"} {
			rg := kmsg.NewOffsetFetchRequestGroup()
			rg.Group = g
			for _, name := range []string{"orders-eu", "payments"} {
				rt := kmsg.NewOffsetFetchRequestGroupTopic()
				rt.Topic, rt.TopicID, rt.Partitions = name, e.ids[name], []int32{0}
				rg.Topics = append(rg.Topics, rt)
			}
			freq.Groups = append(freq.Groups, rg)
		}
		fresp := e.issue(cl, freq).(*kmsg.OffsetFetchResponse)
		var fetched []string
		for _, g := range fresp.Groups {
			fetched = append(fetched, fmt.Sprintf("%s:%d", g.Group, g.ErrorCode))
			for _, rt := range g.Topics {
				p := rt.Partitions[0]
				fetched = append(fetched, fmt.Sprintf("%x:%d@%d", rt.TopicID, p.ErrorCode, p.Offset))
			}
		}
		want := []string{
			"billing-offsets:0",
			fmt.Sprintf("%x:0@1", e.ids["orders-eu"]),
			fmt.Sprintf("%x:%d@-1", e.ids["payments"], taf),
			fmt.Sprintf("other:%d", gaf),
		}
		if !slices.Equal(fetched, want) {
			t.Errorf("offset fetch answered %v, want %v", fetched, want)
		}

		// DescribeGroups fills the authorized operations asked for.
		dreq := kmsg.NewPtrDescribeGroupsRequest()
		dreq.Groups, dreq.IncludeAuthorizedOperations = []string{"billing", "other"}, true
		dresp := e.issue(cl, dreq).(*kmsg.DescribeGroupsResponse)
		if g := dresp.Groups[0]; g.ErrorCode != 0 || g.AuthorizedOperations != opBits(kmsg.ACLOperationRead, kmsg.ACLOperationDescribe) {
			t.Errorf("describe billing: code %d, operations %b", g.ErrorCode, g.AuthorizedOperations)
		}
		if g := dresp.Groups[1]; g.ErrorCode != gaf {
			t.Errorf("describe other: code %d, want GROUP_AUTHORIZATION_FAILED", g.ErrorCode)
		}

		// ListGroups shows the groups alice may describe.
		groups, err := adm.ListGroups(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if names := groups.Groups(); !slices.Equal(names, []string{"billing", "billing-offsets"}) {
			t.Errorf("alice lists groups %v", names)
		}

		// Deleting a group needs DELETE on it.
		deleted, err := adm.DeleteGroups(ctx, "billing")
		if err != nil {
			t.Fatal(err)
		}
		if r := deleted["billing"]; !errorsIs(r.Err, kerr.GroupAuthorizationFailed) {
			t.Errorf("delete billing: %v, want GROUP_AUTHORIZATION_FAILED", r.Err)
		}
	})

	t.Run("KIP-848 and topic IDs", func(t *testing.T) {
		cl := alice["newest"]
		heartbeat := func(group string, topics ...string) int16 {
			req := kmsg.NewPtrConsumerGroupHeartbeatRequest()
			req.Group, req.MemberID, req.MemberEpoch, req.RebalanceTimeoutMillis = group, "m-1", 0, 10000
			req.SubscribedTopicNames, req.Topics = topics, []kmsg.ConsumerGroupHeartbeatRequestTopic{}
			return e.issue(cl, req).(*kmsg.ConsumerGroupHeartbeatResponse).ErrorCode
		}
		if got := heartbeat("other", "orders-eu"); got != gaf {
			t.Errorf("heartbeat into other: %d, want GROUP_AUTHORIZATION_FAILED", got)
		}
		if got := heartbeat("billing-848", "orders-eu", "payments"); got != gaf {
			t.Errorf("heartbeat into billing-848 before READ: %d, want GROUP_AUTHORIZATION_FAILED", got)
		}
		e.grant(kadm.NewACLs().Allow("User:alice").Groups("billing-848").Operations(kadm.OpRead))
		if got := heartbeat("billing-848", "orders-eu", "payments"); got != taf {
			t.Errorf("heartbeat subscribing to payments: %d, want TOPIC_AUTHORIZATION_FAILED", got)
		}
		if got := heartbeat("billing-848", "orders-eu"); got != 0 {
			t.Errorf("heartbeat subscribing to orders-eu: %d, want 0", got)
		}

		describe := kmsg.NewPtrConsumerGroupDescribeRequest()
		describe.Groups, describe.IncludeAuthorizedOperations = []string{"billing-848", "other"}, true
		dresp := e.issue(cl, describe).(*kmsg.ConsumerGroupDescribeResponse)
		if g := dresp.Groups[0]; g.ErrorCode != 0 || len(g.Members) != 1 || g.AuthorizedOperations != opBits(kmsg.ACLOperationRead, kmsg.ACLOperationDescribe) {
			t.Errorf("describe billing-848: code %d, %d members, operations %b", g.ErrorCode, len(g.Members), g.AuthorizedOperations)
		}
		if g := dresp.Groups[1]; g.ErrorCode != gaf {
			t.Errorf("describe other: code %d, want GROUP_AUTHORIZATION_FAILED", g.ErrorCode)
		}

		// Once a member is assigned a topic alice may not describe, the
		// group is hidden from her.
		admin := aclClient(t, addr, "admin")
		join := kmsg.NewPtrConsumerGroupHeartbeatRequest()
		join.Group, join.MemberID, join.MemberEpoch, join.RebalanceTimeoutMillis = "billing-848", "m-admin", 0, 10000
		join.SubscribedTopicNames, join.Topics = []string{"payments"}, []kmsg.ConsumerGroupHeartbeatRequestTopic{}
		if code := e.issue(admin, join).(*kmsg.ConsumerGroupHeartbeatResponse).ErrorCode; code != 0 {
			t.Fatalf("admin joins billing-848: %d", code)
		}
		if g := e.issue(cl, describe).(*kmsg.ConsumerGroupDescribeResponse).Groups[0]; g.ErrorCode != taf || len(g.Members) != 0 {
			t.Errorf("describe billing-848 with payments assigned: code %d, %d members; want TOPIC_AUTHORIZATION_FAILED, none", g.ErrorCode, len(g.Members))
		}

		// A commit into a group alice may not read: every partition is
		// refused, each topic still named by its ID (v10).
		commit := kmsg.NewPtrOffsetCommitRequest()
		commit.Group, commit.Generation = "other", -1
		rt := kmsg.NewOffsetCommitRequestTopic()
		rt.Topic, rt.TopicID = "orders-eu", e.ids["orders-eu"]
		rt.Partitions = []kmsg.OffsetCommitRequestTopicPartition{{Partition: 0, Offset: 1, LeaderEpoch: -1}}
		commit.Topics = append(commit.Topics, rt)
		cresp := e.issue(cl, commit).(*kmsg.OffsetCommitResponse)
		if len(cresp.Topics) != 1 || cresp.Topics[0].TopicID != e.ids["orders-eu"] || cresp.Topics[0].Partitions[0].ErrorCode != gaf {
			t.Errorf("commit into other: %+v, want orders-eu's ID with GROUP_AUTHORIZATION_FAILED", cresp.Topics)
		}

		// A topic named by ID alice may not describe: no name returned.
		del := kmsg.NewPtrDeleteTopicsRequest()
		del.Topics = []kmsg.DeleteTopicsRequestTopic{{TopicID: e.ids["payments"]}}
		if rt := e.issue(cl, del).(*kmsg.DeleteTopicsResponse).Topics[0]; rt.ErrorCode != taf || rt.Topic != nil {
			t.Errorf("delete payments by ID: code %d, name %v; want TOPIC_AUTHORIZATION_FAILED and no name", rt.ErrorCode, rt.Topic)
		}
	})

	t.Run("auto-creation with CREATE", func(t *testing.T) {
		e.grant(kadm.NewACLs().Allow("User:alice").Topics("orders").ResourcePatternType(kadm.ACLPatternPrefixed).
			Operations(kadm.OpCreate))
		if got := metadataCode(alice["kafka-2.4"], "orders-auto"); !slices.Equal(got, []int16{0}) {
			t.Errorf("metadata of orders-auto: %v, want [0]", got)
		}
		if b.lookupTopic("orders-auto") == nil {
			t.Error("orders-auto not created")
		}
	})

	t.Run("describe cluster", func(t *testing.T) {
		req := kmsg.NewPtrDescribeClusterRequest()
		req.IncludeClusterAuthorizedOperations = true
		resp := e.issue(alice["newest"], req).(*kmsg.DescribeClusterResponse)
		if resp.ErrorCode != 0 || resp.ClusterAuthorizedOperations != 0 || len(resp.Brokers) != 1 {
			t.Errorf("describe cluster: code %d, operations %b, %d brokers", resp.ErrorCode, resp.ClusterAuthorizedOperations, len(resp.Brokers))
		}
	})
}

// Without an authorizer everything is allowed: authorized operations are
// every operation (as Kafka), and the ACL APIs answer SECURITY_DISABLED.
func TestACLsWithoutAuthorizer(t *testing.T) {
	_, addr := aclBroker(t, nil)
	e := newACLEnv(t, addr, "orders-eu")
	cl := aclClient(t, addr, "alice", kgo.MaxVersions(kversion.V2_4_0()))
	if got := e.produce(cl, "orders-eu"); !slices.Equal(got, []int16{0}) {
		t.Errorf("produce: %v", got)
	}
	if got := e.fetch(cl, "orders-eu", -1); !slices.Equal(got, []int16{0}) {
		t.Errorf("fetch: %v", got)
	}
	codes, ops, cluster := e.metadata(cl)
	if codes["orders-eu"] != 0 || ops["orders-eu"] != allTopicOps || cluster != allClusterOps {
		t.Errorf("metadata: codes %v, operations %v, cluster %b", codes, ops, cluster)
	}
	req := kmsg.NewPtrDescribeACLsRequest()
	req.ResourceType, req.ResourcePatternType = kmsg.ACLResourceTypeAny, kmsg.ACLResourcePatternTypeAny
	req.Operation, req.PermissionType = kmsg.ACLOperationAny, kmsg.ACLPermissionTypeAny
	if resp := e.issue(cl, req).(*kmsg.DescribeACLsResponse); resp.ErrorCode != code(kerr.SecurityDisabled) {
		t.Errorf("describe ACLs: code %d, want SECURITY_DISABLED", resp.ErrorCode)
	}

	// Nothing is looked up or allocated for the checks.
	c := &conn{b: &Broker{}}
	fr := kmsg.NewPtrFetchRequest()
	fr.Topics = make([]kmsg.FetchRequestTopic, 3)
	if n := testing.AllocsPerRun(100, func() {
		if a := c.fetchAuth(fr); a.all || a.denied != nil {
			t.Fatal("fetch denied without an authorizer")
		}
		if c.deniedTopics(kmsg.ACLOperationRead, 3, func(int) (string, [16]byte) { return "t", [16]byte{} }, false) != nil {
			t.Fatal("topics denied without an authorizer")
		}
	}); n != 0 {
		t.Errorf("%v allocations per check without an authorizer", n)
	}
}

// mayWriteSomeTopic follows Kafka's authorizeByResourceType: some ALLOW of
// WRITE on topics that no DENY dominates.
func TestMayWriteSomeTopic(t *testing.T) {
	acl := func(perm kmsg.ACLPermissionType, pattern kmsg.ACLResourcePatternType, name string, op kmsg.ACLOperation) security.ACL {
		return security.ACL{
			ResourceType: kmsg.ACLResourceTypeTopic, ResourceName: name, PatternType: pattern,
			Principal: "User:alice", Host: "*", Operation: op, Permission: perm,
		}
	}
	const (
		allow, deny       = kmsg.ACLPermissionTypeAllow, kmsg.ACLPermissionTypeDeny
		literal, prefixed = kmsg.ACLResourcePatternTypeLiteral, kmsg.ACLResourcePatternTypePrefixed
		write             = kmsg.ACLOperationWrite
	)
	for _, tc := range []struct {
		name       string
		acls       []security.ACL
		allowNoACL bool
		want       bool
	}{
		{"no ACLs", nil, false, false},
		{"no ACLs, allow if none", nil, true, true},
		{"literal allow", []security.ACL{acl(allow, literal, "a", write)}, false, true},
		{"ALL allows", []security.ACL{acl(allow, prefixed, "x", kmsg.ACLOperationAll)}, false, true},
		{"READ does not", []security.ACL{acl(allow, literal, "a", kmsg.ACLOperationRead)}, false, false},
		{"literal deny of the same name", []security.ACL{acl(allow, literal, "a", write), acl(deny, literal, "a", write)}, false, false},
		{"prefixed deny of a shorter prefix", []security.ACL{acl(allow, prefixed, "ord", write), acl(deny, prefixed, "or", write)}, false, false},
		{"literal deny does not dominate a prefix", []security.ACL{acl(allow, prefixed, "ord", write), acl(deny, literal, "ord", write)}, false, true},
		{"wildcard allow", []security.ACL{acl(allow, literal, "*", write), acl(deny, literal, "a", write)}, false, true},
		{"wildcard deny", []security.ACL{acl(allow, literal, "a", write), acl(deny, literal, "*", write)}, false, false},
		{"wildcard deny after wildcard allow", []security.ACL{acl(allow, literal, "*", write), acl(deny, literal, "*", write)}, false, false},
		{"another principal", []security.ACL{{ResourceType: kmsg.ACLResourceTypeTopic, ResourceName: "a", PatternType: literal,
			Principal: "User:bob", Host: "*", Operation: write, Permission: allow}}, false, false},
		{"another host", []security.ACL{{ResourceType: kmsg.ACLResourceTypeTopic, ResourceName: "a", PatternType: literal,
			Principal: "User:*", Host: "10.9.9.9", Operation: write, Permission: allow}}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := &Broker{cfg: Config{Authorizer: &security.Authorizer{AllowIfNoACL: tc.allowNoACL}}}
			b.sec.state.Store(&security.State{ACLs: tc.acls})
			c := &conn{b: b, host: "10.0.0.1"}
			c.auth.principal = "User:alice"
			if got := c.mayWriteSomeTopic(); got != tc.want {
				t.Errorf("mayWriteSomeTopic = %v, want %v", got, tc.want)
			}
		})
	}
	b := &Broker{cfg: Config{Authorizer: &security.Authorizer{SuperUsers: []string{"User:alice"}}}}
	c := &conn{b: b, host: "10.0.0.1"}
	c.auth.principal = "User:alice"
	if !c.mayWriteSomeTopic() {
		t.Error("a super user may not write")
	}
}
