package security_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	ibm "github.com/IBM/sarama"
	ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/xdg-go/scram"
)

// run is one (client, mechanism) round trip: alice writes n records to a
// topic of its own over SASL_SSL and reads them back in a consumer group
// of the same name, committing what she read.
type run struct {
	addr     string // the SASL_SSL listener
	caFile   string
	tls      *tls.Config // trusting caFile, no client certificate
	mech     string      // mechScram512 or mechPlain
	user     string
	password string
	topic    string
	group    string
	n        int
}

// value is record i's value: unique per topic, without the newlines,
// colons and tabs kcat splits on.
func (r run) value(i int) string { return fmt.Sprintf("%s-value-%06d", r.topic, i) }

func (r run) values() []string {
	out := make([]string, r.n)
	for i := range out {
		out[i] = r.value(i)
	}
	return out
}

// check reports values that are missing, duplicated or not the run's.
func (r run) check(got []string) error {
	seen := make(map[string]int, len(got))
	for _, v := range got {
		seen[v]++
	}
	var problems []string
	for i := range r.n {
		switch c := seen[r.value(i)]; {
		case c == 0:
			problems = append(problems, fmt.Sprintf("record %d missing", i))
		case c > 1:
			problems = append(problems, fmt.Sprintf("record %d read %d times", i, c))
		}
		delete(seen, r.value(i))
	}
	for v := range seen {
		problems = append(problems, fmt.Sprintf("unexpected value %q", v))
	}
	if len(problems) == 0 {
		return nil
	}
	slices.Sort(problems)
	if len(problems) > 10 {
		problems = append(problems[:10], fmt.Sprintf("and %d more", len(problems)-10))
	}
	return fmt.Errorf("read %d values for %d records: %s", len(got), r.n, strings.Join(problems, "; "))
}

// client adapts one Kafka client to the suite.
type client struct {
	name    string
	require func(t *testing.T, r run) // skips (or fails in CI) when the client is missing
	// produce writes r.values() with acks=all and returns once all are
	// acknowledged.
	produce func(ctx context.Context, t *testing.T, r run) error
	// consume reads r.n records from the start of the topic as a member of
	// group r.group, commits its offsets and returns the values read.
	consume func(ctx context.Context, t *testing.T, r run) ([]string, error)
}

var clients = []client{franzGo, sarama, confluent, kcat, kafkaPython}

// collector gathers values from concurrent callbacks until it has n.
type collector struct {
	mu     sync.Mutex
	n      int
	values []string
	full   chan struct{}
}

func newCollector(n int) *collector { return &collector{n: n, full: make(chan struct{})} }

func (c *collector) add(v string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.values = append(c.values, v)
	if len(c.values) == c.n {
		close(c.full)
	}
}

func (c *collector) got() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.values)
}

// franzGo is franz-go: an idempotent producer and a group consumer that
// commits once it has everything.
var franzGo = client{
	name: "franz-go",
	produce: func(ctx context.Context, t *testing.T, r run) error {
		cl := newClient(t, []string{r.addr}, r.tls, saslMech(r.mech, r.user, r.password),
			kgo.DefaultProduceTopic(r.topic), kgo.RequiredAcks(kgo.AllISRAcks()))
		var recs []*kgo.Record
		for _, v := range r.values() {
			recs = append(recs, kgo.StringRecord(v))
		}
		return cl.ProduceSync(ctx, recs...).FirstErr()
	},
	consume: func(ctx context.Context, t *testing.T, r run) ([]string, error) {
		cl := newClient(t, []string{r.addr}, r.tls, saslMech(r.mech, r.user, r.password),
			kgo.ConsumerGroup(r.group), kgo.ConsumeTopics(r.topic),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit())
		var got []string
		for len(got) < r.n {
			fs := cl.PollFetches(ctx)
			if err := ctx.Err(); err != nil {
				return got, err
			}
			var ferr error
			fs.EachError(func(topic string, p int32, err error) {
				ferr = fmt.Errorf("%s[%d]: %w", topic, p, err)
			})
			if ferr != nil {
				return got, ferr
			}
			fs.EachRecord(func(rec *kgo.Record) { got = append(got, string(rec.Value)) })
		}
		if err := cl.CommitUncommittedOffsets(ctx); err != nil {
			return got, fmt.Errorf("commit: %w", err)
		}
		return got, nil
	},
}

