//go:build e2e

package e2e_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/chronik-go/chronik/internal/testharness"
)

// secureEnv is the compose cluster with security on (compose.yaml with
// compose.secure.yaml, docs/security.md), as scripts/e2e.sh's second phase
// starts it from the doc's commands. TestSecureCompose skips unless
// CHRONIK_E2E_SECURE_BROKERS is set, so the first phase, which runs every
// test against the plain cluster, passes over it. Settings:
//
//	CHRONIK_E2E_SECURE_BROKERS    the CLIENT (SASL_SSL) addresses on the host, comma-separated
//	CHRONIK_E2E_SECURE_INTERNAL   the INTERNAL (SSL, client certificate required) addresses, same order
//	CHRONIK_E2E_SECURE_HTTP       the HTTPS listeners, same order
//	CHRONIK_E2E_SECURE_CA_FILE    the CA the certs service made (./certs/ca.crt)
//	CHRONIK_E2E_SECURE_ADMIN_PASSWORD_FILE   admin's password, on its first line
//	CHRONIK_E2E_COMPOSE           the compose command line, project and both files included
type secureEnv struct {
	brokers, internal, http []string
	tls                     *tls.Config // trusts the CA; no client certificate
	adminPassword           string
	compose                 []string
}

// secureAdmin is compose.secure.yaml's first admin, a super user.
const secureAdmin = "admin"

func loadSecureEnv(t *testing.T) secureEnv {
	t.Helper()
	brokers := os.Getenv("CHRONIK_E2E_SECURE_BROKERS")
	if brokers == "" {
		t.Skip("CHRONIK_E2E_SECURE_BROKERS is not set: the secure compose cluster is scripts/e2e.sh's second phase")
	}
	need := func(k string) string {
		v := os.Getenv(k)
		if v == "" {
			t.Fatalf("CHRONIK_E2E_SECURE_BROKERS is set but %s is not", k)
		}
		return v
	}
	e := secureEnv{
		brokers:  strings.Split(brokers, ","),
		internal: strings.Split(need("CHRONIK_E2E_SECURE_INTERNAL"), ","),
		http:     strings.Split(need("CHRONIK_E2E_SECURE_HTTP"), ","),
		compose:  strings.Fields(need("CHRONIK_E2E_COMPOSE")),
	}
	caFile := need("CHRONIK_E2E_SECURE_CA_FILE")
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("%s holds no PEM certificate", caFile)
	}
	e.tls = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	pwFile := need("CHRONIK_E2E_SECURE_ADMIN_PASSWORD_FILE")
	pw, err := os.ReadFile(pwFile)
	if err != nil {
		t.Fatal(err)
	}
	first, _, _ := strings.Cut(string(pw), "\n")
	if e.adminPassword = strings.TrimSpace(first); e.adminPassword == "" {
		t.Fatalf("%s has no password on its first line", pwFile)
	}
	return e
}

// opts connect a franz-go client over TLS, as user with SCRAM-SHA-512
// unless user is empty (no SASL).
func (e secureEnv) opts(user, password string) []kgo.Opt {
	opts := []kgo.Opt{kgo.SeedBrokers(e.brokers...), kgo.DialTLSConfig(e.tls.Clone())}
	if user != "" {
		opts = append(opts, kgo.SASL(scram.Auth{User: user, Pass: password}.AsSha512Mechanism()))
	}
	return opts
}

