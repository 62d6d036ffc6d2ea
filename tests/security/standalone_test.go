package security_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"

	"github.com/chronik-go/chronik/internal/testharness"
)

// standalone is one broker with the harness's PLAINTEXT listener, an SSL
// listener requesting client certificates and a SASL_SSL listener, the
// authorizer on, super user admin, and alice allowed READ, WRITE,
// DESCRIBE and CREATE on topics prefixed sec- and READ on groups prefixed
// sec-. bob has no ACL at all.
type standalone struct {
	b        *testharness.Broker
	pki      *pki
	saslAddr string
	sslAddr  string
	adm      *kadm.Client // admin, SCRAM-SHA-512 over SASL_SSL
	alice    *kgo.Client  // alice, SCRAM-SHA-512 over SASL_SSL
	aliceAdm *kadm.Client
}

func TestStandalone(t *testing.T) {
	p := newPKI(t, []string{"broker-1"}, []string{"alice"})
	env := append(p.brokerEnv("broker-1"),
		"CHRONIK_TLS_CLIENT_AUTH=requested",
		"CHRONIK_AUTHORIZER=acl",
		"CHRONIK_SUPER_USERS=User:admin",
		"CHRONIK_ALLOW_EVERYONE_IF_NO_ACL_FOUND=false",
		"CHRONIK_BOOTSTRAP_USERS_FILE="+writeUsersFile(t))
	b := testharness.Start(t, testharness.Options{Listeners: []string{"SSL", "SASL_SSL"}, Env: env})
	s := &standalone{b: b, pki: p, saslAddr: b.ListenerAddr("SASL_SSL"), sslAddr: b.ListenerAddr("SSL")}

	seeds, anon := []string{s.saslAddr}, p.tls(t, "")
	for _, user := range []string{"admin", "alice", "bob"} {
		waitForUser(t, seeds, anon, user)
	}
	s.adm = kadm.NewClient(newClient(t, seeds, anon, saslMech(mechScram512, "admin", passwords["admin"])))
	s.alice = newClient(t, seeds, anon, saslMech(mechScram512, "alice", passwords["alice"]))
	s.aliceAdm = kadm.NewClient(s.alice)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	createACLs(ctx, t, s.adm, kadm.NewACLs().Allow("User:alice").
		Topics("sec-").ResourcePatternType(kadm.ACLPatternPrefixed).
		Operations(kadm.OpRead, kadm.OpWrite, kadm.OpDescribe, kadm.OpCreate))
	createACLs(ctx, t, s.adm, kadm.NewACLs().Allow("User:alice").
		Groups("sec-").ResourcePatternType(kadm.ACLPatternPrefixed).
		Operations(kadm.OpRead))

	t.Run("clients", func(t *testing.T) {
		for _, cl := range clients {
			for _, mech := range []string{mechScram512, mechPlain} {
				t.Run(cl.name+"/"+mech, func(t *testing.T) {
					// Each run has its own topic and group; librdkafka and
					// the Python interpreter spend most of their time
					// waiting, so runs overlap well even on two cores.
					t.Parallel()
					roundTrip(t, s, cl, mech)
				})
			}
		}
	})
	t.Run("wrong-password", s.testWrongPassword)
	t.Run("topic-without-read", s.testTopicWithoutRead)
	t.Run("group-without-read", s.testGroupWithoutRead)
	t.Run("delete-without-delete", s.testDeleteWithoutDelete)
	t.Run("plaintext-on-tls-listener", s.testPlaintextOnTLS)
	t.Run("client-certificate-principal", s.testCertificatePrincipal)
	t.Run("search", s.testSearch)
}

// request sends req to the broker itself (no routing to a coordinator or
// leader: there is one broker) on cl's connection.
func request(ctx context.Context, t *testing.T, cl *kgo.Client, req kmsg.Request) kmsg.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	resp, err := cl.SeedBrokers()[0].Request(ctx, req)
	if err != nil {
		t.Fatalf("%s: %v", kmsg.NameForKey(req.Key()), err)
	}
	return resp
}

