package ops

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Setting is one row of the configuration contract (DESIGN.md,
// "Configuration contract"). The settings table below is the single source
// of truth: flags, environment variables, config-file keys, defaults and the
// text of `chronik start --help` are all generated from it.
type Setting struct {
	Flag string // flag name without dashes; empty when there is no flag
	Env  string // CHRONIK_* variable; always set, and unique
	Key  string // config-file key; empty when the file cannot set it
	Type string // value syntax shown in help ("bool" makes a valueless flag mean true)

	// Default is the literal default. DefaultDoc, when set, describes a
	// default that is derived from other values or that means "unset".
	Default    string
	DefaultDoc string
	Help       string

	// Inverts names the Env of a bool setting this one is the inverse of:
	// both set the same field, so at most one value per source may be given.
	Inverts string

	set func(c *Config, v string) error
	// derive fills the field when no source gave a value and Default is
	// empty. It runs after every other setting is resolved, in table order.
	derive func(c *Config) error
}

// Settings returns a copy of the settings table, in help order.
func Settings() []Setting {
	return append([]Setting(nil), settings...)
}

var settings = []Setting{
	{
		Flag: "config", Env: "CHRONIK_CONFIG", Type: "file",
		DefaultDoc: "none",
		Help:       "YAML file of settings, keyed by the file keys listed here",
		set:        func(c *Config, v string) error { c.ConfigFile = v; return nil },
	},
	{
		Flag: "data-dir", Env: "CHRONIK_DATA_DIR", Key: "data_dir", Type: "dir",
		Default: "./data",
		Help:    "directory for all local state",
		set:     func(c *Config, v string) error { c.DataDir = v; return nil },
	},
	{
		Flag: "kafka-addr", Env: "CHRONIK_KAFKA_ADDR", Key: "kafka_addr", Type: "host:port",
		Default: "0.0.0.0:9092",
		Help:    "Kafka listener",
		set:     func(c *Config, v string) error { c.KafkaAddr = v; return nil },
	},
	{
		Flag: "advertised-addr", Env: "CHRONIK_ADVERTISED_ADDR", Key: "advertised_addr", Type: "host:port",
		DefaultDoc: "the bound listener address",
		Help:       "host:port given to clients in metadata",
		set:        func(c *Config, v string) error { c.AdvertisedAddr = v; return nil },
	},
	{
		Flag: "internal-addr", Env: "CHRONIK_INTERNAL_ADDR", Key: "internal_addr", Type: "host:port",
		DefaultDoc: "the advertised address",
		Help:       "host:port the other brokers reach this broker's Kafka listener at (followers fetch there), when clients use another address",
		set:        func(c *Config, v string) error { c.InternalAddr = v; return nil },
	},
	{
		Flag: "http-addr", Env: "CHRONIK_HTTP_ADDR", Key: "http_addr", Type: "host:port",
		Default: "0.0.0.0:6092",
		Help:    "metrics, health, search API and admin listener",
		set:     func(c *Config, v string) error { c.HTTPAddr = v; return nil },
	},
	{
		Flag: "pprof", Env: "CHRONIK_PPROF", Key: "pprof", Type: "bool",
		Default: "false",
		Help:    "serve Go's pprof profiles under /debug/pprof/ on the HTTP listener (exposes internals: keep the port private)",
		set:     setBool(func(c *Config) *bool { return &c.Pprof }, false),
	},
	{
		Flag: "node-id", Env: "CHRONIK_NODE_ID", Key: "node_id", Type: "int",
		Default: "1",
		Help:    "broker id",
		set:     setInt32(func(c *Config) *int32 { return &c.NodeID }),
	},
	{
		Flag: "raft-addr", Env: "CHRONIK_RAFT_ADDR", Key: "raft_addr", Type: "host:port",
		Default: "0.0.0.0:9093",
		Help:    "controller (Raft) listener",
		set:     func(c *Config, v string) error { c.RaftAddr = v; return nil },
	},
	{
		Flag: "peers", Env: "CHRONIK_CLUSTER_PEERS", Key: "cluster_peers", Type: "id@host:port,...",
		DefaultDoc: "empty = standalone",
		Help:       "controller voters; in the file also a YAML list",
		set:        setPeers,
	},
	{
		Flag: "broker-heartbeat-interval", Env: "CHRONIK_BROKER_HEARTBEAT_INTERVAL_MS", Key: "broker_heartbeat_interval_ms", Type: "ms",
		Default: "200",
		Help:    "how often a broker tells the controller it is alive (cluster mode), in milliseconds",
		set:     setMillis(func(c *Config) *time.Duration { return &c.BrokerHeartbeatInterval }),
	},
	{
		Flag: "broker-session-timeout", Env: "CHRONIK_BROKER_SESSION_TIMEOUT_MS", Key: "broker_session_timeout_ms", Type: "ms",
		Default: "1500",
		Help:    "a broker silent this long is fenced and its partitions get new leaders (cluster mode), in milliseconds; at least 3 heartbeat intervals",
		set:     setMillis(func(c *Config) *time.Duration { return &c.BrokerSessionTimeout }),
	},
	{
		Flag: "replica-lag-time-max", Env: "CHRONIK_REPLICA_LAG_TIME_MAX_MS", Key: "replica_lag_time_max_ms", Type: "ms",
		Default: "10000",
		Help:    "a follower that has not caught up with its leader for this long leaves the ISR (Kafka's replica.lag.time.max.ms), in milliseconds",
		set:     setMillis(func(c *Config) *time.Duration { return &c.ReplicaLagTimeMax }),
	},
	{
		Flag: "replica-fetch-wait-max", Env: "CHRONIK_REPLICA_FETCH_WAIT_MAX_MS", Key: "replica_fetch_wait_max_ms", Type: "ms",
		Default: "500",
		Help: "how long a follower's fetch waits at its leader for new data (Kafka's replica.fetch.wait.max.ms), in milliseconds; " +
			"below CHRONIK_REPLICA_LAG_TIME_MAX_MS (cluster mode)",
		set: setMillis(func(c *Config) *time.Duration { return &c.ReplicaFetchWaitMax }),
	},
	{
		Flag: "replica-fetch-require-internal-addr", Env: "CHRONIK_REPLICA_FETCH_REQUIRE_INTERNAL_ADDR", Key: "replica_fetch_require_internal_addr", Type: "bool",
		Default: "true",
		Help: "serve a fetch as a follower replica's (moving the high watermark) only when it comes from an IP that the claimed broker's registered " +
			"internal address (CHRONIK_INTERNAL_ADDR, else its advertised one) resolves to, besides carrying its broker epoch (cluster mode); " +
			"turn off when brokers reach one another through NAT",
		set: setBool(func(c *Config) *bool { return &c.ReplicaFetchRequireInternalAddr }, false),
	},
	{
		Flag: "controller-recover", Env: "CHRONIK_CONTROLLER_RECOVER", Key: "controller_recover", Type: "bool",
		Default: "false",
		Help: "form a new controller quorum although every node lost its Raft state while the data directories say they were members of a cluster: " +
			"the topics are adopted again from the brokers' data (cluster mode; an explicit recovery step, see docs/cluster.md)",
		set: setBool(func(c *Config) *bool { return &c.ControllerRecover }, false),
	},
	{
		Flag: "unclean-leader-election-enable", Env: "CHRONIK_UNCLEAN_LEADER_ELECTION_ENABLE", Key: "unclean_leader_election_enable", Type: "bool",
		Default: "false",
		Help: "default of the topic config unclean.leader.election.enable: when no in-sync replica of a partition is live, elect another live replica, " +
			"losing what it lacks (cluster mode; off, as in Kafka)",
		set: setBool(func(c *Config) *bool { return &c.UncleanLeaderElection }, false),
	},
	{
		Flag: "auto-leader-rebalance-enable", Env: "CHRONIK_AUTO_LEADER_REBALANCE_ENABLE", Key: "auto_leader_rebalance_enable", Type: "bool",
		Default: "true",
		Help: "move partitions back to their preferred replicas (the first listed) when a broker leads too few of them, as after a restart " +
			"(Kafka's auto.leader.rebalance.enable; cluster mode)",
		set: setBool(func(c *Config) *bool { return &c.AutoLeaderRebalance }, false),
	},
	{
		Flag: "leader-imbalance-check-interval", Env: "CHRONIK_LEADER_IMBALANCE_CHECK_INTERVAL_SECONDS", Key: "leader_imbalance_check_interval_seconds", Type: "seconds",
		Default: "300",
		Help:    "how often the controller checks the leaders' balance (Kafka's leader.imbalance.check.interval.seconds; cluster mode), in seconds",
		set:     setSeconds(func(c *Config) *time.Duration { return &c.LeaderImbalanceCheckInterval }),
	},
	{
		Flag: "leader-imbalance-per-broker-percentage", Env: "CHRONIK_LEADER_IMBALANCE_PER_BROKER_PERCENTAGE", Key: "leader_imbalance_per_broker_percentage", Type: "int",
		Default: "10",
		Help: "a broker leading more than this percentage fewer of its preferred partitions than it could gets them back at the next check " +
			"(Kafka's leader.imbalance.per.broker.percentage; cluster mode)",
		set: setIntBetween(func(c *Config) *int { return &c.LeaderImbalancePerBrokerPercentage }, 0, 100),
	},
	{
		Flag: "scrub-interval", Env: "CHRONIK_SCRUB_INTERVAL_MS", Key: "scrub_interval_ms", Type: "ms",
		Default: "86400000",
		Help: "how often every sealed segment is read in full and each batch checked (CRC, offsets), the first pass at startup; " +
			"a damaged segment is repaired from the partition's leader or the Tier 3 archive, in milliseconds; 0 turns the passes off",
		set: setMillis(func(c *Config) *time.Duration { return &c.ScrubInterval }),
	},
	{
		Flag: "scrub-bytes-per-sec", Env: "CHRONIK_SCRUB_BYTES_PER_SEC", Key: "scrub_bytes_per_sec", Type: "bytes",
		Default: "67108864",
		Help:    "how fast the scrubber reads sealed segments, in bytes per second (at least 1024)",
		set: func(c *Config, v string) error {
			n, err := parseInt(v, 1024, math.MaxInt64)
			c.ScrubBytesPerSec = n
			return err
		},
	},
	{
		Flag: "wal-profile", Env: "CHRONIK_WAL_PROFILE", Key: "wal_profile", Type: "name",
		Default: "medium",
		Help:    "group-commit bounds: " + strings.Join(walProfiles, ", "),
		set:     func(c *Config, v string) error { c.WALProfile = strings.ToLower(v); return nil },
	},
	{
		Flag: "fsync", Env: "CHRONIK_FSYNC", Key: "fsync", Type: "mode",
		Default: string(FsyncAlways),
		Help:    "always: ack after fsync; never: ack after write, the OS flushes (explicitly weaker)",
		set:     func(c *Config, v string) error { c.Fsync = FsyncMode(strings.ToLower(v)); return nil },
	},
	{
		Flag: "fsync-batch-timeout", Env: "CHRONIK_FSYNC_BATCH_TIMEOUT_MS", Key: "fsync_batch_timeout_ms", Type: "ms",
		DefaultDoc: "the WAL profile's max wait",
		Help:       "longest a group commit lingers under load, in milliseconds",
		set:        setMillis(func(c *Config) *time.Duration { return &c.FsyncBatchTimeout }),
	},
	{
		Flag: "tier3-url", Env: "CHRONIK_TIER3_URL", Key: "tier3_url", Type: "url",
		DefaultDoc: "file://<data-dir>/archive",
		Help:       "object storage: file:///path, s3://bucket/prefix or minio://host:port/bucket/prefix",
		set:        func(c *Config, v string) error { c.Tier3URL = v; return nil },
		derive:     deriveTier3URL,
	},
	{
		Flag: "realtime-index", Env: "CHRONIK_REALTIME_INDEX", Key: "realtime_index", Type: "bool",
		Default: "false",
		Help:    "keep an in-memory search index of the active tail",
		set:     setBool(func(c *Config) *bool { return &c.RealtimeIndex }, false),
	},
	{
		Flag: "index-workers", Env: "CHRONIK_INDEX_WORKERS", Key: "index_workers", Type: "int",
		Default: "1",
		Help:    "batch indexer workers building search indexes of archived segments; 0 turns the indexer off (search still covers everything, indexing on the fly)",
		set: func(c *Config, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > 64 {
				return errors.New("is not a number of workers from 0 to 64")
			}
			c.IndexWorkers = n
			return nil
		},
	},
	{
		Flag: "index-nice", Env: "CHRONIK_INDEX_NICE", Key: "index_nice", Type: "int",
		Default: "19",
		Help:    "CPU priority (Linux nice value, 0 to 19) of the batch indexer's build processes; 19 yields the CPU to producers and consumers, 0 keeps the broker's priority",
		set: func(c *Config, v string) error {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil || n < 0 || n > 19 {
				return errors.New("is not a nice value from 0 to 19")
			}
			c.IndexNice = n
			return nil
		},
	},
	{
		Flag: "index-yield-cpu", Env: "CHRONIK_INDEX_YIELD_CPU", Key: "index_yield_cpu", Type: "cores",
		Default: "0.5",
		Help:    "index builds pause while the broker itself uses more CPU than this many cores (0.5: half a core), and continue after a second below; 0 never pauses them",
		set: func(c *Config, v string) error {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil || f < 0 || f > 1024 || math.IsNaN(f) {
				return errors.New("is not a number of cores from 0 to 1024 (e.g. 0.5)")
			}
			c.IndexYieldCPU = f
			return nil
		},
	},
	{
		Flag: "search-max-hits", Env: "CHRONIK_SEARCH_MAX_HITS", Key: "search_max_hits", Type: "int",
		Default: "10000",
		Help: "most hits one page of the search API may ask for (offset + limit, 1 to 10000000); a request for more is refused " +
			"with 400, and deeper hits are paged to with each answer's \"next\" (chronik search follows it)",
		set: func(c *Config, v string) error {
			n, err := parseInt(v, 1, 10_000_000)
			c.SearchMaxHits = int(n)
			return err
		},
	},
	{
		Flag: "search-max-response-bytes", Env: "CHRONIK_SEARCH_MAX_RESPONSE_BYTES", Key: "search_max_response_bytes", Type: "bytes",
		Default: "16777216",
		Help: "most bytes of hits (record keys, headers and values) one search API answer holds (at least 1024); " +
			"past them the page ends early with a \"next\" that continues it",
		set: func(c *Config, v string) error {
			n, err := parseInt(v, 1024, math.MaxInt32)
			c.SearchMaxResponseBytes = int(n)
			return err
		},
	},
	{
		Flag: "search-timeout", Env: "CHRONIK_SEARCH_TIMEOUT_MS", Key: "search_timeout_ms", Type: "ms",
		Default: "30000",
		Help: "longest a search API request runs, in milliseconds: then it answers the hits read so far with a \"next\", " +
			"or 503 when it has read none; 0 never stops one",
		set: setMillis(func(c *Config) *time.Duration { return &c.SearchTimeout }),
	},
	{
		Flag: "search-max-concurrent", Env: "CHRONIK_SEARCH_MAX_CONCURRENT", Key: "search_max_concurrent", Type: "int",
		Default: "4",
		Help:    "searches the search API runs at once (1 to 1024); one more is answered 429 Too Many Requests with Retry-After at once, not queued",
		set: func(c *Config, v string) error {
			n, err := parseInt(v, 1, 1024)
			c.SearchMaxConcurrent = int(n)
			return err
		},
	},
	{
		Env: "CHRONIK_DISABLE_REALTIME_INDEX", Key: "disable_realtime_index", Type: "bool",
		Inverts: "CHRONIK_REALTIME_INDEX",
		Help:    "the inverse of --realtime-index, accepted for configs written for the Rust Chronik",
		set:     setBool(func(c *Config) *bool { return &c.RealtimeIndex }, true),
	},
	{
		Flag: "auto-create-topics", Env: "CHRONIK_AUTO_CREATE_TOPICS", Key: "auto_create_topics", Type: "bool",
		Default: "true",
		Help:    "create unknown topics on metadata requests (Kafka's auto.create.topics.enable)",
		set:     setBool(func(c *Config) *bool { return &c.AutoCreateTopics }, false),
	},
	{
		Flag: "default-partitions", Env: "CHRONIK_DEFAULT_PARTITIONS", Key: "default_partitions", Type: "int",
		Default: "1",
		Help:    "partitions of auto-created topics",
		set:     setInt32(func(c *Config) *int32 { return &c.DefaultPartitions }),
	},
	{
		Flag: "default-replication-factor", Env: "CHRONIK_DEFAULT_REPLICATION_FACTOR", Key: "default_replication_factor", Type: "int",
		DefaultDoc: "min(3, brokers): 1 standalone",
		Help:       "replication factor of auto-created topics",
		set:        setInt16(func(c *Config) *int16 { return &c.DefaultReplicationFactor }),
		derive: func(c *Config) error {
			c.DefaultReplicationFactor = int16(min(3, c.Brokers()))
			return nil
		},
	},
	{
		Flag: "min-insync-replicas", Env: "CHRONIK_MIN_INSYNC_REPLICAS", Key: "min_insync_replicas", Type: "int",
		DefaultDoc: "2 when the replication factor is 3 or more, else 1",
		Help:       "replicas that must have a record before acks=all succeeds",
		set:        setInt16(func(c *Config) *int16 { return &c.MinInsyncReplicas }),
		derive: func(c *Config) error {
			c.MinInsyncReplicas = 1
			if c.DefaultReplicationFactor >= 3 {
				c.MinInsyncReplicas = 2
			}
			return nil
		},
	},
	{
		Flag: "max-request-bytes", Env: "CHRONIK_MAX_REQUEST_BYTES", Key: "max_request_bytes", Type: "bytes",
		Default: "104857600",
		Help:    "largest request frame; a larger one closes the connection (Kafka's socket.request.max.bytes)",
		set:     setInt32(func(c *Config) *int32 { return &c.MaxRequestBytes }),
	},
	{
		Flag: "message-max-bytes", Env: "CHRONIK_MESSAGE_MAX_BYTES", Key: "message_max_bytes", Type: "bytes",
		Default: "1048576",
		Help:    "largest record batch; the default of topics' max.message.bytes",
		set:     setInt32(func(c *Config) *int32 { return &c.MessageMaxBytes }),
	},
	{
		Flag: "message-timestamp-before-max", Env: "CHRONIK_MESSAGE_TIMESTAMP_BEFORE_MAX_MS", Key: "message_timestamp_before_max_ms", Type: "ms",
		Default: "9223372036854775807",
		Help: "default of topics' message.timestamp.before.max.ms (KIP-937): a produced CreateTime record whose timestamp is more than this many " +
			"milliseconds behind the broker's clock fails its batch with INVALID_TIMESTAMP; the default refuses none",
		set: setInt64(func(c *Config) *int64 { return &c.MessageTimestampBeforeMaxMs }),
	},
	{
		Flag: "message-timestamp-after-max", Env: "CHRONIK_MESSAGE_TIMESTAMP_AFTER_MAX_MS", Key: "message_timestamp_after_max_ms", Type: "ms",
		Default: "3600000",
		Help: "default of topics' message.timestamp.after.max.ms (KIP-937): a produced CreateTime record whose timestamp is more than this many " +
			"milliseconds ahead of the broker's clock fails its batch with INVALID_TIMESTAMP, so a clock in the future cannot pin a segment past retention",
		set: setInt64(func(c *Config) *int64 { return &c.MessageTimestampAfterMaxMs }),
	},
	{
		Flag: "producer-id-expiration", Env: "CHRONIK_PRODUCER_ID_EXPIRATION_MS", Key: "producer_id_expiration_ms", Type: "ms",
		Default: "86400000",
		Help: "an idempotent producer whose last write to a partition is older than this is forgotten there (Kafka's producer.id.expiration.ms), " +
			"in milliseconds; its next write is accepted at any sequence, as Kafka accepts a producer it does not know",
		set: setMillis(func(c *Config) *time.Duration { return &c.ProducerIDExpiration }),
	},
	{
		Flag: "producer-ids-max-per-partition", Env: "CHRONIK_PRODUCER_IDS_MAX_PER_PARTITION", Key: "producer_ids_max_per_partition", Type: "int",
		Default: "10000",
		Help: "idempotent producers remembered per partition; past it the least recently used are forgotten, so clients inventing producer IDs " +
			"cannot grow memory or the producer checkpoint without bound",
		set: setPositiveInt32(func(c *Config) *int32 { return &c.ProducerIDsMaxPerPartition }),
	},
	{
		Flag: "max-partitions", Env: "CHRONIK_MAX_PARTITIONS", Key: "max_partitions", Type: "int",
		Default: "20000",
		Help: "partitions the cluster holds at most, all topics together: CreateTopics and CreatePartitions past it fail with POLICY_VIOLATION " +
			"and auto-creation leaves the topic unknown",
		set: setPositiveInt32(func(c *Config) *int32 { return &c.MaxPartitions }),
	},
	{
		Flag: "offsets-topic-num-partitions", Env: "CHRONIK_OFFSETS_TOPIC_NUM_PARTITIONS", Key: "offsets_topic_num_partitions", Type: "int",
		Default: "50",
		Help: "partitions of __consumer_offsets when it is created (Kafka's offsets.topic.num.partitions); a group's coordinator is the leader " +
			"of partition abs(hash(group)) % this, so it cannot change once the topic exists",
		set: setPositiveInt32(func(c *Config) *int32 { return &c.OffsetsTopicNumPartitions }),
	},
	{
		Flag: "offsets-topic-replication-factor", Env: "CHRONIK_OFFSETS_TOPIC_REPLICATION_FACTOR", Key: "offsets_topic_replication_factor", Type: "int",
		Default: "3",
		Help: "replicas of each __consumer_offsets partition (Kafka's offsets.topic.replication.factor): created with as many as the brokers " +
			"live then allow, raised by reassignment as more register",
		set: setPositiveInt16(func(c *Config) *int16 { return &c.OffsetsTopicReplicationFactor }),
	},
	{
		Flag: "offsets-retention-minutes", Env: "CHRONIK_OFFSETS_RETENTION_MINUTES", Key: "offsets_retention_minutes", Type: "int",
		Default: "10080",
		Help: "committed offsets of a group with no members are removed this many minutes after the group emptied or they were committed, " +
			"whichever is later (Kafka's offsets.retention.minutes, 7 days)",
		set: func(c *Config, v string) error {
			n, err := parseInt(v, 1, math.MaxInt32)
			c.OffsetsRetention = time.Duration(n) * time.Minute
			return err
		},
	},
	{
		Flag: "transaction-state-log-num-partitions", Env: "CHRONIK_TRANSACTION_STATE_LOG_NUM_PARTITIONS", Key: "transaction_state_log_num_partitions", Type: "int",
		Default: "50",
		Help: "partitions of __transaction_state when it is created (Kafka's transaction.state.log.num.partitions); a transactional ID's coordinator " +
			"is the leader of partition abs(hash(id)) % this, so it cannot change once the topic exists",
		set: setPositiveInt32(func(c *Config) *int32 { return &c.TransactionStateLogNumPartitions }),
	},
	{
		Flag: "transaction-state-log-replication-factor", Env: "CHRONIK_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", Key: "transaction_state_log_replication_factor", Type: "int",
		Default: "3",
		Help: "replicas of each __transaction_state partition (Kafka's transaction.state.log.replication.factor): created with as many as the brokers " +
			"live then allow, raised by reassignment as more register",
		set: setPositiveInt16(func(c *Config) *int16 { return &c.TransactionStateLogReplicationFactor }),
	},
	{
		Flag: "transaction-max-timeout", Env: "CHRONIK_TRANSACTION_MAX_TIMEOUT_MS", Key: "transaction_max_timeout_ms", Type: "ms",
		Default: "900000",
		Help: "the longest transaction.timeout.ms a transactional producer may ask for (Kafka's transaction.max.timeout.ms, 15 minutes); " +
			"longer gets INVALID_TRANSACTION_TIMEOUT. A transaction open longer than its timeout is aborted and its producer fenced",
		set: setMillis(func(c *Config) *time.Duration { return &c.TransactionMaxTimeout }),
	},
	{
		Flag: "transaction-abort-timed-out-transaction-cleanup-interval", Env: "CHRONIK_TRANSACTION_ABORT_TIMED_OUT_TRANSACTION_CLEANUP_INTERVAL_MS",
		Key: "transaction_abort_timed_out_transaction_cleanup_interval_ms", Type: "ms",
		Default: "10000",
		Help: "how often the transaction coordinator looks for transactions past their timeout to abort " +
			"(Kafka's transaction.abort.timed.out.transaction.cleanup.interval.ms)",
		set: setMillis(func(c *Config) *time.Duration { return &c.TransactionAbortCheckInterval }),
	},
	{
		Flag: "request-read-timeout", Env: "CHRONIK_REQUEST_READ_TIMEOUT_MS", Key: "request_read_timeout_ms", Type: "ms",
		Default: "30000",
		Help: "once the first byte of a request has arrived, the whole request must arrive within this many milliseconds or the connection is closed, " +
			"so a client that stops mid-request cannot hold the broker's request memory; 0 waits for ever",
		set: setMillis(func(c *Config) *time.Duration { return &c.RequestReadTimeout }),
	},
	{
		Flag: "connections-max-idle", Env: "CHRONIK_CONNECTIONS_MAX_IDLE_MS", Key: "connections_max_idle_ms", Type: "ms",
		Default: "600000",
		Help: "a client connection with no request in flight that has sent nothing for this many milliseconds is closed " +
			"(Kafka's connections.max.idle.ms); 0 keeps idle connections",
		set: setMillis(func(c *Config) *time.Duration { return &c.ConnectionsMaxIdle }),
	},
	{
		Flag: "response-write-timeout", Env: "CHRONIK_RESPONSE_WRITE_TIMEOUT_MS", Key: "response_write_timeout_ms", Type: "ms",
		Default: "30000",
		Help: "a connection whose client takes no byte of a pending response for this many milliseconds (it stopped reading) is closed, " +
			"releasing the responses built for it; a slow reader that makes progress keeps its connection; 0 waits for ever",
		set: setMillis(func(c *Config) *time.Duration { return &c.ResponseWriteTimeout }),
	},
	{
		Flag: "connection-max-unsent-bytes", Env: "CHRONIK_CONNECTION_MAX_UNSENT_BYTES", Key: "connection_max_unsent_bytes", Type: "bytes",
		Default: "67108864",
		Help: "bound on the Fetch response bytes one connection may have built and not yet written: each Fetch reserves its own bound " +
			"(its max bytes, capped by the broker's fetch max bytes, at most this whole value) when read and releases it once its response is written; " +
			"while the next Fetch does not fit, the connection reads no further requests. Other responses are small and bounded by the requests in flight; 0 means no bound",
		set: setInt64(func(c *Config) *int64 { return &c.ConnectionMaxUnsentBytes }),
	},
	{
		Flag: "max-connections", Env: "CHRONIK_MAX_CONNECTIONS", Key: "max_connections", Type: "int",
		Default: "10000",
		Help: "open client connections the broker serves (Kafka's max.connections): past it a new connection is accepted and closed at once; " +
			"0 means no cap",
		set: setInt(func(c *Config) *int { return &c.MaxConnections }),
	},
	{
		Flag: "max-connections-per-ip", Env: "CHRONIK_MAX_CONNECTIONS_PER_IP", Key: "max_connections_per_ip", Type: "int",
		Default: "1000",
		Help: "open client connections from one remote IP, loopback included (Kafka's max.connections.per.ip): past it a new connection from that IP " +
			"is accepted and closed at once; 0 means no cap",
		set: setInt(func(c *Config) *int { return &c.MaxConnectionsPerIP }),
	},
	{
		Flag: "listeners", Env: "CHRONIK_LISTENERS", Key: "listeners", Type: "NAME://host:port,...",
		DefaultDoc: "PLAINTEXT://<CHRONIK_KAFKA_ADDR>",
		Help: "Kafka listeners in Kafka's form, e.g. PLAINTEXT://:9092,SASL_SSL://:9094; a name that is not a protocol " +
			"(PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL) needs an entry in CHRONIK_LISTENER_SECURITY_PROTOCOL_MAP; replaces CHRONIK_KAFKA_ADDR",
		set: func(c *Config, v string) error { c.Listeners = v; return nil },
	},
	{
		Flag: "advertised-listeners", Env: "CHRONIK_ADVERTISED_LISTENERS", Key: "advertised_listeners", Type: "NAME://host:port,...",
		DefaultDoc: "each listener's bound address",
		Help:       "host:port each listener's clients are told, e.g. SASL_SSL://broker1.example.com:9094 (Kafka's advertised.listeners)",
		set:        func(c *Config, v string) error { c.AdvertisedListeners = v; return nil },
	},
	{
		Flag: "listener-security-protocol-map", Env: "CHRONIK_LISTENER_SECURITY_PROTOCOL_MAP", Key: "listener_security_protocol_map", Type: "NAME:PROTOCOL,...",
		DefaultDoc: "none",
		Help:       "the security protocol of listeners named otherwise, e.g. INTERNAL:SSL,CLIENT:SASL_SSL",
		set:        func(c *Config, v string) error { c.ListenerProtocolMap = v; return nil },
	},
	{
		Flag: "inter-broker-listener-name", Env: "CHRONIK_INTER_BROKER_LISTENER_NAME", Key: "inter_broker_listener_name", Type: "name",
		DefaultDoc: "the first listener",
		Help: "the listener other brokers fetch from (PLAINTEXT or SSL); with SSL they present their certificates (mutual TLS) and need " +
			"CLUSTER_ACTION on the cluster or to be super users when the authorizer is on",
		set: func(c *Config, v string) error {
			c.InterBrokerListener = strings.ToUpper(strings.TrimSpace(v))
			return nil
		},
	},
	{
		Flag: "tls-cert-file", Env: "CHRONIK_TLS_CERT_FILE", Key: "tls_cert_file", Type: "file",
		DefaultDoc: "none",
		Help:       "PEM certificate (chain) of the SSL and SASL_SSL listeners, the HTTP listener with CHRONIK_HTTP_TLS and the controller port with CHRONIK_CONTROLLER_TLS; reloaded when it changes",
		set:        func(c *Config, v string) error { c.TLSCertFile = v; return nil },
	},
	{
		Flag: "tls-key-file", Env: "CHRONIK_TLS_KEY_FILE", Key: "tls_key_file", Type: "file",
		DefaultDoc: "none",
		Help:       "PEM private key of CHRONIK_TLS_CERT_FILE",
		set:        func(c *Config, v string) error { c.TLSKeyFile = v; return nil },
	},
	{
		Flag: "tls-ca-file", Env: "CHRONIK_TLS_CA_FILE", Key: "tls_ca_file", Type: "file",
		DefaultDoc: "none",
		Help:       "PEM CA certificates trusted for client certificates and for the other brokers' certificates",
		set:        func(c *Config, v string) error { c.TLSCAFile = v; return nil },
	},
	{
		Flag: "tls-client-auth", Env: "CHRONIK_TLS_CLIENT_AUTH", Key: "tls_client_auth", Type: "mode",
		Default: "none",
		Help:    "client certificates on SSL listeners (Kafka's ssl.client.auth): none, requested or required",
		set:     func(c *Config, v string) error { c.TLSClientAuth = strings.ToLower(strings.TrimSpace(v)); return nil },
	},
	{
		Flag: "sasl-enabled-mechanisms", Env: "CHRONIK_SASL_ENABLED_MECHANISMS", Key: "sasl_enabled_mechanisms", Type: "list",
		Default: "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
		Help:    "SASL mechanisms offered on SASL listeners; PLAIN checks passwords against the SCRAM users (use it over TLS only)",
		set:     func(c *Config, v string) error { c.SASLMechanisms = v; return nil },
	},
	{
		Flag: "authorizer", Env: "CHRONIK_AUTHORIZER", Key: "authorizer", Type: "name",
		DefaultDoc: "none",
		Help:       "acl checks every request against the ACLs (Kafka's operation per API); empty allows everything and the ACL APIs answer SECURITY_DISABLED",
		set:        func(c *Config, v string) error { c.Authorizer = strings.ToLower(strings.TrimSpace(v)); return nil },
	},
	{
		Flag: "super-users", Env: "CHRONIK_SUPER_USERS", Key: "super_users", Type: "principals",
		DefaultDoc: "none",
		Help: "principals allowed everything, separated by semicolons as in Kafka (DNs hold commas), e.g. User:admin;User:CN=broker-1,O=Chronik; " +
			"brokers' certificate principals belong here",
		set: func(c *Config, v string) error { c.SuperUsers = v; return nil },
	},
	{
		Flag: "allow-everyone-if-no-acl-found", Env: "CHRONIK_ALLOW_EVERYONE_IF_NO_ACL_FOUND", Key: "allow_everyone_if_no_acl_found", Type: "bool",
		Default: "false",
		Help:    "with the authorizer on, allow an operation on a resource no ACL names (Kafka's allow.everyone.if.no.acl.found)",
		set:     setBool(func(c *Config) *bool { return &c.AllowEveryoneIfNoACL }, false),
	},
	{
		Flag: "bootstrap-users-file", Env: "CHRONIK_BOOTSTRAP_USERS_FILE", Key: "bootstrap_users_file", Type: "file",
		DefaultDoc: "none",
		Help: "file of SCRAM users created at startup unless they exist, one per line in kafka-storage's --add-scram form: " +
			"SCRAM-SHA-512=[name=admin,password=...]; the explicit step that makes the first admin (there is no default user)",
		set: func(c *Config, v string) error { c.BootstrapUsersFile = v; return nil },
	},
	{
		Flag: "bootstrap-users", Env: "CHRONIK_BOOTSTRAP_USERS", Key: "bootstrap_users", Type: "entries",
		DefaultDoc: "none",
		Help: "SCRAM users in the form of CHRONIK_BOOTSTRAP_USERS_FILE given inline, separated by ';' or newlines " +
			"(for containers, whose environment comes from a .env file); visible in the process environment, so prefer the file",
		set: func(c *Config, v string) error { c.BootstrapUsers = v; return nil },
	},
	{
		Flag: "controller-tls", Env: "CHRONIK_CONTROLLER_TLS", Key: "controller_tls", Type: "bool",
		Default: "false",
		Help: "mutual TLS on the controller (Raft) port with the CHRONIK_TLS_* files: a peer needs a certificate from CHRONIK_TLS_CA_FILE " +
			"whose principal is in CHRONIK_SUPER_USERS (when set) to register, propose or vote",
		set: setBool(func(c *Config) *bool { return &c.ControllerTLS }, false),
	},
	{
		Flag: "http-tls", Env: "CHRONIK_HTTP_TLS", Key: "http_tls", Type: "bool",
		Default: "false",
		Help:    "serve the HTTP listener over TLS with CHRONIK_TLS_CERT_FILE and CHRONIK_TLS_KEY_FILE",
		set:     setBool(func(c *Config) *bool { return &c.HTTPTLS }, false),
	},
	{
		Flag: "http-auth-all", Env: "CHRONIK_HTTP_AUTH_ALL", Key: "http_auth_all", Type: "bool",
		Default: "false",
		Help: "with the authorizer on, /metrics, /healthz, /readyz and /debug/pprof/ also need HTTP basic credentials of a SCRAM user " +
			"(the search API always does then)",
		set: setBool(func(c *Config) *bool { return &c.HTTPAuthAll }, false),
	},
	{
		Flag: "log-level", Env: "CHRONIK_LOG_LEVEL", Key: "log_level", Type: "level",
		Default: "info",
		Help:    "debug, info, warn or error",
		set:     func(c *Config, v string) error { c.LogLevel = strings.ToLower(v); return nil },
	},
	{
		Flag: "log-format", Env: "CHRONIK_LOG_FORMAT", Key: "log_format", Type: "format",
		Default: "text",
		Help:    "text or json",
		set:     func(c *Config, v string) error { c.LogFormat = strings.ToLower(v); return nil },
	},
}

// walProfiles are the names tier1.ProfileByName accepts (DESIGN.md, Tier 1
// contract). ops does not import tier1 so configuration stays loadable and
// testable on its own.
var walProfiles = []string{"low", "medium", "high", "ultra"}

func setInt32(field func(*Config) *int32) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := parseInt(v, math.MinInt32, math.MaxInt32)
		*field(c) = int32(n)
		return err
	}
}