// client is a client as user (see opts), closed when the test ends.
func (e secureEnv) client(t *testing.T, user, password string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append(e.opts(user, password), opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func (e secureEnv) admin(t *testing.T, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	return e.client(t, secureAdmin, e.adminPassword, opts...)
}

// TestSecureCompose drives the secure compose cluster from the host: the
// admin's round trip at RF 3, a user who may do nothing until an ACL lets
// her, the refusals of clients that do not authenticate, the search API's
// 401, and a `docker kill` of a broker with acks=all still served (min.insync
// 2 of 3) and no acknowledged record lost.
func TestSecureCompose(t *testing.T) {
	e := loadSecureEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	e.waitBrokers(t)
	adm := kadm.NewClient(e.admin(t))
	topic := fmt.Sprintf("secure-e2e-%d", time.Now().UnixNano())
	minISR := "2"
	resp, err := adm.CreateTopic(ctx, 3, 3, map[string]*string{"min.insync.replicas": &minISR}, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create topic %s (3 partitions, RF 3) as admin: %v (%s)", topic, err, resp.ErrMessage)
	}

	var acked ackLog
	// produce writes n records as cl with acks=all (franz-go's default) and
	// logs them as acknowledged.
	produce := func(t *testing.T, cl *kgo.Client, producer string, n int) {
		t.Helper()
		recs := make([]*kgo.Record, n)
		for i := range recs {
			recs[i] = &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "%s-%d", producer, i), Value: jsonValue(producer, i)}
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatalf("produce %d records to %s as %s: %v", n, topic, producer, err)
		}
		for _, r := range recs {
			acked.add(r)
		}
	}

	t.Run("admin-round-trip", func(t *testing.T) {
		produce(t, e.admin(t, kgo.RecordDeliveryTimeout(time.Minute)), secureAdmin, 1000)
		e.checkConsumed(t, ctx, secureAdmin, e.adminPassword, topic, acked.snapshot())
	})

	const alice, alicePassword = "alice", "alice-e2e-secret"
	t.Run("alice-needs-an-acl", func(t *testing.T) {
		res, err := adm.AlterUserSCRAMs(ctx, nil, []kadm.UpsertSCRAM{{
			User: alice, Mechanism: kadm.ScramSha512, Iterations: 4096, Password: alicePassword,
		}})
		if err == nil {
			err = res.Error()
		}
		if err != nil {
			t.Fatalf("create user %s: %v", alice, err)
		}
		// The credential reaches every broker with the controller state.
		e.waitUser(t, alice, alicePassword)

		// Idempotence off: without it the refusal is the produce's own,
		// TOPIC_AUTHORIZATION_FAILED, not InitProducerId's
		// CLUSTER_AUTHORIZATION_FAILED (she may write no topic yet).
		refused := e.client(t, alice, alicePassword, kgo.DisableIdempotentWrite(), kgo.RecordDeliveryTimeout(20*time.Second))
		err = refused.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("refused")}).FirstErr()
		if !errors.Is(err, kerr.TopicAuthorizationFailed) {
			t.Fatalf("produce as %s before any ACL: %v, want TOPIC_AUTHORIZATION_FAILED", alice, err)
		}

		acl := kadm.NewACLs().Allow("User:"+alice).AllowHosts().Topics(topic).
			ResourcePatternType(kadm.ACLPatternLiteral).Operations(kadm.OpWrite, kadm.OpRead, kadm.OpDescribe)
		created, err := adm.CreateACLs(ctx, acl)
		if err != nil {
			t.Fatalf("CreateAcls: %v", err)
		}
		for _, r := range created {
			if r.Err != nil {
				t.Fatalf("CreateAcls %s %v on %q: %v (%s)", r.Principal, r.Operation, r.Name, r.Err, r.ErrMessage)
			}
		}
		// Every broker applies the ACLs from the controller state: a
		// record to each partition, each try from a new client (nothing
		// cached from a refusal), until the partitions' leaders have.
		testharness.CheckFor(t, 30*time.Second, 500*time.Millisecond, func() error {
			probe, err := kgo.NewClient(append(e.opts(alice, alicePassword), kgo.DisableIdempotentWrite(),
				kgo.RecordDeliveryTimeout(10*time.Second), kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
			if err != nil {
				return err
			}
			defer probe.Close()
			var recs []*kgo.Record
			for p := range int32(3) {
				recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Value: []byte(`{"probe":true}`)})
			}
			return probe.ProduceSync(ctx, recs...).FirstErr()
		})
		// Idempotent, as by default: WRITE on a topic lets her
		// InitProducerId.
		produce(t, e.client(t, alice, alicePassword, kgo.RecordDeliveryTimeout(time.Minute)), alice, 200)
		e.checkConsumed(t, ctx, alice, alicePassword, topic, acked.snapshot())
		e.searchAs(t, ctx, topic, alice, alicePassword, http.StatusOK)
	})

	t.Run("no-sasl-on-sasl-ssl", func(t *testing.T) {
		// TLS is fine, but a SASL listener serves nothing but ApiVersions
		// and the SASL handshake before authentication.
		cl := e.client(t, "", "", kgo.RequestRetries(1), kgo.RetryTimeout(10*time.Second))
		rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		_, err := cl.Request(rctx, kmsg.NewPtrMetadataRequest())
		if err == nil {
			t.Fatalf("Metadata without SASL on %s (SASL_SSL) was answered", e.brokers[0])
		}
		t.Logf("refused: %v", err)
	})

	t.Run("internal-listener", func(t *testing.T) {
		for _, addr := range e.internal {
			if err := plaintextRefused(addr); err != nil {
				t.Errorf("a plaintext ApiVersions on the INTERNAL listener %s: %v", addr, err)
			}
			// TLS that trusts the CA but shows no certificate: the
			// listener requires one (CHRONIK_TLS_CLIENT_AUTH).
			cl, err := kgo.NewClient(append(e.opts("", ""), kgo.SeedBrokers(addr), kgo.RequestRetries(1))...)
			if err != nil {
				t.Fatal(err)
			}
			rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			_, err = cl.Request(rctx, kmsg.NewPtrApiVersionsRequest())
			cancel()
			cl.Close()
			if err == nil {
				t.Errorf("ApiVersions over TLS without a client certificate on the INTERNAL listener %s was answered", addr)
			}
		}
	})

	t.Run("search-without-credentials", func(t *testing.T) {
		e.searchAs(t, ctx, topic, "", "", http.StatusUnauthorized)
	})

	t.Run("docker-kill-acks-all", func(t *testing.T) {
		e.killStillAcks(t, ctx, adm, topic, &acked)
	})
}