// errName is a Kafka error code as its name, for messages.
func errName(code int16) string {
	if err := kerr.ErrorForCode(code); err != nil {
		return err.Error()
	}
	return "NONE"
}

func (s *standalone) testWrongPassword(t *testing.T) {
	ctx := context.Background()
	for _, mech := range []string{mechScram512, mechPlain} {
		for _, tc := range []struct{ user, password string }{
			{"alice", "not-alice-secret"},
			{"mallory", "anything"}, // no such user: the same answer
		} {
			t.Run("franz-go/"+mech+"/"+tc.user, func(t *testing.T) {
				cl := newClient(t, []string{s.saslAddr}, s.pki.tls(t, ""), saslMech(mech, tc.user, tc.password),
					kgo.RetryTimeout(5*time.Second))
				ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
				defer cancel()
				_, err := cl.Request(ctx, kmsg.NewPtrMetadataRequest())
				if !errors.Is(err, kerr.SaslAuthenticationFailed) {
					t.Fatalf("Metadata as %s with a wrong password over %s: err = %v, want SASL_AUTHENTICATION_FAILED", tc.user, mech, err)
				}
			})
		}
	}
	for _, mech := range []string{mechScram512, mechPlain} {
		r := run{addr: s.saslAddr, caFile: s.pki.caFile, mech: mech, user: "alice", password: "not-alice-secret"}
		t.Run("confluent-kafka-go/"+mech, func(t *testing.T) {
			cfg := librdkafkaConfig(r)
			p, err := ckafka.NewProducer(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			deadline := time.After(20 * time.Second)
			for {
				select {
				case ev := <-p.Events():
					if e, ok := ev.(ckafka.Error); ok {
						if e.Code() == ckafka.ErrAuthentication {
							t.Logf("librdkafka: %v", e)
							return
						}
						t.Logf("librdkafka (not the authentication error yet): %v", e)
					}
				case <-deadline:
					t.Fatalf("no %v error within 20s of connecting with a wrong password", ckafka.ErrAuthentication)
				}
			}
		})
		// With a librdkafka before 2.6.1 kcat's SCRAM fails with any
		// password (requireKcatSCRAM); its PLAIN case still tells.
		t.Run("kcat/"+mech, func(t *testing.T) {
			requireKcat(t)
			ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, "kcat", append(kcatArgs(r), "-L", "-m", "3")...).CombinedOutput()
			if err == nil {
				t.Fatalf("kcat -L with a wrong password succeeded:\n%s", out)
			}
			if !strings.Contains(string(out), "SASL authentication error") {
				t.Fatalf("kcat -L with a wrong password: %v, output without \"SASL authentication error\":\n%s", err, out)
			}
		})
	}
}

// adminTopic creates topic (one partition) as admin and writes value to it.
func (s *standalone) adminTopic(ctx context.Context, t *testing.T, topic, value string) {
	t.Helper()
	createTopic(ctx, t, s.adm, topic, 1, 1, nil)
	cl := newClient(t, []string{s.saslAddr}, s.pki.tls(t, ""), saslMech(mechScram512, "admin", passwords["admin"]))
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte(value)}).FirstErr(); err != nil {
		t.Fatalf("produce to %s as admin: %v", topic, err)
	}
}

