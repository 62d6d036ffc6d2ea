package group

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// FuzzConsumerGroupHeartbeat: arbitrary heartbeats never panic the
// coordinator and always get an encodable answer.
func FuzzConsumerGroupHeartbeat(f *testing.F) {
	seed := func(r *kmsg.ConsumerGroupHeartbeatRequest) { f.Add(r.AppendTo(nil)) }
	r := kmsg.NewPtrConsumerGroupHeartbeatRequest()
	r.Version = 1
	r.Group, r.MemberID, r.RebalanceTimeoutMillis = "f", "m", 1000
	r.SubscribedTopicNames = []string{"fz"}
	r.Topics = []kmsg.ConsumerGroupHeartbeatRequestTopic{}
	seed(r)
	r.MemberEpoch = 1
	seed(r)
	r.MemberEpoch = -1
	seed(r)
	c, err := New(testConfig(false), newMemLog(1), memTopics{"fz": 3})
	if err != nil {
		f.Fatal(err)
	}
	defer c.Close()
	f.Fuzz(func(t *testing.T, body []byte) {
		req := kmsg.NewPtrConsumerGroupHeartbeatRequest()
		req.Version = 1
		if req.ReadFrom(body) != nil {
			return
		}
		resp, herr := c.consumerHeartbeat(req, "fuzz", "/fuzz")
		if herr == nil {
			resp.Version = 1
			_ = resp.AppendTo(nil)
		}
		// Forget the group: state piling up over millions of runs
		// would only measure the assignor's cost of huge groups.
		c.mu.Lock()
		if g := c.groups[req.Group]; g != nil {
			g.mu.Lock()
			if g.cg != nil {
				for _, m := range g.cg.members {
					stopCgMember(m)
				}
			}
			g.state = groupDead
			g.mu.Unlock()
			delete(c.groups, req.Group)
		}
		c.mu.Unlock()
	})
}
