package hostile_test

import (
	"bufio"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/internal/testharness"
)

// Attacks on producer state: more producer IDs than a partition should
// remember (CHRONIK_PRODUCER_IDS_MAX_PER_PARTITION, gauge
// chronik_producer_ids), and an InitProducerId claiming another client's
// live producer.

const (
	// floodProducerIDs invented producer IDs each send one idempotent batch
	// to one partition.
	floodProducerIDs = 20_000
	floodConnections = 4
	floodPipeline    = 64 // produces in flight per connection
	// producerIDsMetric is the gauge the producer-state limits branch adds:
	// producer IDs a broker holds state for, summed over its partitions
	// (or, labelled, per partition).
	producerIDsMetric = "chronik_producer_ids"
	// otherProducers bounds the producer IDs the rest of the suite leaves on
	// a broker's other partitions: a handful of idempotent clients and the
	// fuzz seeds' one. A broker-wide sum is held to maxProducerIDs (the flood
	// partition) plus this.
	otherProducers = 100
)

func attackProducerIDFlood(t *testing.T, su *suite) string {
	pi := describe(t, su, pidTopic, 0)
	leader := su.broker(pi.leader)
	var mu sync.Mutex
	answers := map[string]int{}
	deadline := time.Now().Add(max(3*su.s.window, 30*time.Second))
	var wg sync.WaitGroup
	per := floodProducerIDs / floodConnections
	for w := range floodConnections {
		c, err := dialRaw(leader.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		type sent struct {
			req  kmsg.Request
			corr int32
		}
		inflight := make(chan sent, floodPipeline)
		wg.Add(2)
		go func() {
			defer wg.Done()
			defer close(inflight)
			now := time.Now().UnixMilli()
			for i := range per {
				if time.Now().After(deadline) {
					return
				}
				s := plainSpec(1, now)
				s.producerID, s.producerEpoch, s.firstSeq = 1<<40+int64(w*per+i), 0, 0
				req := produceReq(pidTopic, 0, s.craft(seqRecords(1, []byte("pid"))), -1)
				corr, err := c.send(req)
				if err != nil {
					mu.Lock()
					answers["send: "+err.Error()]++
					mu.Unlock()
					return
				}
				inflight <- sent{req, corr}
			}
		}()
		go func() {
			defer wg.Done()
			for s := range inflight {
				resp, err := c.recv(s.req, s.corr, 30*time.Second)
				key := "OK"
				switch {
				case err != nil:
					key = "recv: " + err.Error()
				default:
					if e := kerr.ErrorForCode(resp.(*kmsg.ProduceResponse).Topics[0].Partitions[0].ErrorCode); e != nil {
						key = e.Error()
					}
				}
				mu.Lock()
				answers[key]++
				mu.Unlock()
				if err != nil {
					c.Close()
					for range inflight {
					}
					return
				}
			}
		}()
	}
	wg.Wait()
	total := 0
	for _, n := range answers {
		total += n
	}
	if total < floodProducerIDs {
		t.Logf("only %d of %d flood produces sent before the deadline", total, floodProducerIDs)
	}
	if err := testharness.ProbeAPIVersions(leader.Addr(), 5*time.Second); err != nil {
		t.Fatalf("broker %d after the flood: %v", pi.leader, err)
	}

	// Every broker holds the partition (RF 3), the followers included.
	var worst float64
	for i, b := range su.bs {
		series, err := scrapeSeries(b.HTTPAddr(), producerIDsMetric)
		if err != nil {
			t.Fatal(err)
		}
		if len(series) == 0 {
			t.Errorf("broker %d exports no %s gauge (the producer-state limits branch adds it)", i+1, producerIDsMetric)
			continue
		}
		for labels, v := range series {
			limit := float64(maxProducerIDs)
			if !strings.Contains(labels, "partition") {
				limit += otherProducers
			}
			if strings.Contains(labels, pidTopic) || labels == "" {
				worst = max(worst, v)
			}
			if v > limit {
				t.Errorf("broker %d: %s%s = %.0f after %d producer IDs, over CHRONIK_PRODUCER_IDS_MAX_PER_PARTITION=%d (bound %.0f)",
					i+1, producerIDsMetric, labels, v, total, maxProducerIDs, limit)
			}
		}
	}
	return fmt.Sprintf("%d producer IDs (%s); %s at most %.0f", total, fmtCounts(answers), producerIDsMetric, worst)
}

// partitionCount is the number of partitions in the cluster.
func (su *suite) partitionCount(t *testing.T) int {
	ctx, cancel := withTimeout(10 * time.Second)
	defer cancel()
	tds, err := su.adm.ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, td := range tds {
		n += len(td.Partitions)
	}
	return n
}

func fmtCounts(m map[string]int) string {
	var parts []string
	for k, n := range m {
		parts = append(parts, fmt.Sprintf("%s×%d", k, n))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

// scrapeSeries returns every series of metric on a broker's /metrics, by
// its label set ("" for none).
func scrapeSeries(httpAddr, metric string) (map[string]float64, error) {
	cl := http.Client{Timeout: 10 * time.Second}
	resp, err := cl.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, metric) || strings.HasPrefix(line, "#") {
			continue
		}
		name, value, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		labels := ""
		if i := strings.IndexByte(name, '{'); i >= 0 {
			name, labels = name[:i], name[i:]
		}
		if name != metric {
			continue
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(value), 64); err == nil {
			out[labels] = v
		}
	}
	return out, sc.Err()
}

func attackProducerIDClaim(t *testing.T, su *suite) string {
	live := newClient(t, su.seeds, kgo.DefaultProduceTopic(idemTopic), kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordDeliveryTimeout(20*time.Second))
	produceSync := func(n int, what string) {
		ctx, cancel := withTimeout(30 * time.Second)
		defer cancel()
		for i := range n {
			if err := live.ProduceSync(ctx, &kgo.Record{Value: fmt.Appendf(nil, "%s-%d", what, i)}).FirstErr(); err != nil {
				t.Fatalf("the live idempotent producer, record %d %s the claim: %v", i, what, err)
			}
		}
	}
	produceSync(20, "before")
	ctx, cancel := withTimeout(10 * time.Second)
	defer cancel()
	id, epoch, err := live.ProducerID(ctx)
	if err != nil {
		t.Fatal(err)
	}

	pi := describe(t, su, idemTopic, 0)
	c, err := dialRaw(su.broker(pi.leader).Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := kmsg.NewPtrInitProducerIDRequest()
	req.SetVersion(4)
	req.TransactionTimeoutMillis = 60_000
	req.ProducerID, req.ProducerEpoch = id, epoch
	resp, err := c.roundTrip(req, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ip := resp.(*kmsg.InitProducerIDResponse)
	answer := fmt.Sprintf("InitProducerId(%d, %d) answered %v with (%d, %d)", id, epoch, kerr.ErrorForCode(ip.ErrorCode), ip.ProducerID, ip.ProducerEpoch)
	if ip.ErrorCode == 0 && ip.ProducerID == id {
		// The claim was granted the live producer's ID at a new epoch: use
		// it, as the client that asked would.
		s := plainSpec(1, time.Now().UnixMilli())
		s.producerID, s.producerEpoch, s.firstSeq = ip.ProducerID, ip.ProducerEpoch, 0
		a, err := produceRaw(c, idemTopic, 0, s.craft(seqRecords(1, []byte("claimed"))), -1)
		if err != nil {
			t.Fatal(err)
		}
		answer += fmt.Sprintf("; a produce at that epoch: %v", a.err)
		t.Errorf("%s: a client was handed the live producer's ID %d at epoch %d", answer, id, ip.ProducerEpoch)
	}
	repeatFor(su.oneShotWindow(), func() bool { produceSync(20, "after"); return !t.Failed() })
	id2, epoch2, err := live.ProducerID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if id2 != id || epoch2 != epoch {
		t.Errorf("the live producer went from (%d, %d) to (%d, %d): it was fenced", id, epoch, id2, epoch2)
	}
	return answer + "; the live producer kept producing"
}
