package broker

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DeleteTopics: v0-6
//
// Behavior:
// * Topics by name (v0-5) or by name or ID (v6). An unknown name gets
//   UNKNOWN_TOPIC_OR_PARTITION, an unknown ID UNKNOWN_TOPIC_ID.
// * Deletion is durable before the response; fetches and produces to the
//   topic fail at once. A topic re-created with the same name gets a new ID
//   and never sees the old records.
//
// Deviations:
// * The deleted topic's WAL bytes are reclaimed with the WAL segments that
//   hold them (by Tier 2 retention), not immediately.

func handleDeleteTopics(c *conn, req *request) reply {
	r := req.Request.(*kmsg.DeleteTopicsRequest)
	b := c.b
	resp := r.ResponseKind().(*kmsg.DeleteTopicsResponse)
	targets := r.Topics
	if r.Version < 6 {
		targets = nil
		for _, name := range r.TopicNames {
			targets = append(targets, kmsg.DeleteTopicsRequestTopic{Topic: &name})
		}
	}
	for _, rt := range targets {
		st := kmsg.NewDeleteTopicsResponseTopic()
		st.Topic, st.TopicID = rt.Topic, rt.TopicID
		var t *topic
		if rt.Topic != nil {
			t = b.lookupTopic(*rt.Topic)
		} else {
			t = b.lookupTopicID(rt.TopicID)
		}
		var err error
		switch {
		case t == nil && rt.Topic == nil:
			err = kerrf(kerr.UnknownTopicID, "no topic has ID %s", topicIDString(rt.TopicID))
		case t == nil:
			err = kerrf(kerr.UnknownTopicOrPartition, "topic %q does not exist", *rt.Topic)
		case t.name == offsetsTopic:
			err = kerrf(kerr.InvalidTopicException, "%s is internal and cannot be deleted", offsetsTopic)
		default:
			name := t.name
			st.Topic, st.TopicID = &name, t.id
			err = b.deleteTopic(t)
		}
		if err != nil {
			st.ErrorCode, st.ErrorMessage = kafkaErr(err).Code, errMessage(err)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return now(resp)
}