// setPositiveInt32 reads a whole number of at least 1.
func setPositiveInt32(field func(*Config) *int32) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := parseInt(v, 1, math.MaxInt32)
		*field(c) = int32(n)
		return err
	}
}

// setInt reads a non-negative whole number up to 2^31-1.
func setInt(field func(*Config) *int) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := parseInt(v, 0, math.MaxInt32)
		*field(c) = int(n)
		return err
	}
}

// setInt64 reads a non-negative whole number.
func setInt64(field func(*Config) *int64) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := parseInt(v, 0, math.MaxInt64)
		*field(c) = n
		return err
	}
}

// setPositiveInt16 reads a whole number of at least 1.
func setPositiveInt16(field func(*Config) *int16) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := parseInt(v, 1, math.MaxInt16)
		*field(c) = int16(n)
		return err
	}
}

func setInt16(field func(*Config) *int16) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := parseInt(v, math.MinInt16, math.MaxInt16)
		*field(c) = int16(n)
		return err
	}
}

func parseInt(v string, lo, hi int64) (int64, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("is not a whole number between %d and %d", lo, hi)
	}
	return n, nil
}

// setIntBetween reads a whole number from lo to hi.
func setIntBetween(field func(*Config) *int, lo, hi int64) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := parseInt(v, lo, hi)
		*field(c) = int(n)
		return err
	}
}

