package broker

import (
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// partitionTotal counts the partitions of every topic but the internal one.
func partitionTotal(b *Broker) int {
	b.mu.RLock()
	defer b.mu.RUnlock()
	n := 0
	for _, t := range b.topics {
		if !isInternalTopic(t.name) {
			n += len(t.partitions)
		}
	}
	return n
}

func createTopicsRaw(t *testing.T, c *rawConn, name string, partitions int32) kmsg.CreateTopicsResponseTopic {
	t.Helper()
	req := kmsg.NewPtrCreateTopicsRequest()
	req.SetVersion(5)
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = name, partitions, -1
	req.Topics = append(req.Topics, rt)
	c.send(req)
	resp := req.ResponseKind().(*kmsg.CreateTopicsResponse)
	if err := c.recv(resp); err != nil {
		t.Fatal(err)
	}
	return resp.Topics[0]
}

// A client asking to auto-create 5,000 topics against a broker with
// CHRONIK_MAX_PARTITIONS=100 leaves 100 partitions; the other topics stay
// unknown. CreateTopics and CreatePartitions past the limit fail.
func TestMaxPartitionsBoundsCreation(t *testing.T) {
	b := testBroker(t, t.TempDir(), func(c *Config) { c.MaxPartitions = 100 })
	c := dialRaw(t, b)

	const asked = 5000
	unknown := 0
	for batch := 0; batch < asked/500; batch++ {
		req := kmsg.NewPtrMetadataRequest()
		req.SetVersion(9)
		req.AllowAutoTopicCreation = true
		for i := 0; i < 500; i++ {
			name := fmt.Sprintf("auto-%d", batch*500+i)
			rt := kmsg.NewMetadataRequestTopic()
			rt.Topic = &name
			req.Topics = append(req.Topics, rt)
		}
		c.send(req)
		resp := req.ResponseKind().(*kmsg.MetadataResponse)
		if err := c.recv(resp); err != nil {
			t.Fatal(err)
		}
		for _, rt := range resp.Topics {
			switch rt.ErrorCode {
			case 0:
			case kerr.UnknownTopicOrPartition.Code:
				unknown++
			default:
				t.Fatalf("auto-creating %s: %v", *rt.Topic, kerr.ErrorForCode(rt.ErrorCode))
			}
		}
	}
	if n := partitionTotal(b); n != 100 {
		t.Fatalf("after auto-creating %d topics the broker has %d partitions; want the limit, 100", asked, n)
	}
	if unknown != asked-100 {
		t.Errorf("%d topics answered UNKNOWN_TOPIC_OR_PARTITION; want %d", unknown, asked-100)
	}

	if r := createTopicsRaw(t, c, "explicit", 1); r.ErrorCode != kerr.PolicyViolation.Code || r.ErrorMessage == nil {
		t.Errorf("CreateTopics past the limit: %v, want POLICY_VIOLATION with a message", kerr.ErrorForCode(r.ErrorCode))
	} else {
		t.Logf("CreateTopics past the limit: %s", *r.ErrorMessage)
	}
	if r := createTopicsRaw(t, c, "huge", 101); r.ErrorCode != kerr.InvalidPartitions.Code {
		t.Errorf("CreateTopics asking for 101 partitions: %v, want INVALID_PARTITIONS", kerr.ErrorForCode(r.ErrorCode))
	}

	req := kmsg.NewPtrCreatePartitionsRequest()
	rt := kmsg.NewCreatePartitionsRequestTopic()
	rt.Topic, rt.Count = "auto-0", 3
	req.Topics = append(req.Topics, rt)
	c.send(req)
	resp := req.ResponseKind().(*kmsg.CreatePartitionsResponse)
	if err := c.recv(resp); err != nil {
		t.Fatal(err)
	}
	if code := resp.Topics[0].ErrorCode; code != kerr.PolicyViolation.Code {
		t.Errorf("CreatePartitions past the limit: %v, want POLICY_VIOLATION", kerr.ErrorForCode(code))
	}
	if n := partitionTotal(b); n != 100 {
		t.Errorf("the broker has %d partitions; want 100", n)
	}
}

// In a cluster the controller counts the partitions in its own state, so
// the limit holds whichever broker takes the request.
func TestMaxPartitionsInCluster(t *testing.T) {
	nodes := testCluster(t, 1, func(_ int, c *Config) { c.MaxPartitions = 10 })
	b := nodes[0].b
	c := dialRaw(t, b)
	if r := createTopicsRaw(t, c, "eight", 8); r.ErrorCode != 0 {
		t.Fatalf("create 8 partitions: %v", kerr.ErrorForCode(r.ErrorCode))
	}
	if r := createTopicsRaw(t, c, "three", 3); r.ErrorCode != kerr.PolicyViolation.Code {
		t.Fatalf("create 3 more partitions past the limit of 10: %v, want POLICY_VIOLATION", kerr.ErrorForCode(r.ErrorCode))
	}
	req := kmsg.NewPtrMetadataRequest()
	req.SetVersion(9)
	req.AllowAutoTopicCreation = true
	for i := range 5 {
		name := fmt.Sprintf("auto-%d", i)
		req.Topics = append(req.Topics, kmsg.MetadataRequestTopic{Topic: &name})
	}
	c.send(req)
	resp := req.ResponseKind().(*kmsg.MetadataResponse)
	if err := c.recv(resp); err != nil {
		t.Fatal(err)
	}
	unknown := 0
	for _, rt := range resp.Topics {
		if rt.ErrorCode == kerr.UnknownTopicOrPartition.Code {
			unknown++
		}
	}
	total := 0
	for _, ti := range b.ctl.State().Topics {
		total += len(ti.Partitions)
	}
	if total != 10 || unknown != 3 {
		t.Fatalf("after auto-creating 5 topics: %d partitions in the controller's state and %d topics unknown; want 10 and 3", total, unknown)
	}
}