// sarama is IBM/sarama with its default protocol version: SCRAM through
// xdg-go/scram (sarama brings no SCRAM client of its own), an idempotent
// sync producer and a consumer group committing by hand.
var sarama = client{
	name: "sarama",
	produce: func(ctx context.Context, t *testing.T, r run) error {
		cfg := saramaConfig(r)
		cfg.Producer.RequiredAcks = ibm.WaitForAll
		cfg.Producer.Idempotent = true
		cfg.Net.MaxOpenRequests = 1 // required by sarama's idempotent producer
		cfg.Producer.Return.Successes = true
		p, err := ibm.NewSyncProducer([]string{r.addr}, cfg)
		if err != nil {
			return err
		}
		defer p.Close()
		var msgs []*ibm.ProducerMessage
		for _, v := range r.values() {
			msgs = append(msgs, &ibm.ProducerMessage{Topic: r.topic, Value: ibm.StringEncoder(v)})
		}
		return p.SendMessages(msgs)
	},
	consume: func(ctx context.Context, t *testing.T, r run) ([]string, error) {
		cfg := saramaConfig(r)
		cfg.Consumer.Offsets.Initial = ibm.OffsetOldest
		cfg.Consumer.Offsets.AutoCommit.Enable = false
		g, err := ibm.NewConsumerGroup([]string{r.addr}, r.group, cfg)
		if err != nil {
			return nil, err
		}
		defer g.Close()
		h := &saramaHandler{c: newCollector(r.n)}
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		errc := make(chan error, 1)
		go func() {
			// Consume returns at every rebalance; join again until done.
			for ctx.Err() == nil {
				if err := g.Consume(ctx, []string{r.topic}, h); err != nil {
					errc <- err
					return
				}
			}
			errc <- nil
		}()
		select {
		case <-h.c.full:
		case err := <-errc:
			return h.c.got(), fmt.Errorf("consumer group ended early: %v", err)
		case <-ctx.Done():
			return h.c.got(), ctx.Err()
		}
		cancel()
		if err := <-errc; err != nil && !errors.Is(err, context.Canceled) {
			return h.c.got(), err
		}
		return h.c.got(), nil
	},
}

func saramaConfig(r run) *ibm.Config {
	cfg := ibm.NewConfig()
	cfg.ClientID = "chronik-security"
	cfg.Net.TLS.Enable = true
	cfg.Net.TLS.Config = r.tls.Clone()
	cfg.Net.SASL.Enable = true
	cfg.Net.SASL.User, cfg.Net.SASL.Password = r.user, r.password
	cfg.Net.SASL.Handshake = true
	if r.mech == mechPlain {
		cfg.Net.SASL.Mechanism = ibm.SASLTypePlaintext
	} else {
		cfg.Net.SASL.Mechanism = ibm.SASLTypeSCRAMSHA512
		cfg.Net.SASL.SCRAMClientGeneratorFunc = func() ibm.SCRAMClient { return &xdgSCRAM{hash: scram.SHA512} }
	}
	return cfg
}

// xdgSCRAM is sarama's SCRAMClient over xdg-go/scram.
type xdgSCRAM struct {
	hash scram.HashGeneratorFcn
	conv *scram.ClientConversation
}

func (x *xdgSCRAM) Begin(user, password, authzID string) error {
	c, err := x.hash.NewClient(user, password, authzID)
	if err != nil {
		return err
	}
	x.conv = c.NewConversation()
	return nil
}

func (x *xdgSCRAM) Step(challenge string) (string, error) { return x.conv.Step(challenge) }
func (x *xdgSCRAM) Done() bool                            { return x.conv.Done() }

// saramaHandler collects values; once it has them all it commits the
// marked offsets and stops consuming. Commit reports failures only on the
// group's error channel: roundTrip reads the committed offsets back instead.
type saramaHandler struct {
	c    *collector
	once sync.Once
}

func (h *saramaHandler) Setup(ibm.ConsumerGroupSession) error   { return nil }
func (h *saramaHandler) Cleanup(ibm.ConsumerGroupSession) error { return nil }

func (h *saramaHandler) ConsumeClaim(sess ibm.ConsumerGroupSession, claim ibm.ConsumerGroupClaim) error {
	for {
		select {
		case msg, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			sess.MarkMessage(msg, "")
			h.c.add(string(msg.Value))
		case <-h.c.full:
			h.once.Do(sess.Commit)
			return nil
		case <-sess.Context().Done():
			return nil
		}
	}
}