// waitBrokers waits until the admin's metadata lists every broker at its
// published SASL_SSL address: the controller registered them all.
func (e secureEnv) waitBrokers(t *testing.T) {
	t.Helper()
	adm := kadm.NewClient(e.admin(t))
	testharness.CheckFor(t, 2*time.Minute, 500*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		m, err := adm.BrokerMetadata(ctx)
		if err != nil {
			return err
		}
		var addrs []string
		for _, b := range m.Brokers {
			addrs = append(addrs, fmt.Sprintf("%s:%d", b.Host, b.Port))
		}
		slices.Sort(addrs)
		want := slices.Sorted(slices.Values(e.brokers))
		if !slices.Equal(addrs, want) {
			return fmt.Errorf("metadata lists brokers at %v (controller %d), want %v", addrs, m.Controller, want)
		}
		return nil
	})
}

// waitUser waits until user authenticates on every broker.
func (e secureEnv) waitUser(t *testing.T, user, password string) {
	t.Helper()
	for _, addr := range e.brokers {
		testharness.CheckFor(t, 30*time.Second, 200*time.Millisecond, func() error {
			cl, err := kgo.NewClient(append(e.opts(user, password), kgo.SeedBrokers(addr))...)
			if err != nil {
				return err
			}
			defer cl.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if _, err := cl.Request(ctx, kmsg.NewPtrMetadataRequest()); err != nil {
				return fmt.Errorf("%s cannot authenticate on %s yet: %w", user, addr, err)
			}
			return nil
		})
	}
}

// plaintextRefused writes a plaintext ApiVersions request to addr and
// returns nil if the connection is closed within 5 s with no Kafka answer.
func plaintextRefused(addr string) error {
	req := kmsg.NewPtrApiVersionsRequest()
	req.Version = 3
	req.ClientSoftwareName, req.ClientSoftwareVersion = "chronik-e2e", "1"
	frame := kmsg.NewRequestFormatter(kmsg.FormatterClientID("plaintext")).AppendRequest(nil, req, 1)
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer nc.Close()
	start := time.Now()
	nc.SetDeadline(start.Add(10 * time.Second))
	if _, err := nc.Write(frame); err != nil {
		return nil // closed before it took the request
	}
	got, err := io.ReadAll(nc)
	took := time.Since(start)
	var ne net.Error
	switch {
	case len(got) > 0:
		return fmt.Errorf("answered %d bytes: %q", len(got), got)
	case errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("still open after %v", took.Round(time.Millisecond))
	case took > 5*time.Second:
		return fmt.Errorf("closed only after %v", took.Round(time.Millisecond))
	}
	return nil
}

