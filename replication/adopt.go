package replication

import "slices"

// Adoption: a topic a broker holds that the controller's state neither
// knows nor records as deleted is taken in, never deleted. That is how a
// standalone broker's topics join the cluster it grows into, how a topic
// restored into a node's data directory (chronik topic restore) joins its
// cluster, and how a recovered quorum (Config.Recover) learns the topics
// back from the brokers.
//
// The adopting broker becomes the partition's only replica, leader and
// ISR, at a leader epoch above every epoch in its log and archive. When
// several brokers adopt the same topic (a recovered quorum), each becomes a
// replica, and the one holding the most (newest epoch, then longest log)
// leads: a later adopter holding more takes over with a new epoch. The
// others follow it and rejoin the ISR by catching up.

// AdoptTopicRequest asks the controller to adopt a topic Broker holds.
type AdoptTopicRequest struct {
	Broker  int32             `json:"broker"`
	Name    string            `json:"name"`
	ID      TopicID           `json:"id"`
	Configs map[string]string `json:"configs,omitempty"`
	// Partitions is what the broker holds of each partition, by index.
	Partitions []Holding `json:"partitions"`
}

// Holding is what a broker holds of one partition.
type Holding struct {
	Broker int32 `json:"broker"`
	LogEnd int64 `json:"log_end"`
	// LastEpoch is the newest leader epoch in its log or its archive's
	// manifest (-1 for none).
	LastEpoch int32 `json:"last_epoch"`
}

// more reports whether h holds more than o: a newer epoch, or the same
// and a longer log.
func (h Holding) more(o Holding) bool {
	if h.LastEpoch != o.LastEpoch {
		return h.LastEpoch > o.LastEpoch
	}
	return h.LogEnd > o.LogEnd
}

// planAdopt is the topic after adopting r into st: a new topic, or the
// known one with r's broker added.
func planAdopt(st *State, r *AdoptTopicRequest) (*TopicInfo, *Error) {
	if d, gone := st.Deleted[r.ID]; gone {
		return nil, errorf(CodeUnknownTopicOrPartition, "topic %q (%s) was deleted at metadata index %d", d.Name, r.ID, d.Index)
	}
	cur := st.Topics[r.Name]
	if cur != nil && cur.ID != r.ID {
		return nil, errorf(CodeTopicAlreadyExists, "another topic named %q exists (%s)", r.Name, cur.ID)
	}
	if other := st.TopicByID(r.ID); other != nil && other.Name != r.Name {
		return nil, errorf(CodeTopicAlreadyExists, "topic %s exists under the name %q", r.ID, other.Name)
	}
	if len(r.Partitions) == 0 {
		return nil, errorf(CodeInvalidRequest, "adopting topic %q with no partitions", r.Name)
	}
	t := &TopicInfo{Name: r.Name, ID: r.ID, Configs: r.Configs}
	if cur != nil {
		c := *cur
		c.Partitions = slices.Clone(cur.Partitions)
		t = &c
	}
	b := r.Broker
	leader := int32(-1)
	if st.Live(b) {
		leader = b
	}
	for i, h := range r.Partitions {
		h.Broker = b
		if i >= len(t.Partitions) {
			t.Partitions = append(t.Partitions, PartitionInfo{Replicas: []int32{b}, ISR: []int32{b}, Leader: leader,
				LeaderEpoch: max(h.LastEpoch, -1) + 1, Adopted: &h})
			continue
		}
		p := &t.Partitions[i]
		if !slices.Contains(p.Replicas, b) {
			p.Replicas = append(slices.Clone(p.Replicas), b)
		}
		if p.Adopted != nil && p.Adopted.Broker != b && h.more(*p.Adopted) {
			p.Leader, p.ISR = leader, []int32{b}
			p.LeaderEpoch = max(p.LeaderEpoch, h.LastEpoch) + 1
			p.Adopted = &h
		}
	}
	return t, nil
}