func (s *standalone) topicID(ctx context.Context, t *testing.T, topic string) [16]byte {
	t.Helper()
	md, err := s.adm.Metadata(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	td, ok := md.Topics[topic]
	if !ok || td.Err != nil {
		t.Fatalf("metadata of %s as admin: %v", topic, td.Err)
	}
	return [16]byte(td.ID)
}

func (s *standalone) testTopicWithoutRead(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const topic = "other-topic"
	s.adminTopic(ctx, t, topic, "admin's record")
	id := s.topicID(ctx, t, topic)

	// Fetch v12 names the topic; current versions give its ID, which
	// alice learns elsewhere (Metadata does not tell her).
	old := newClient(t, []string{s.saslAddr}, s.pki.tls(t, ""), saslMech(mechScram512, "alice", passwords["alice"]),
		kgo.MaxVersions(kversion.V2_8_0()))
	for _, tc := range []struct {
		name string
		cl   *kgo.Client
	}{{"by-name", old}, {"by-id", s.alice}} {
		t.Run("fetch-"+tc.name, func(t *testing.T) {
			req := kmsg.NewPtrFetchRequest()
			req.ReplicaID = -1
			req.ReplicaState.ID = -1
			req.MaxWaitMillis = 100
			req.MaxBytes = 1 << 20
			req.SessionEpoch = -1
			rt := kmsg.NewFetchRequestTopic()
			rt.Topic, rt.TopicID = topic, id
			rp := kmsg.NewFetchRequestTopicPartition()
			rp.PartitionMaxBytes = 1 << 20
			rt.Partitions = append(rt.Partitions, rp)
			req.Topics = append(req.Topics, rt)
			resp := request(ctx, t, tc.cl, req).(*kmsg.FetchResponse)
			if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
				t.Fatalf("Fetch v%d of %s as alice: top-level %s, %d topics; want one partition with TOPIC_AUTHORIZATION_FAILED",
					resp.Version, topic, errName(resp.ErrorCode), len(resp.Topics))
			}
			p := resp.Topics[0].Partitions[0]
			if p.ErrorCode != kerr.TopicAuthorizationFailed.Code {
				t.Errorf("Fetch v%d of %s as alice: %s with %d record bytes, want TOPIC_AUTHORIZATION_FAILED",
					resp.Version, topic, errName(p.ErrorCode), len(p.RecordBatches))
			}
			if len(p.RecordBatches) != 0 {
				t.Errorf("Fetch v%d of %s as alice returned %d bytes of records", resp.Version, topic, len(p.RecordBatches))
			}
		})
	}
	t.Run("produce", func(t *testing.T) {
		cl := newClient(t, []string{s.saslAddr}, s.pki.tls(t, ""), saslMech(mechScram512, "alice", passwords["alice"]),
			kgo.DisableIdempotentWrite())
		err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("alice's")}).FirstErr()
		if !errors.Is(err, kerr.TopicAuthorizationFailed) {
			t.Errorf("produce to %s as alice: %v, want TOPIC_AUTHORIZATION_FAILED", topic, err)
		}
	})
}

func (s *standalone) testGroupWithoutRead(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const topic = "sec-neg"
	createTopic(ctx, t, s.aliceAdm, topic, 1, 1, nil)
	id := s.topicID(ctx, t, topic)

	t.Run("find-coordinator", func(t *testing.T) {
		req := kmsg.NewPtrFindCoordinatorRequest()
		req.CoordinatorKey = "other-group"
		req.CoordinatorKeys = []string{"other-group"}
		resp := request(ctx, t, s.alice, req).(*kmsg.FindCoordinatorResponse)
		code := resp.ErrorCode
		if len(resp.Coordinators) == 1 {
			code = resp.Coordinators[0].ErrorCode
		}
		if code != kerr.GroupAuthorizationFailed.Code {
			t.Errorf("FindCoordinator v%d other-group as alice: %s, want GROUP_AUTHORIZATION_FAILED", resp.Version, errName(code))
		}
	})
	t.Run("join-group", func(t *testing.T) {
		req := kmsg.NewPtrJoinGroupRequest()
		req.Group = "other-group"
		req.SessionTimeoutMillis = 30000
		req.RebalanceTimeoutMillis = 60000
		req.ProtocolType = "consumer"
		meta := kmsg.NewConsumerMemberMetadata()
		meta.Topics = []string{topic}
		proto := kmsg.NewJoinGroupRequestProtocol()
		proto.Name, proto.Metadata = "range", meta.AppendTo(nil)
		req.Protocols = append(req.Protocols, proto)
		resp := request(ctx, t, s.alice, req).(*kmsg.JoinGroupResponse)
		if resp.ErrorCode != kerr.GroupAuthorizationFailed.Code {
			t.Errorf("JoinGroup v%d other-group as alice: %s, want GROUP_AUTHORIZATION_FAILED", resp.Version, errName(resp.ErrorCode))
		}
	})
	// A commit by a client that manages its own offsets (no generation):
	// allowed on her sec- group, refused on other-group.
	commit := func(group string) int16 {
		req := kmsg.NewPtrOffsetCommitRequest()
		req.Group = group
		req.Generation = -1
		rt := kmsg.NewOffsetCommitRequestTopic()
		rt.Topic, rt.TopicID = topic, id // by name before v10, by ID since
		rp := kmsg.NewOffsetCommitRequestTopicPartition()
		rp.Offset = 0
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp := request(ctx, t, s.alice, req).(*kmsg.OffsetCommitResponse)
		if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
			t.Fatalf("OffsetCommit v%d %s as alice: %d topics in the response, want 1", resp.Version, group, len(resp.Topics))
		}
		return resp.Topics[0].Partitions[0].ErrorCode
	}
	t.Run("offset-commit", func(t *testing.T) {
		if code := commit("sec-neg-group"); code != 0 {
			t.Fatalf("OffsetCommit sec-neg-group (alice may READ it) as alice: %s, want success", errName(code))
		}
		if code := commit("other-group"); code != kerr.GroupAuthorizationFailed.Code {
			t.Errorf("OffsetCommit other-group as alice: %s, want GROUP_AUTHORIZATION_FAILED", errName(code))
		}
	})
}

