package broker

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/chronik-go/chronik/internal/vfs"
	"github.com/chronik-go/chronik/security"
	"github.com/chronik-go/chronik/tier1"
	"github.com/chronik-go/chronik/tier3"
)

// Config configures a standalone broker. The zero value is not valid: start
// from DefaultConfig and override.
type Config struct {
	DataDir        string
	FS             vfs.FS // nil means vfs.Default
	KafkaAddr      string // listen address
	AdvertisedAddr string // host:port given to clients; empty means the bound listener address
	// InternalAddr is the host:port other brokers dial (replica fetches);
	// empty means AdvertisedAddr.
	InternalAddr string
	NodeID       int32

	AutoCreateTopics         bool
	DefaultPartitions        int32
	DefaultReplicationFactor int16
	MinInsyncReplicas        int16

	WALProfile        tier1.Profile
	FsyncBatchTimeout time.Duration // overrides the profile's max wait when > 0
	Fsync             tier1.FsyncMode

	// MaxRequestBytes bounds one request frame (Kafka's
	// socket.request.max.bytes); a larger frame closes the connection.
	MaxRequestBytes int32
	// MessageMaxBytes is the broker default for a topic's max.message.bytes.
	MessageMaxBytes int32
	// MessageTimestampBeforeMaxMs and MessageTimestampAfterMaxMs are the
	// broker defaults of the topic configs message.timestamp.before.max.ms
	// and message.timestamp.after.max.ms (KIP-937): how far in the past and
	// in the future a producer's CreateTime timestamp may lie.
	MessageTimestampBeforeMaxMs int64
	MessageTimestampAfterMaxMs  int64
	// ProducerIDExpiration forgets an idempotent producer on a partition
	// once its last write there is this old (Kafka's
	// producer.id.expiration.ms); ProducerIDsMaxPerPartition bounds the
	// producers a partition remembers, forgetting the least recently used.
	// Both bound what clients inventing producer IDs can make a partition
	// keep in memory and in its producers checkpoint.
	ProducerIDExpiration       time.Duration
	ProducerIDsMaxPerPartition int
	// MaxPartitions bounds the partitions of all topics together; topic
	// creation (explicit or automatic) and CreatePartitions past it fail.
	MaxPartitions int32
	// MaxInflightPerConn bounds requests read ahead of their responses on one
	// connection.
	MaxInflightPerConn int
	// QueuedMaxRequestBytes bounds the request bytes held by the whole
	// broker at once (Kafka's queued.max.request.bytes): a connection whose
	// next frame does not fit waits before reading it.
	QueuedMaxRequestBytes int64
	// FetchMaxBytes caps one fetch response whatever the client asks
	// (Kafka's fetch.max.bytes).
	FetchMaxBytes int32

	// RequestReadTimeout bounds how long a request frame may take to
	// arrive once its first byte has; a slower peer is disconnected, so
	// it cannot keep part of QueuedMaxRequestBytes. 0 waits for ever.
	RequestReadTimeout time.Duration
	// ConnectionsMaxIdle closes a connection with no request in flight
	// that received nothing for this long (Kafka's
	// connections.max.idle.ms). 0 keeps idle connections.
	ConnectionsMaxIdle time.Duration
	// ResponseWriteTimeout closes a connection whose socket takes no
	// byte of a response for this long: a client that stops reading. 0
	// waits for ever.
	ResponseWriteTimeout time.Duration
	// ConnectionMaxUnsentBytes bounds the Fetch response bytes one
	// connection has built or is building but not yet written: a fetch
	// reserves its request's bound (its max bytes, capped by
	// FetchMaxBytes) when read, and gives it back once written. While a
	// fetch does not fit, the connection reads no further requests. A
	// single fetch is always let through. 0 means no bound.
	ConnectionMaxUnsentBytes int64
	// MaxConnections and MaxConnectionsPerIP cap the open client
	// connections, in all and from one remote IP (Kafka's
	// max.connections and max.connections.per.ip): past either, a new
	// connection is accepted and closed at once. 0 means no cap.
	MaxConnections      int
	MaxConnectionsPerIP int
	// ReplicaFetchRequireInternalAddr serves a fetch as a follower's only
	// when it comes from an IP the claimed broker's registered internal
	// host resolves to (besides its broker epoch). Turn it off when
	// brokers reach one another through NAT.
	ReplicaFetchRequireInternalAddr bool

	// GroupMinSessionTimeout and GroupMaxSessionTimeout bound a group
	// member's session timeout (Kafka's group.min/max.session.timeout.ms).
	GroupMinSessionTimeout time.Duration
	GroupMaxSessionTimeout time.Duration
	// GroupInitialRebalanceDelay holds the first rebalance of an empty
	// group so members starting together join one generation (Kafka's
	// group.initial.rebalance.delay.ms).
	GroupInitialRebalanceDelay time.Duration
	// OffsetsRetention expires the committed offsets of empty groups
	// (Kafka's offsets.retention.minutes); OffsetsRetentionCheckInterval is
	// how often they are checked (0 disables expiry).
	OffsetsRetention              time.Duration
	OffsetsRetentionCheckInterval time.Duration
	// OffsetsTopicNumPartitions and OffsetsTopicReplicationFactor shape
	// __consumer_offsets when it is created (Kafka's
	// offsets.topic.num.partitions, 50, and
	// offsets.topic.replication.factor, 3, capped by the live brokers).
	OffsetsTopicNumPartitions     int32
	OffsetsTopicReplicationFactor int16
	// TransactionStateLogNumPartitions and
	// TransactionStateLogReplicationFactor shape __transaction_state the
	// same way (Kafka's transaction.state.log.*, 50 and 3).
	TransactionStateLogNumPartitions     int32
	TransactionStateLogReplicationFactor int16
	// TransactionMaxTimeout is the longest transaction timeout a producer
	// may ask for (transaction.max.timeout.ms); TransactionAbortCheckInterval
	// how often timed-out transactions are looked for and aborted; and
	// TransactionalIDExpiration how long an idle transactional ID is kept
	// (transactional.id.expiration.ms).
	TransactionMaxTimeout         time.Duration
	TransactionAbortCheckInterval time.Duration
	TransactionalIDExpiration     time.Duration
	// ConsumerGroupHeartbeatInterval and ConsumerGroupSessionTimeout are
	// the KIP-848 consumer protocol's heartbeat interval, told to members,
	// and the silence after which a member is removed (Kafka's
	// group.consumer.heartbeat.interval.ms and session.timeout.ms).
	ConsumerGroupHeartbeatInterval time.Duration
	ConsumerGroupSessionTimeout    time.Duration

	// SegmentCheckInterval is how often the sealer looks for partitions
	// whose active segment reached segment.ms (segment.bytes wakes it at
	// once). RetentionCheckInterval is how often retention and compaction
	// run (Kafka's log.retention.check.interval.ms).
	SegmentCheckInterval   time.Duration
	RetentionCheckInterval time.Duration
	// WALSegmentBytes is the WAL's segment roll size; 0 means tier1's
	// default. Small values let tests see the WAL trimmed.
	WALSegmentBytes int64
	// SealWorkers bounds the partitions sealed at once.
	SealWorkers int
	// WALPinSegments seals a partition early, whatever segment.bytes and
	// segment.ms say, once its unsealed data keeps this many WAL segments
	// behind the active one alive: the WAL is shared, so one quiet
	// partition must not make it grow without bound.
	WALPinSegments int
	// MaxOpenSegmentFiles bounds the sealed segment files held open.
	MaxOpenSegmentFiles int
	// CompactionMemoryBytes bounds the key map of one compaction pass; a
	// log with more distinct keys is compacted in several passes.
	CompactionMemoryBytes int64

	// ScrubInterval is how often the scrubber reads every sealed segment
	// in full and checks every batch (scrub.go); the first pass starts
	// with the broker. 0 turns the passes off: damage found when segments
	// load or by reads is still repaired.
	ScrubInterval time.Duration
	// ScrubBytesPerSec paces the scrubber's reads.
	ScrubBytesPerSec int64
	// ScrubRepairRetry is how soon a repair that found no good copy (the
	// leader unreachable, the archive not covering the segment) is tried
	// again.
	ScrubRepairRetry time.Duration

	// Tier3 is the object store sealed segments are archived to and read
	// back from (tier3.go); nil disables Tier 3.
	Tier3 tier3.Store
	// Tier3CacheBytes bounds the on-disk cache of archived chunks
	// (<data>/tier3-cache).
	Tier3CacheBytes int64
	// Tier3UploadWorkers bounds the partitions uploading at once.
	Tier3UploadWorkers int
	// Tier3RetryMin and Tier3RetryMax bound the exponential backoff after a
	// failed upload.
	Tier3RetryMin, Tier3RetryMax time.Duration
	// Tier3ChunkBytes is the unit of archived ranged reads and of the cache;
	// Tier3ReadAheadBytes how far ahead of a sequential reader chunks are
	// fetched (0 means tier3's defaults, negative read-ahead disables it).
	Tier3ChunkBytes, Tier3ReadAheadBytes int64
	// SegmentArchived, when set, is called after a segment of the
	// partition is archived (the batch indexer's cue); it must not block.
	SegmentArchived func(topic string, partition int32)

	// Cluster, when set, makes the broker a cluster member (cluster.go);
	// nil runs it standalone.
	Cluster *ClusterConfig
	// ReplicaLagTimeMax: a follower that has not caught up with its leader
	// for this long leaves the ISR (Kafka's replica.lag.time.max.ms).
	ReplicaLagTimeMax time.Duration
	// ReplicaFetchWaitMax bounds how long a follower's fetch waits at its
	// leader for new data (Kafka's replica.fetch.wait.max.ms). A change in
	// what a follower fetches never waits for it: the fetch in flight is
	// cut short.
	ReplicaFetchWaitMax time.Duration

	// Listeners are the Kafka listeners (Kafka's listeners); empty means
	// one PLAINTEXT listener on KafkaAddr. AdvertisedListeners maps a
	// listener's name to the host:port its clients are told (the first
	// listener falls back to AdvertisedAddr, any to its bound address).
	Listeners           []security.Listener
	AdvertisedListeners map[string]string
	// InterBrokerListener is the listener other brokers dial for replica
	// fetches (Kafka's inter.broker.listener.name); empty: the first. It
	// is PLAINTEXT or SSL; with SSL the brokers authenticate one another
	// with their certificates (mutual TLS).
	InterBrokerListener string
	// ServerTLS serves the SSL listeners (asking for client certificates
	// as CHRONIK_TLS_CLIENT_AUTH says) and SASLServerTLS the SASL_SSL ones
	// (ServerTLS when nil); ClientTLS dials the other brokers'
	// inter-broker listener, presenting this broker's certificate.
	ServerTLS, SASLServerTLS, ClientTLS *tls.Config
	// SASLMechanisms are the mechanisms offered on SASL listeners (Kafka's
	// sasl.enabled.mechanisms); empty: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512.
	SASLMechanisms []string
	// Authorizer, when set, checks every request against the ACLs
	// (CHRONIK_AUTHORIZER=acl); nil allows everything.
	Authorizer *security.Authorizer
	// BootstrapUsers are created at startup unless they exist (Kafka's
	// kafka-storage format --add-scram): the explicit step that makes the
	// first admin. An existing user is left as it is.
	BootstrapUsers []security.ScramUser

	Logger *slog.Logger
	// Metrics, when set, gets the broker's Prometheus series (registered
	// by New, unregistered by Close). Nil keeps them unexported.
	Metrics prometheus.Registerer
}

