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
// * ACLs: DELETE on the topic, checked before it is looked up, else
//   TOPIC_AUTHORIZATION_FAILED; a topic named by ID also needs DESCRIBE,
//   without which its name is not returned.
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
		name := ""
		if rt.Topic != nil {
			name = *rt.Topic
		} else if t != nil {
			name = t.name
		}
		var err error
		switch {
		case t == nil && rt.Topic == nil:
			err = kerrf(kerr.UnknownTopicID, "no topic has ID %s", topicIDString(rt.TopicID))
		case rt.Topic == nil && !c.allowed(kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeTopic, name):
			err = kerrf(kerr.TopicAuthorizationFailed, "not authorized to describe topic ID %s", topicIDString(rt.TopicID))
		case !c.allowed(kmsg.ACLOperationDelete, kmsg.ACLResourceTypeTopic, name):
			st.Topic = &name // the client named it, or may describe it
			err = kerrf(kerr.TopicAuthorizationFailed, "not authorized to delete topic %q", name)
		case t == nil:
			err = kerrf(kerr.UnknownTopicOrPartition, "topic %q does not exist", *rt.Topic)
		case isInternalTopic(t.name):
			err = kerrf(kerr.InvalidTopicException, "%s is internal and cannot be deleted", t.name)
		default:
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