// confluent is confluent-kafka-go (librdkafka, cgo): an idempotent
// producer and a subscribed consumer committing synchronously.
var confluent = client{
	name: "confluent-kafka-go",
	produce: func(ctx context.Context, t *testing.T, r run) error {
		cfg := librdkafkaConfig(r)
		cfg.SetKey("acks", "all")
		cfg.SetKey("enable.idempotence", true)
		p, err := ckafka.NewProducer(cfg)
		if err != nil {
			return err
		}
		defer p.Close()
		deliveries := make(chan ckafka.Event, r.n)
		for i, v := range r.values() {
			msg := &ckafka.Message{TopicPartition: ckafka.TopicPartition{Topic: &r.topic, Partition: ckafka.PartitionAny}, Value: []byte(v)}
			if err := p.Produce(msg, deliveries); err != nil {
				return fmt.Errorf("record %d: %w", i, err)
			}
		}
		for range r.n {
			select {
			case ev := <-deliveries:
				m, ok := ev.(*ckafka.Message)
				if !ok {
					return fmt.Errorf("unexpected delivery event %T: %v", ev, ev)
				}
				if m.TopicPartition.Error != nil {
					return fmt.Errorf("delivery of %q: %w", m.Value, m.TopicPartition.Error)
				}
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	},
	consume: func(ctx context.Context, t *testing.T, r run) ([]string, error) {
		cfg := librdkafkaConfig(r)
		cfg.SetKey("group.id", r.group)
		cfg.SetKey("auto.offset.reset", "earliest")
		cfg.SetKey("enable.auto.commit", false)
		c, err := ckafka.NewConsumer(cfg)
		if err != nil {
			return nil, err
		}
		defer c.Close()
		if err := c.Subscribe(r.topic, nil); err != nil {
			return nil, err
		}
		var got []string
		for len(got) < r.n {
			if err := ctx.Err(); err != nil {
				return got, err
			}
			switch ev := c.Poll(100).(type) {
			case *ckafka.Message:
				if ev.TopicPartition.Error != nil {
					return got, ev.TopicPartition.Error
				}
				got = append(got, string(ev.Value))
			case ckafka.Error:
				if ev.IsFatal() || ev.Code() == ckafka.ErrAuthentication || ev.Code() == ckafka.ErrTopicAuthorizationFailed ||
					ev.Code() == ckafka.ErrGroupAuthorizationFailed {
					return got, ev
				}
				t.Logf("librdkafka: %v", ev)
			}
		}
		if _, err := c.Commit(); err != nil {
			return got, fmt.Errorf("commit: %w", err)
		}
		return got, nil
	},
}

func librdkafkaConfig(r run) *ckafka.ConfigMap {
	return &ckafka.ConfigMap{
		"bootstrap.servers": r.addr,
		"security.protocol": "SASL_SSL",
		"sasl.mechanisms":   r.mech,
		"sasl.username":     r.user,
		"sasl.password":     r.password,
		"ssl.ca.location":   r.caFile,
		"log_level":         4, // warnings and errors only
	}
}

// kcatArgs are the kcat options for r's connection.
func kcatArgs(r run) []string {
	return []string{"-b", r.addr,
		"-X", "security.protocol=SASL_SSL",
		"-X", "sasl.mechanisms=" + r.mech,
		"-X", "sasl.username=" + r.user,
		"-X", "sasl.password=" + r.password,
		"-X", "ssl.ca.location=" + r.caFile,
	}
}

// kcat is the kcat CLI (librdkafka): `kcat -P` with values on stdin, and
// `kcat -G` (the balanced consumer, committing when it closes).
var kcat = client{
	name: "kcat",
	require: func(t *testing.T, r run) {
		requireKcat(t)
		requireKcatSCRAM(t, r)
	},
	produce: func(ctx context.Context, t *testing.T, r run) error {
		args := append(kcatArgs(r), "-P", "-t", r.topic, "-X", "acks=all", "-X", "enable.idempotence=true")
		cmd := exec.CommandContext(ctx, "kcat", args...)
		cmd.Stdin = strings.NewReader(strings.Join(r.values(), "\n") + "\n")
		// kcat -P exits once every message is delivered or failed, with a
		// non-zero status if any failed.
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("kcat -P: %v\n%s", err, out)
		}
		return nil
	},
	consume: func(ctx context.Context, t *testing.T, r run) ([]string, error) {
		args := append(kcatArgs(r), "-G", r.group, "-X", "auto.offset.reset=earliest",
			"-c", strconv.Itoa(r.n), "-q", "-f", `%s\n`, r.topic)
		cmd := exec.CommandContext(ctx, "kcat", args...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		got := lines(stdout.Bytes())
		if err != nil {
			return got, fmt.Errorf("kcat -G: %v\n%s", err, stderr.Bytes())
		}
		return got, nil
	},
}

// librdkafkaSCRAMFixed is the first librdkafka whose SCRAM client-final
// message carries the server's nonce as sent: older ones append the
// client nonce to it a second time (confluentinc/librdkafka#4895). Kafka 4
// refuses that, checking the nonce as RFC 5802 requires (CVE-2024-56128),
// and so does Chronik.
var librdkafkaSCRAMFixed = [3]int{2, 6, 1}

// requireKcatSCRAM is for a SCRAM round trip with kcat: when kcat's
// librdkafka predates the nonce fix (Debian 12 ships 2.0.2), it checks
// that the broker refuses the bad nonce, then skips the round trip.
func requireKcatSCRAM(t *testing.T, r run) {
	t.Helper()
	if r.mech == mechPlain {
		return
	}
	out, _ := exec.Command("kcat", "-V").CombinedOutput()
	m := regexp.MustCompile(`librdkafka (\d+)\.(\d+)\.(\d+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("kcat -V does not name its librdkafka version:\n%s", out)
	}
	var v [3]int
	for i := range v {
		v[i], _ = strconv.Atoi(string(m[i+1]))
	}
	if slices.Compare(v[:], librdkafkaSCRAMFixed[:]) >= 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "kcat", append(kcatArgs(r), "-L", "-m", "3")...).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "SASL authentication error") {
		t.Fatalf("kcat with librdkafka %d.%d.%d sends SCRAM client-final messages with a wrong nonce, and the broker "+
			"accepted one (CVE-2024-56128): kcat -L: %v\n%s", v[0], v[1], v[2], err, out)
	}
	t.Skipf("kcat's librdkafka %d.%d.%d (< 2.6.1) sends a wrong SCRAM nonce (librdkafka#4895), which the broker "+
		"refuses as Kafka 4 does; a SCRAM round trip needs a kcat built on librdkafka >= 2.6.1", v[0], v[1], v[2])
}

func lines(b []byte) []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

//go:embed testdata/kafka_python.py
var kafkaPythonScript string

// kafkaPython is Debian's kafka-python 2.0.2 run by /usr/bin/python3 on
// testdata/kafka_python.py: KafkaProducer with acks=all, KafkaConsumer
// in a group committing synchronously.
var kafkaPython = client{
	name:    "kafka-python",
	require: func(t *testing.T, _ run) { requirePython(t, "kafka", "python3-kafka") },
	produce: func(ctx context.Context, t *testing.T, r run) error {
		_, err := runKafkaPython(ctx, r, "produce", strings.Join(r.values(), "\n")+"\n")
		return err
	},
	consume: func(ctx context.Context, t *testing.T, r run) ([]string, error) {
		return runKafkaPython(ctx, r, "consume", "")
	},
}

func runKafkaPython(ctx context.Context, r run, mode, stdin string) ([]string, error) {
	cmd := exec.CommandContext(ctx, python, "-c", kafkaPythonScript, mode)
	cmd.Env = append(os.Environ(),
		"SEC_BOOTSTRAP="+r.addr, "SEC_MECHANISM="+r.mech, "SEC_USER="+r.user, "SEC_PASSWORD="+r.password,
		"SEC_CAFILE="+r.caFile, "SEC_TOPIC="+r.topic, "SEC_GROUP="+r.group, "SEC_RECORDS="+strconv.Itoa(r.n))
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	got := lines(stdout.Bytes())
	if err != nil {
		return got, fmt.Errorf("kafka-python %s: %v\n%s", mode, err, tail(stderr.Bytes(), 4096))
	}
	return got, nil
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// roundTrip runs one client with one mechanism: creates the run's topic
// as alice (CREATE on the prefix), produces, consumes, and checks every
// value and the group's committed offsets.
func roundTrip(t *testing.T, s *standalone, cl client, mech string) {
	name := "sec-" + cl.name + "-" + strings.ToLower(mech)
	r := run{addr: s.saslAddr, caFile: s.pki.caFile, tls: s.pki.tls(t, ""), mech: mech,
		user: "alice", password: passwords["alice"], topic: name, group: name, n: recordsPerRun(t)}
	if cl.require != nil {
		cl.require(t, r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	createTopic(ctx, t, s.aliceAdm, r.topic, 2, 1, nil)

	start := time.Now()
	if err := cl.produce(ctx, t, r); err != nil {
		t.Fatalf("produce as alice with %s: %v", mech, err)
	}
	produced := time.Since(start)
	start = time.Now()
	got, err := cl.consume(ctx, t, r)
	if err != nil {
		t.Fatalf("consume as alice with %s (after %d records): %v", mech, len(got), err)
	}
	if err := r.check(got); err != nil {
		t.Fatal(err)
	}
	consumed := time.Since(start)

	// The group's commits went through OffsetCommit's ACL checks: read
	// them back as admin.
	offs, err := s.adm.FetchOffsets(ctx, r.group)
	if err != nil {
		t.Fatalf("OffsetFetch %s as admin: %v", r.group, err)
	}
	var committed int64
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Topic == r.topic {
			committed += o.At
		}
	})
	if committed != int64(r.n) {
		t.Errorf("group %s committed offsets summing to %d, want %d (%v)", r.group, committed, r.n, offs)
	}
	t.Logf("%d records: produced in %v, consumed in %v", r.n, produced.Round(time.Millisecond), consumed.Round(time.Millisecond))
}
