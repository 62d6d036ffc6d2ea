package replication

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"net"
	"slices"
	"sort"
	"strconv"

	"github.com/chronik-go/chronik/security"
)

// State is the cluster metadata every broker applies from the Raft log:
// brokers, topics with their partition assignment, leaders, leader epochs
// and ISRs, and the producer-ID high-water mark. A *State handed out by the
// controller is immutable: applying a command builds a new one that shares
// whatever did not change.
type State struct {
	ClusterID string `json:"cluster_id"`
	// Index is the Raft index of the last command applied.
	Index uint64 `json:"index"`

	Brokers map[int32]*BrokerInfo `json:"brokers"`
	Topics  map[string]*TopicInfo `json:"topics"`
	// Deleted records the topics whose deletion the log holds, by ID: the
	// only topics a broker deletes local data and archive objects of. A
	// topic a broker holds that is neither here nor in Topics is adopted,
	// never deleted (broker/cluster.go). At most maxDeletedTopics are kept,
	// the oldest dropped first.
	Deleted map[TopicID]DeletedTopic `json:"deleted,omitempty"`

	// NextProducerID: every producer ID below it has been handed to some
	// broker; blocks are allocated through the log so none is reused.
	NextProducerID int64 `json:"next_producer_id"`

	// Security holds the SCRAM users and the ACLs (nil: none).
	Security *security.State `json:"security,omitempty"`
}

// BrokerInfo is a registered broker.
type BrokerInfo struct {
	ID       int32  `json:"id"`
	Host     string `json:"host"`
	Port     int32  `json:"port"`
	RaftAddr string `json:"raft_addr"`
	// Endpoints are the advertised host:port of each of its listeners, by
	// listener name: a client is told the brokers' endpoints of the
	// listener it connected to (Kafka's advertised.listeners). Host and
	// Port are its first listener's.
	Endpoints map[string]string `json:"endpoints,omitempty"`
	// InternalHost and InternalPort are where the other brokers reach its
	// Kafka listener, when that differs from what clients are told.
	InternalHost string `json:"internal_host,omitempty"`
	InternalPort int32  `json:"internal_port,omitempty"`
	// Incarnation changes every time the broker process starts, so the
	// controller can tell a restart from a heartbeat.
	Incarnation string `json:"incarnation"`
	// StorageID names the broker's data directory: a broker that comes
	// back with another (its disk replaced or wiped) holds none of what
	// its replicas held, and leaves every ISR even as the last member.
	StorageID string `json:"storage_id,omitempty"`
	// Fenced brokers missed their heartbeats: they lead nothing, are out
	// of every ISR and are not listed to clients.
	Fenced bool `json:"fenced"`
}

// Epoch is the broker epoch of this incarnation (Kafka's KIP-903): what a
// follower sends in its fetches (ReplicaState.ReplicaEpoch) so its leader
// knows them to come from that broker, not from a client claiming its ID.
// It is derived from the incarnation, which only the controller quorum and
// the brokers see.
func (b *BrokerInfo) Epoch() int64 { return BrokerEpoch(b.Incarnation) }

// BrokerEpoch derives a broker epoch from an incarnation: its first 8 bytes
// as a positive integer (-1 when it has none).
func BrokerEpoch(incarnation string) int64 {
	raw, err := hex.DecodeString(incarnation)
	if err != nil || len(raw) < 8 {
		return -1
	}
	return int64(binary.BigEndian.Uint64(raw) & math.MaxInt64)
}

// InternalAddr is where another broker dials this one's Kafka listener.
func (b *BrokerInfo) InternalAddr() string {
	if b.InternalHost != "" {
		return net.JoinHostPort(b.InternalHost, strconv.Itoa(int(b.InternalPort)))
	}
	return net.JoinHostPort(b.Host, strconv.Itoa(int(b.Port)))
}

// TopicInfo is a topic. Its fields are never mutated once published.
type TopicInfo struct {
	Name       string            `json:"name"`
	ID         TopicID           `json:"id"`
	Configs    map[string]string `json:"configs,omitempty"`
	Partitions []PartitionInfo   `json:"partitions"`
}