// setSeconds reads a whole number of seconds, at least one.
func setSeconds(field func(*Config) *time.Duration) func(*Config, string) error {
	return setWholeUnits(field, time.Second, 1, "seconds", "300")
}

func setMillis(field func(*Config) *time.Duration) func(*Config, string) error {
	return setWholeUnits(field, time.Millisecond, 0, "milliseconds", "10")
}

// setWholeUnits reads a whole number, at least least, of unit (named
// units; example is a valid value for the error message).
func setWholeUnits(field func(*Config) *time.Duration, unit time.Duration, least int64, units, example string) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil || n < least || n > math.MaxInt64/int64(unit) {
			floor := ""
			if least > 0 {
				floor = fmt.Sprintf(" of at least %d", least)
			}
			return fmt.Errorf("is not a whole number of %s%s (write %s, not %s%s)", units, floor, example, example, strings.TrimPrefix(unit.String(), "1"))
		}
		*field(c) = time.Duration(n) * unit
		return nil
	}
}

func setBool(field func(*Config) *bool, invert bool) func(*Config, string) error {
	return func(c *Config, v string) error {
		b, err := parseBool(v)
		*field(c) = b != invert
		return err
	}
}

func parseBool(v string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true", "t", "1", "yes", "on":
		return true, nil
	case "false", "f", "0", "no", "off":
		return false, nil
	}
	return false, fmt.Errorf("is not a boolean (write true or false)")
}