// DefaultConfig returns the embedded defaults of DESIGN.md's configuration
// contract.
func DefaultConfig() Config {
	p, _ := tier1.ProfileByName("medium")
	return Config{
		DataDir:                  "./data",
		KafkaAddr:                "0.0.0.0:9092",
		NodeID:                   1,
		AutoCreateTopics:         true,
		DefaultPartitions:        1,
		DefaultReplicationFactor: 1,
		MinInsyncReplicas:        1,
		WALProfile:               p,
		Fsync:                    tier1.FsyncAlways,
		MaxRequestBytes:          100 << 20,
		MessageMaxBytes:          1 << 20,

		MessageTimestampBeforeMaxMs: math.MaxInt64,
		MessageTimestampAfterMaxMs:  3600000,
		ProducerIDExpiration:        24 * time.Hour,
		ProducerIDsMaxPerPartition:  10000,
		MaxPartitions:               20000,

		MaxInflightPerConn:    128,
		QueuedMaxRequestBytes: 512 << 20,
		FetchMaxBytes:         55 << 20,

		RequestReadTimeout:              30 * time.Second,
		ConnectionsMaxIdle:              10 * time.Minute,
		ResponseWriteTimeout:            30 * time.Second,
		ConnectionMaxUnsentBytes:        64 << 20,
		MaxConnections:                  10000,
		MaxConnectionsPerIP:             1000,
		ReplicaFetchRequireInternalAddr: true,

		GroupMinSessionTimeout:        6 * time.Second,
		GroupMaxSessionTimeout:        30 * time.Minute,
		GroupInitialRebalanceDelay:    3 * time.Second,
		OffsetsRetention:              7 * 24 * time.Hour,
		OffsetsRetentionCheckInterval: 10 * time.Minute,
		OffsetsTopicNumPartitions:     50,
		OffsetsTopicReplicationFactor: 3,

		TransactionStateLogNumPartitions:     50,
		TransactionStateLogReplicationFactor: 3,
		TransactionMaxTimeout:                15 * time.Minute,
		TransactionAbortCheckInterval:        10 * time.Second,
		TransactionalIDExpiration:            7 * 24 * time.Hour,

		ConsumerGroupHeartbeatInterval: 5 * time.Second,
		ConsumerGroupSessionTimeout:    45 * time.Second,

		SegmentCheckInterval:   time.Second,
		RetentionCheckInterval: 5 * time.Minute,
		SealWorkers:            2,
		WALPinSegments:         4,
		MaxOpenSegmentFiles:    1024,
		CompactionMemoryBytes:  64 << 20,
		ScrubInterval:          24 * time.Hour,
		ScrubBytesPerSec:       64 << 20,
		ScrubRepairRetry:       10 * time.Second,

		ReplicaLagTimeMax:   10 * time.Second,
		ReplicaFetchWaitMax: 500 * time.Millisecond,

		Tier3CacheBytes:    1 << 30,
		Tier3UploadWorkers: 2,
		Tier3RetryMin:      500 * time.Millisecond,
		Tier3RetryMax:      30 * time.Second,
	}
}