// checkConsumed reads every partition of topic as user, from the start to
// the end offsets it finds first, and fails unless every acknowledged
// record is there with its key and value.
func (e secureEnv) checkConsumed(t *testing.T, ctx context.Context, user, password, topic string, acked []rec) {
	t.Helper()
	ends, err := kadm.NewClient(e.client(t, user, password)).ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		t.Fatalf("list end offsets of %s as %s: %v", topic, user, err)
	}
	want := map[int32]int64{}
	start := map[string]map[int32]kgo.Offset{topic: {}}
	ends.Each(func(o kadm.ListedOffset) {
		want[o.Partition] = o.Offset
		start[topic][o.Partition] = kgo.NewOffset().AtStart()
	})
	cl := e.client(t, user, password, kgo.ConsumePartitions(start), kgo.FetchMaxWait(500*time.Millisecond))
	got := map[pos]rec{}
	next := map[int32]int64{}
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for done := false; !done; {
		fs := cl.PollFetches(cctx)
		if cctx.Err() != nil {
			t.Fatalf("consume %s as %s: stopped at %v, want end offsets %v: %v", topic, user, next, want, cctx.Err())
		}
		fs.EachError(func(tp string, p int32, err error) {
			t.Logf("fetch %s/%d: %v (retrying)", tp, p, err)
		})
		fs.EachRecord(func(r *kgo.Record) {
			got[pos{r.Partition, r.Offset}] = rec{Partition: r.Partition, Offset: r.Offset, Key: string(r.Key), Value: string(r.Value)}
			next[r.Partition] = max(next[r.Partition], r.Offset+1)
		})
		done = true
		for p, end := range want {
			done = done && next[p] >= end
		}
	}
	lost := 0
	for _, r := range acked {
		if g, ok := got[pos{r.Partition, r.Offset}]; !ok || g.Key != r.Key || g.Value != r.Value {
			if lost < 10 {
				t.Errorf("acknowledged %s at partition %d offset %d: read %+v (present %v)", r.Key, r.Partition, r.Offset, g, ok)
			}
			lost++
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged records are missing or changed (%d records read)", lost, len(acked), len(got))
	}
	t.Logf("%s read back all %d acknowledged records (%d records in %s)", user, len(acked), len(got), topic)
}

// searchAs posts a search of topic to the first broker's HTTPS listener,
// with basic credentials unless user is empty, and fails unless the
// answer is want (with a JSON body when 200).
func (e secureEnv) searchAs(t *testing.T, ctx context.Context, topic, user, password string, want int) {
	t.Helper()
	body := fmt.Sprintf(`{"topics": [%q], "query": "city:paris"}`, topic)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+e.http[0]+"/api/v1/search", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if user != "" {
		req.SetBasicAuth(user, password)
	}
	hc := http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: e.tls.Clone()}}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("POST https://%s/api/v1/search: %v", e.http[0], err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != want {
		t.Fatalf("POST https://%s/api/v1/search as %q: %s, want %d; body:\n%s", e.http[0], user, resp.Status, want, bytes.TrimSpace(got))
	}
	if want == http.StatusOK && !json.Valid(got) {
		t.Fatalf("POST https://%s/api/v1/search as %q: 200 with a body that is not JSON:\n%s", e.http[0], user, got)
	}
}

// killStillAcks kills (SIGKILL) the broker leading partition 0 of topic,
// then produces as admin with acks=all: with min.insync.replicas 2 of RF 3
// the two survivors acknowledge, and every record acknowledged so far
// reads back. The killed broker stays down; the script tears the cluster
// down next.
func (e secureEnv) killStillAcks(t *testing.T, ctx context.Context, adm *kadm.Client, topic string, acked *ackLog) {
	m, err := adm.Metadata(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	p0, ok := m.Topics[topic].Partitions[0]
	if !ok || p0.Leader < 0 {
		t.Fatalf("partition 0 of %s has no leader: %+v", topic, m.Topics[topic])
	}
	// compose.yaml runs node N as service chronik-N.
	service := fmt.Sprintf("chronik-%d", p0.Leader)
	id := composeContainer(t, ctx, env{compose: e.compose}, service)
	docker(t, ctx, "kill", id)
	t.Logf("killed %s (container %.12s), the leader of partition 0", service, id)

	cl := e.admin(t, kgo.RequiredAcks(kgo.AllISRAcks()), kgo.RecordDeliveryTimeout(2*time.Minute))
	const n = 1000
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "after-kill-%d", i), Value: jsonValue("after-kill", i)}
	}
	start := time.Now()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce %d records with acks=all and %s down: %v", n, service, err)
	}
	for _, r := range recs {
		acked.add(r)
	}
	t.Logf("%d records acknowledged by the two survivors in %v", n, time.Since(start).Round(time.Millisecond))
	e.checkConsumed(t, ctx, secureAdmin, e.adminPassword, topic, acked.snapshot())
}