// PartitionInfo is one partition's replica set and leadership.
type PartitionInfo struct {
	Replicas []int32 `json:"replicas"` // the first is the preferred leader
	ISR      []int32 `json:"isr"`
	Leader   int32   `json:"leader"` // -1: no leader (every ISR member is fenced)
	// LeaderEpoch grows by one on every leader change.
	LeaderEpoch int32 `json:"leader_epoch"`
	// Adopted is what the leader of an adopted partition held when it
	// reported it: a later adopter holding more takes over (AdoptTopic).
	Adopted *Holding `json:"adopted,omitempty"`
	// Offline are replicas their brokers reported damaged (a sealed
	// segment failed its checks): they leave the ISR unless they are its
	// last member, cannot rejoin it or be elected while another replica
	// can, until their broker reports them repaired.
	Offline []int32 `json:"offline,omitempty"`
	// Empty are replicas whose broker came back with another data
	// directory since they were last in the ISR: they hold nothing yet,
	// and an unclean election takes one only when no other replica lives.
	// A replica leaves Empty when it joins the ISR.
	Empty []int32 `json:"empty,omitempty"`
	// Adding and Removing are the replicas joining and leaving while a
	// reassignment runs (reassign.go); Replicas holds both.
	Adding   []int32 `json:"adding,omitempty"`
	Removing []int32 `json:"removing,omitempty"`
}

// DeletedTopic is the record of a topic's deletion.
type DeletedTopic struct {
	Name  string `json:"name"`
	Index uint64 `json:"index"` // the Raft index of the deletion
}

// maxDeletedTopics bounds State.Deleted.
const maxDeletedTopics = 100_000

// TopicID is a topic's 16-byte UUID; JSON holds it as 32 hex digits.
type TopicID [16]byte

func (id TopicID) String() string { return hex.EncodeToString(id[:]) }

// MarshalText implements encoding.TextMarshaler.
func (id TopicID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (id *TopicID) UnmarshalText(b []byte) error {
	n, err := hex.Decode(id[:], b)
	if err != nil || n != 16 {
		return fmt.Errorf("replication: bad topic id %q", b)
	}
	return nil
}

// NewState returns an empty state.
func NewState() *State {
	return &State{Brokers: map[int32]*BrokerInfo{}, Topics: map[string]*TopicInfo{}, NextProducerID: 1}
}

// clone copies the maps (not what they point to): commands replace entries
// instead of mutating them.
func (s *State) clone() *State {
	c := *s
	c.Brokers = maps.Clone(s.Brokers)
	c.Topics = maps.Clone(s.Topics)
	c.Deleted = maps.Clone(s.Deleted)
	return &c
}

// TopicByID returns the topic with the ID, or nil.
func (s *State) TopicByID(id TopicID) *TopicInfo {
	for _, t := range s.Topics {
		if t.ID == id {
			return t
		}
	}
	return nil
}

// LiveBrokers returns the unfenced brokers in ID order.
func (s *State) LiveBrokers() []*BrokerInfo {
	var out []*BrokerInfo
	for _, b := range s.Brokers {
		if !b.Fenced {
			out = append(out, b)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// BrokerIDs returns every registered broker's ID in order.
func (s *State) BrokerIDs() []int32 {
	ids := slices.Collect(maps.Keys(s.Brokers))
	slices.Sort(ids)
	return ids
}

// Live reports whether broker id is registered and unfenced.
func (s *State) Live(id int32) bool {
	b := s.Brokers[id]
	return b != nil && !b.Fenced
}

// Marshal encodes the state (snapshots, the HTTP status endpoint).
func (s *State) Marshal() ([]byte, error) { return json.Marshal(s) }

func unmarshalState(b []byte) (*State, error) {
	s := NewState()
	if err := json.Unmarshal(b, s); err != nil {
		return nil, fmt.Errorf("replication: decode state: %w", err)
	}
	if s.Brokers == nil {
		s.Brokers = map[int32]*BrokerInfo{}
	}
	if s.Topics == nil {
		s.Topics = map[string]*TopicInfo{}
	}
	return s, nil
}

// withPartitions returns a copy of t with new partitions (never mutating t).
func (t *TopicInfo) withPartitions(parts []PartitionInfo) *TopicInfo {
	c := *t
	c.Partitions = parts
	return &c
}