// Validate checks the fields that depend on one another.
func (c *Config) Validate() error {
	switch {
	case c.DataDir == "":
		return fmt.Errorf("broker: data dir is empty")
	case c.DefaultPartitions < 1:
		return fmt.Errorf("broker: default partitions %d must be at least 1", c.DefaultPartitions)
	case c.MessageMaxBytes < 1024:
		return fmt.Errorf("broker: message max bytes %d must be at least 1024", c.MessageMaxBytes)
	case c.MaxRequestBytes < c.MessageMaxBytes:
		return fmt.Errorf("broker: max request bytes %d must be at least message max bytes %d", c.MaxRequestBytes, c.MessageMaxBytes)
	case c.MessageTimestampBeforeMaxMs < 0 || c.MessageTimestampAfterMaxMs < 0:
		return fmt.Errorf("broker: message timestamp before max %d and after max %d must not be negative", c.MessageTimestampBeforeMaxMs, c.MessageTimestampAfterMaxMs)
	case c.ProducerIDExpiration <= 0 || c.ProducerIDsMaxPerPartition < 1:
		return fmt.Errorf("broker: producer ID expiration %v must be positive and producer IDs max per partition %d at least 1", c.ProducerIDExpiration, c.ProducerIDsMaxPerPartition)
	case c.MaxPartitions < 1:
		return fmt.Errorf("broker: max partitions %d must be at least 1", c.MaxPartitions)
	case c.WALProfile.QueueDepth <= 0:
		return fmt.Errorf("broker: WAL profile has no queue depth")
	case c.Cluster != nil && (c.ReplicaFetchWaitMax <= 0 || c.ReplicaFetchWaitMax >= c.ReplicaLagTimeMax):
		return fmt.Errorf("broker: replica fetch wait max %v must be positive and below replica lag time max %v", c.ReplicaFetchWaitMax, c.ReplicaLagTimeMax)
	case c.GroupMinSessionTimeout > c.GroupMaxSessionTimeout:
		return fmt.Errorf("broker: group min session timeout %v exceeds group max session timeout %v", c.GroupMinSessionTimeout, c.GroupMaxSessionTimeout)
	case c.OffsetsRetentionCheckInterval > 0 && c.OffsetsRetention <= 0:
		return fmt.Errorf("broker: offsets retention %v must be positive when offsets retention check interval is %v", c.OffsetsRetention, c.OffsetsRetentionCheckInterval)
	case c.SegmentCheckInterval <= 0 || c.RetentionCheckInterval <= 0:
		return fmt.Errorf("broker: segment check interval %v and retention check interval %v must be positive", c.SegmentCheckInterval, c.RetentionCheckInterval)
	case c.SealWorkers < 1 || c.WALPinSegments < 1 || c.MaxOpenSegmentFiles < 1:
		return fmt.Errorf("broker: seal workers %d, WAL pin segments %d and max open segment files %d must be at least 1", c.SealWorkers, c.WALPinSegments, c.MaxOpenSegmentFiles)
	case c.CompactionMemoryBytes < 1<<10:
		return fmt.Errorf("broker: compaction memory %d must be at least 1 KiB", c.CompactionMemoryBytes)
	case c.ScrubInterval < 0 || c.ScrubRepairRetry <= 0:
		return fmt.Errorf("broker: scrub interval %v must not be negative and scrub repair retry %v must be positive", c.ScrubInterval, c.ScrubRepairRetry)
	case c.ScrubInterval > 0 && c.ScrubBytesPerSec < 1<<10:
		return fmt.Errorf("broker: scrub bytes per sec %d must be at least 1 KiB when scrub interval is %v", c.ScrubBytesPerSec, c.ScrubInterval)
	case c.ConsumerGroupHeartbeatInterval <= 0 || c.ConsumerGroupSessionTimeout <= c.ConsumerGroupHeartbeatInterval:
		return fmt.Errorf("broker: consumer group heartbeat interval %v must be positive and below consumer group session timeout %v", c.ConsumerGroupHeartbeatInterval, c.ConsumerGroupSessionTimeout)
	case c.Tier3 != nil && (c.Tier3UploadWorkers < 1 || c.Tier3CacheBytes < 1<<20):
		return fmt.Errorf("broker: tier 3 upload workers %d must be at least 1 and tier 3 cache bytes %d at least 1 MiB", c.Tier3UploadWorkers, c.Tier3CacheBytes)
	case c.Tier3 != nil && (c.Tier3RetryMin <= 0 || c.Tier3RetryMax < c.Tier3RetryMin):
		return fmt.Errorf("broker: tier 3 retry min %v must be positive and at most tier 3 retry max %v", c.Tier3RetryMin, c.Tier3RetryMax)
	case c.QueuedMaxRequestBytes < int64(c.MaxRequestBytes):
		return fmt.Errorf("broker: queued max request bytes %d must be at least max request bytes %d", c.QueuedMaxRequestBytes, c.MaxRequestBytes)
	case c.FetchMaxBytes < 1024:
		return fmt.Errorf("broker: fetch max bytes %d must be at least 1024", c.FetchMaxBytes)
	case c.MaxInflightPerConn < 1:
		return fmt.Errorf("broker: max inflight per connection %d must be at least 1", c.MaxInflightPerConn)
	case c.RequestReadTimeout < 0 || c.ConnectionsMaxIdle < 0 || c.ResponseWriteTimeout < 0:
		return fmt.Errorf("broker: request read timeout %v, connections max idle %v and response write timeout %v must not be negative",
			c.RequestReadTimeout, c.ConnectionsMaxIdle, c.ResponseWriteTimeout)
	case c.ConnectionMaxUnsentBytes < 0:
		return fmt.Errorf("broker: connection max unsent bytes %d must not be negative", c.ConnectionMaxUnsentBytes)
	case c.hasTLSListener() && c.ServerTLS == nil:
		return fmt.Errorf("broker: an SSL or SASL_SSL listener needs a TLS certificate (CHRONIK_TLS_CERT_FILE and CHRONIK_TLS_KEY_FILE)")
	case c.MaxConnections < 0 || c.MaxConnectionsPerIP < 0:
		return fmt.Errorf("broker: max connections %d and max connections per IP %d must not be negative", c.MaxConnections, c.MaxConnectionsPerIP)
	}
	return nil
}

func (c *Config) hasTLSListener() bool {
	for _, l := range c.Listeners {
		if l.Protocol.TLS() {
			return true
		}
	}
	return false
}
