package broker

import (
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/broker/group"
)

// TestOffsetDeleteConsumerProtocol: OffsetDelete refuses a topic that a
// KIP-848 member subscribes to.
func TestOffsetDeleteConsumerProtocol(t *testing.T) {
	b := consumerGroupBroker(t)
	cl := testClient(t, b)
	adm := kadm.NewClient(cl)
	groupCreateTopic(t, adm, "cg", 2)
	groupCreateTopic(t, adm, "other", 1)
	c := &cgClient{t: t, cl: cl, group: "god848", topic: b.lookupTopic("cg").id}
	wantHB(t, "m1 joins", c.hb("m1", 0, nil, nil), nil, 1, []int32{0, 1})

	req := kmsg.NewPtrOffsetDeleteRequest()
	req.Group = "god848"
	for _, name := range []string{"cg", "other"} {
		rt := kmsg.NewOffsetDeleteRequestTopic()
		rt.Topic = name
		rp := kmsg.NewOffsetDeleteRequestTopicPartition()
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
	}
	resp, err := req.RequestWith(testCtx(t), cl)
	if err != nil {
		t.Fatal(err)
	}
	if resp.ErrorCode != 0 || len(resp.Topics) != 2 {
		t.Fatalf("offset delete: %v %+v", kerr.ErrorForCode(resp.ErrorCode), resp.Topics)
	}
	if code := resp.Topics[0].Partitions[0].ErrorCode; code != kerr.GroupSubscribedToTopic.Code {
		t.Fatalf("subscribed topic: %v, want GROUP_SUBSCRIBED_TO_TOPIC", kerr.ErrorForCode(code))
	}
	if code := resp.Topics[1].Partitions[0].ErrorCode; code != 0 {
		t.Fatalf("unsubscribed topic: %v", kerr.ErrorForCode(code))
	}
}

// TestScanOffsetBatchesBadLength: a batch with an invalid length stops the
// replay with an error instead of re-reading the same offset forever.
func TestScanOffsetBatchesBadLength(t *testing.T) {
	good := encodeRecordBatch([]group.Record{{Key: []byte("k")}}, 0)
	bad := make([]byte, batchHeaderLen)
	binary.BigEndian.PutUint32(bad[offBatchLength:], 1) // too short
	log := append(append([]byte{}, good...), bad...)    // offsets 0 (good), 1 (bad)
	for _, tc := range []struct {
		name string
		read func(int64) ([]byte, error)
		want string
	}{
		{"first", func(int64) ([]byte, error) { return bad, nil }, "offset 0"},
		{"later", func(next int64) ([]byte, error) {
			if next == 0 {
				return log, nil
			}
			return bad, nil
		}, "offset 1"},
	} {
		done := make(chan error, 1)
		batches := 0
		go func() { done <- scanOffsetBatches(5, tc.read, func([]byte) { batches++ }) }()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%s: err %v, want one naming %s", tc.name, err, tc.want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: replay loops on an invalid batch", tc.name)
		}
	}
}