func (s *standalone) testDeleteWithoutDelete(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const topic = "sec-undeletable"
	createTopic(ctx, t, s.aliceAdm, topic, 1, 1, nil)
	resp, err := s.aliceAdm.DeleteTopics(ctx, topic)
	if err != nil {
		t.Fatalf("DeleteTopics as alice: %v", err)
	}
	if r := resp[topic]; !errors.Is(r.Err, kerr.TopicAuthorizationFailed) {
		t.Errorf("DeleteTopics %s as alice (no DELETE): %v, want TOPIC_AUTHORIZATION_FAILED", topic, r.Err)
	}
	topics, err := s.adm.ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !topics.Has(topic) {
		t.Errorf("topic %s is gone after alice's refused DeleteTopics", topic)
	}
}

// testPlaintextOnTLS speaks Kafka without TLS to both TLS listeners: the
// broker must close the connection without answering (no bytes at all),
// and go on serving TLS clients.
func (s *standalone) testPlaintextOnTLS(t *testing.T) {
	req := kmsg.NewPtrApiVersionsRequest()
	req.Version = 3
	req.ClientSoftwareName, req.ClientSoftwareVersion = "chronik-security", "1"
	frame := kmsg.NewRequestFormatter(kmsg.FormatterClientID("plaintext")).AppendRequest(nil, req, 1)
	for _, addr := range []struct{ name, addr string }{{"SSL", s.sslAddr}, {"SASL_SSL", s.saslAddr}} {
		t.Run(addr.name, func(t *testing.T) {
			nc, err := net.Dial("tcp", addr.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			start := time.Now()
			nc.SetDeadline(start.Add(15 * time.Second))
			if _, err := nc.Write(frame); err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(nc)
			took := time.Since(start)
			var ne net.Error
			switch {
			case errors.As(err, &ne) && ne.Timeout():
				t.Fatalf("a plaintext ApiVersions on the %s listener: still open after %v (read %d bytes)", addr.name, took, len(got))
			case len(got) > 0:
				t.Fatalf("a plaintext ApiVersions on the %s listener got %d bytes back: %q", addr.name, len(got), got)
			case took > 5*time.Second:
				t.Errorf("a plaintext ApiVersions on the %s listener: closed only after %v", addr.name, took)
			}
			t.Logf("closed after %v (%v)", took.Round(time.Millisecond), err)
		})
	}
	t.Run("tls-clients-still-served", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		anon := newClient(t, []string{s.sslAddr}, s.pki.tls(t, ""), nil)
		if _, err := anon.Request(ctx, kmsg.NewPtrApiVersionsRequest()); err != nil {
			t.Errorf("ApiVersions over TLS on the SSL listener: %v", err)
		}
		if _, err := s.alice.Request(ctx, kmsg.NewPtrMetadataRequest()); err != nil {
			t.Errorf("Metadata as alice over SASL_SSL: %v", err)
		}
	})
}