// Peer is one controller voter of CHRONIK_CLUSTER_PEERS.
type Peer struct {
	ID   int32
	Addr string // host:raftport
}

func (p Peer) String() string { return fmt.Sprintf("%d@%s", p.ID, p.Addr) }

func setPeers(c *Config, v string) error {
	c.Peers = nil
	for _, entry := range strings.Split(v, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		id, addr, ok := strings.Cut(entry, "@")
		n, err := strconv.ParseInt(id, 10, 32)
		if !ok || err != nil || n < 0 || addr == "" {
			return fmt.Errorf("has entry %q that is not id@host:port (write e.g. 1@10.0.0.1:9093,2@10.0.0.2:9093)", entry)
		}
		c.Peers = append(c.Peers, Peer{ID: int32(n), Addr: addr})
	}
	return nil
}

func (s *Setting) isBool() bool { return s.Type == "bool" }

// usage is the flag help text: the help, then where else the setting can
// be given and its default, then any inverse alias.
func (s *Setting) usage() string {
	var b strings.Builder
	b.WriteString(s.Help)
	b.WriteString("\nenv " + s.Env)
	if s.Key != "" {
		b.WriteString(", file key " + s.Key)
	}
	b.WriteString(", default " + s.defaultText())
	for i := range settings {
		if a := &settings[i]; a.Inverts == s.Env {
			fmt.Fprintf(&b, "\n%s (file key %s): %s", a.Env, a.Key, a.Help)
		}
	}
	return b.String()
}

func (s *Setting) defaultText() string {
	if s.DefaultDoc != "" {
		return s.DefaultDoc
	}
	return s.Default
}
