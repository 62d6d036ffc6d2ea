package broker

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// CreatePartitions: v0-3
//
// Behavior:
// * Grows a topic to Count partitions; a count not above the current one
//   gets INVALID_PARTITIONS; ValidateOnly checks without changing.
// * Partitions past CHRONIK_MAX_PARTITIONS, all topics together, get
//   POLICY_VIOLATION; a count above it on its own INVALID_PARTITIONS.
// * ACLs: ALTER on the topic, checked before it is looked up, else
//   TOPIC_AUTHORIZATION_FAILED.
//
// Deviations:
// * Manual assignments are rejected with INVALID_REQUEST (standalone).

func handleCreatePartitions(c *conn, req *request) reply {
	r := req.Request.(*kmsg.CreatePartitionsRequest)
	b := c.b
	resp := r.ResponseKind().(*kmsg.CreatePartitionsResponse)
	for _, rt := range r.Topics {
		st := kmsg.NewCreatePartitionsResponseTopic()
		st.Topic = rt.Topic
		var err error
		var t *topic
		denied := !c.allowed(kmsg.ACLOperationAlter, kmsg.ACLResourceTypeTopic, rt.Topic)
		if !denied {
			t = b.lookupTopic(rt.Topic)
		}
		switch {
		case denied:
			err = kerrf(kerr.TopicAuthorizationFailed, "not authorized to alter topic %q", rt.Topic)
		case t == nil:
			err = kerrf(kerr.UnknownTopicOrPartition, "topic %q does not exist", rt.Topic)
		case isInternalTopic(t.name):
			// More partitions would move groups and transactional IDs
			// away from their state.
			err = kerrf(kerr.InvalidRequest, "%s is internal: its partition count places its coordinators' keys and cannot change", t.name)
		case len(rt.Assignment) > 0:
			err = kerrf(kerr.InvalidRequest, "manual replica assignment is not supported")
		default:
			err = b.createPartitions(t, rt.Count, r.ValidateOnly)
		}
		if err != nil {
			st.ErrorCode, st.ErrorMessage = kafkaErr(err).Code, errMessage(err)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return now(resp)
}