// testCertificatePrincipal shows that a client certificate on the SSL
// listener authenticates as "User:" + its subject: an ACL for
// User:CN=alice,O=Chronik lets it write, and revoking it refuses again.
func (s *standalone) testCertificatePrincipal(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const topic = "cert-topic"
	createTopic(ctx, t, s.adm, topic, 1, 1, nil)
	principal := certPrincipal("alice")

	produce := func(certName string) error {
		// A new client each time: no metadata cached from an earlier step.
		cl := newClient(t, []string{s.sslAddr}, s.pki.tls(t, certName), nil,
			kgo.DisableIdempotentWrite(), kgo.RequiredAcks(kgo.AllISRAcks()))
		ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		return cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("from " + certName)}).FirstErr()
	}
	if err := produce("alice"); !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("produce with alice's certificate before any ACL: %v, want TOPIC_AUTHORIZATION_FAILED", err)
	}

	acl := kadm.NewACLs().Allow(principal).AllowHosts().Topics(topic).ResourcePatternType(kadm.ACLPatternLiteral).Operations(kadm.OpWrite)
	createACLs(ctx, t, s.adm, acl)
	if err := produce("alice"); err != nil {
		t.Errorf("produce with alice's certificate after allowing %s WRITE: %v", principal, err)
	}
	if err := produce(""); !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Errorf("produce over SSL without a certificate (User:ANONYMOUS): %v, want TOPIC_AUTHORIZATION_FAILED", err)
	}

	res, err := s.adm.DeleteACLs(ctx, acl)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || res[0].Err != nil || len(res[0].Deleted) != 1 {
		t.Fatalf("DeleteAcls of %s's WRITE: %+v, want one ACL deleted", principal, res)
	}
	if err := produce("alice"); !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Errorf("produce with alice's certificate after revoking its ACL: %v, want TOPIC_AUTHORIZATION_FAILED", err)
	}
}

// testSearch checks the search API's authentication (401) and per-topic
// READ (403, with nothing of the topic's records in the answer).
func (s *standalone) testSearch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const topic = "sec-search"
	createTopic(ctx, t, s.aliceAdm, topic, 1, 1, nil)
	secret := "sec-search-secret-" + randomHex(8)
	if err := s.alice.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte(secret)}).FirstErr(); err != nil {
		t.Fatalf("produce to %s as alice: %v", topic, err)
	}

	body := fmt.Sprintf(`{"topics":[%q],"query":"*"}`, topic)
	search := func(user, password string) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+s.b.HTTPAddr()+"/api/v1/search", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		if user != "" {
			req.SetBasicAuth(user, password)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(b)
	}

	for _, tc := range []struct {
		name, user, password string
		want                 int
	}{
		{"no-credentials", "", "", http.StatusUnauthorized},
		{"wrong-password", "alice", "not-alice-secret", http.StatusUnauthorized},
		{"bob-without-read", "bob", passwords["bob"], http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, got := search(tc.user, tc.password)
			if code != tc.want {
				t.Errorf("POST /api/v1/search: %d, want %d; body:\n%s", code, tc.want, got)
			}
			if strings.Contains(got, secret) {
				t.Errorf("POST /api/v1/search answered %d with the topic's record %q in its body:\n%s", code, secret, got)
			}
		})
	}
	t.Run("alice", func(t *testing.T) {
		code, got := search("alice", passwords["alice"])
		if code != http.StatusOK {
			t.Fatalf("POST /api/v1/search as alice: %d, want 200; body:\n%s", code, got)
		}
		if !json.Valid([]byte(got)) {
			t.Errorf("POST /api/v1/search as alice: 200 with a body that is not JSON:\n%s", got)
		}
	})
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
