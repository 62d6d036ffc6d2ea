package ops

import (
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/pflag"
)

func mapEnv(m map[string]string) Env {
	return func(k string) string { return m[k] }
}

func newFlags(t *testing.T, args ...string) *pflag.FlagSet {
	t.Helper()
	fs := pflag.NewFlagSet("start", pflag.ContinueOnError)
	RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parse %v: %v", args, err)
	}
	return fs
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "chronik.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// The contract's names are fixed: scripts, compose.yaml and outside tests
// rely on them. This list is DESIGN.md's configuration table plus the
// settings added since; changing it is changing the contract.
func TestSettingNamesMatchContract(t *testing.T) {
	want := map[string]string{ // env -> flag ("" = no flag)
		"CHRONIK_DATA_DIR":                   "data-dir",
		"CHRONIK_KAFKA_ADDR":                 "kafka-addr",
		"CHRONIK_ADVERTISED_ADDR":            "advertised-addr",
		"CHRONIK_HTTP_ADDR":                  "http-addr",
		"CHRONIK_PPROF":                      "pprof",
		"CHRONIK_NODE_ID":                    "node-id",
		"CHRONIK_RAFT_ADDR":                  "raft-addr",
		"CHRONIK_CLUSTER_PEERS":              "peers",
		"CHRONIK_WAL_PROFILE":                "wal-profile",
		"CHRONIK_FSYNC":                      "fsync",
		"CHRONIK_FSYNC_BATCH_TIMEOUT_MS":     "fsync-batch-timeout",
		"CHRONIK_TIER3_URL":                  "tier3-url",
		"CHRONIK_REALTIME_INDEX":             "realtime-index",
		"CHRONIK_DISABLE_REALTIME_INDEX":     "",
		"CHRONIK_INDEX_WORKERS":              "index-workers",
		"CHRONIK_INDEX_NICE":                 "index-nice",
		"CHRONIK_INDEX_YIELD_CPU":            "index-yield-cpu",
		"CHRONIK_AUTO_CREATE_TOPICS":         "auto-create-topics",
		"CHRONIK_DEFAULT_PARTITIONS":         "default-partitions",
		"CHRONIK_DEFAULT_REPLICATION_FACTOR": "default-replication-factor",
		"CHRONIK_MIN_INSYNC_REPLICAS":        "min-insync-replicas",
		// Beyond DESIGN.md's table.
		"CHRONIK_LOG_LEVEL":         "log-level",
		"CHRONIK_LOG_FORMAT":        "log-format",
		"CHRONIK_CONFIG":            "config",
		"CHRONIK_MAX_REQUEST_BYTES": "max-request-bytes",
		"CHRONIK_MESSAGE_MAX_BYTES": "message-max-bytes",

		"CHRONIK_MESSAGE_TIMESTAMP_BEFORE_MAX_MS": "message-timestamp-before-max",
		"CHRONIK_MESSAGE_TIMESTAMP_AFTER_MAX_MS":  "message-timestamp-after-max",

		"CHRONIK_PRODUCER_ID_EXPIRATION_MS":      "producer-id-expiration",
		"CHRONIK_PRODUCER_IDS_MAX_PER_PARTITION": "producer-ids-max-per-partition",
		"CHRONIK_MAX_PARTITIONS":                 "max-partitions",

		"CHRONIK_OFFSETS_TOPIC_NUM_PARTITIONS":                                "offsets-topic-num-partitions",
		"CHRONIK_OFFSETS_TOPIC_REPLICATION_FACTOR":                            "offsets-topic-replication-factor",
		"CHRONIK_TRANSACTION_ABORT_TIMED_OUT_TRANSACTION_CLEANUP_INTERVAL_MS": "transaction-abort-timed-out-transaction-cleanup-interval",
		"CHRONIK_TRANSACTION_MAX_TIMEOUT_MS":                                  "transaction-max-timeout",
		"CHRONIK_TRANSACTION_STATE_LOG_NUM_PARTITIONS":                        "transaction-state-log-num-partitions",
		"CHRONIK_TRANSACTION_STATE_LOG_REPLICATION_FACTOR":                    "transaction-state-log-replication-factor",
		"CHRONIK_OFFSETS_RETENTION_MINUTES":                                   "offsets-retention-minutes",

		"CHRONIK_SEARCH_MAX_HITS":           "search-max-hits",
		"CHRONIK_SEARCH_MAX_RESPONSE_BYTES": "search-max-response-bytes",
		"CHRONIK_SEARCH_TIMEOUT_MS":         "search-timeout",
		"CHRONIK_SEARCH_MAX_CONCURRENT":     "search-max-concurrent",

		"CHRONIK_REQUEST_READ_TIMEOUT_MS":                 "request-read-timeout",
		"CHRONIK_CONNECTIONS_MAX_IDLE_MS":                 "connections-max-idle",
		"CHRONIK_RESPONSE_WRITE_TIMEOUT_MS":               "response-write-timeout",
		"CHRONIK_CONNECTION_MAX_UNSENT_BYTES":             "connection-max-unsent-bytes",
		"CHRONIK_MAX_CONNECTIONS":                         "max-connections",
		"CHRONIK_MAX_CONNECTIONS_PER_IP":                  "max-connections-per-ip",
		"CHRONIK_REPLICA_FETCH_REQUIRE_INTERNAL_ADDR":     "replica-fetch-require-internal-addr",
		"CHRONIK_REPLICA_FETCH_WAIT_MAX_MS":               "replica-fetch-wait-max",
		"CHRONIK_AUTO_LEADER_REBALANCE_ENABLE":            "auto-leader-rebalance-enable",
		"CHRONIK_LEADER_IMBALANCE_CHECK_INTERVAL_SECONDS": "leader-imbalance-check-interval",
		"CHRONIK_LEADER_IMBALANCE_PER_BROKER_PERCENTAGE":  "leader-imbalance-per-broker-percentage",

		"CHRONIK_BROKER_HEARTBEAT_INTERVAL_MS": "broker-heartbeat-interval",
		"CHRONIK_BROKER_SESSION_TIMEOUT_MS":    "broker-session-timeout",
		"CHRONIK_REPLICA_LAG_TIME_MAX_MS":      "replica-lag-time-max",
		"CHRONIK_INTERNAL_ADDR":                "internal-addr",

		"CHRONIK_CONTROLLER_RECOVER":             "controller-recover",
		"CHRONIK_UNCLEAN_LEADER_ELECTION_ENABLE": "unclean-leader-election-enable",
		"CHRONIK_SCRUB_INTERVAL_MS":              "scrub-interval",
		"CHRONIK_SCRUB_BYTES_PER_SEC":            "scrub-bytes-per-sec",

		"CHRONIK_LISTENERS":                      "listeners",
		"CHRONIK_ADVERTISED_LISTENERS":           "advertised-listeners",
		"CHRONIK_LISTENER_SECURITY_PROTOCOL_MAP": "listener-security-protocol-map",
		"CHRONIK_INTER_BROKER_LISTENER_NAME":     "inter-broker-listener-name",
		"CHRONIK_TLS_CERT_FILE":                  "tls-cert-file",
		"CHRONIK_TLS_KEY_FILE":                   "tls-key-file",
		"CHRONIK_TLS_CA_FILE":                    "tls-ca-file",
		"CHRONIK_TLS_CLIENT_AUTH":                "tls-client-auth",
		"CHRONIK_SASL_ENABLED_MECHANISMS":        "sasl-enabled-mechanisms",
		"CHRONIK_AUTHORIZER":                     "authorizer",
		"CHRONIK_SUPER_USERS":                    "super-users",
		"CHRONIK_ALLOW_EVERYONE_IF_NO_ACL_FOUND": "allow-everyone-if-no-acl-found",
		"CHRONIK_BOOTSTRAP_USERS_FILE":           "bootstrap-users-file",
		"CHRONIK_BOOTSTRAP_USERS":                "bootstrap-users",
		"CHRONIK_CONTROLLER_TLS":                 "controller-tls",
		"CHRONIK_HTTP_TLS":                       "http-tls",
		"CHRONIK_HTTP_AUTH_ALL":                  "http-auth-all",
	}
	got := make(map[string]string)
	keys := make(map[string]bool)
	for _, s := range Settings() {
		if _, dup := got[s.Env]; dup {
			t.Errorf("%s appears twice in the settings table", s.Env)
		}
		got[s.Env] = s.Flag
		if s.Env != "CHRONIK_CONFIG" && s.Key == "" {
			t.Errorf("%s has no config-file key", s.Env)
		}
		if s.Key != "" && keys[s.Key] {
			t.Errorf("file key %s used twice", s.Key)
		}
		keys[s.Key] = true
		if s.Default == "" && s.DefaultDoc == "" && s.Inverts == "" {
			t.Errorf("%s documents no default", s.Env)
		}
		if s.Help == "" {
			t.Errorf("%s has no help", s.Env)
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("settings table (-want +got):\n%s", diff)
	}
}

// Every documented environment variable is read into its typed field.
func TestEveryEnvVarIsHonoured(t *testing.T) {
	dir := t.TempDir()
	cfgFile := writeFile(t, "")
	tests := []struct {
		env, value string
		extra      map[string]string // other variables the value needs to be valid
		get        func(c Config) any
		want       any
	}{
		{"CHRONIK_CONFIG", cfgFile, nil, func(c Config) any { return c.ConfigFile }, cfgFile},
		{"CHRONIK_DATA_DIR", dir, nil, func(c Config) any { return c.DataDir }, dir},
		{"CHRONIK_KAFKA_ADDR", "127.0.0.1:19092", nil, func(c Config) any { return c.KafkaAddr }, "127.0.0.1:19092"},
		{"CHRONIK_ADVERTISED_ADDR", "broker1.example.com:9092", nil, func(c Config) any { return c.AdvertisedAddr }, "broker1.example.com:9092"},
		{"CHRONIK_HTTP_ADDR", "127.0.0.1:16092", nil, func(c Config) any { return c.HTTPAddr }, "127.0.0.1:16092"},
		{"CHRONIK_PPROF", "true", nil, func(c Config) any { return c.Pprof }, true},
		{"CHRONIK_NODE_ID", "7", nil, func(c Config) any { return c.NodeID }, int32(7)},
		{"CHRONIK_RAFT_ADDR", "127.0.0.1:19093", nil, func(c Config) any { return c.RaftAddr }, "127.0.0.1:19093"},
		{"CHRONIK_CLUSTER_PEERS", "1@10.0.0.1:9093, 2@10.0.0.2:9093,3@10.0.0.3:9093", nil,
			func(c Config) any { return c.Peers },
			[]Peer{{1, "10.0.0.1:9093"}, {2, "10.0.0.2:9093"}, {3, "10.0.0.3:9093"}}},
		{"CHRONIK_WAL_PROFILE", "ultra", nil, func(c Config) any { return c.WALProfile }, "ultra"},
		{"CHRONIK_FSYNC", "never", nil, func(c Config) any { return c.Fsync }, FsyncNever},
		{"CHRONIK_FSYNC_BATCH_TIMEOUT_MS", "25", nil, func(c Config) any { return c.FsyncBatchTimeout }, 25 * time.Millisecond},
		{"CHRONIK_TIER3_URL", "s3://bucket/prefix", nil, func(c Config) any { return c.Tier3URL }, "s3://bucket/prefix"},
		{"CHRONIK_REALTIME_INDEX", "true", nil, func(c Config) any { return c.RealtimeIndex }, true},
		{"CHRONIK_INDEX_WORKERS", "0", nil, func(c Config) any { return c.IndexWorkers }, 0},
		{"CHRONIK_INDEX_NICE", "5", nil, func(c Config) any { return c.IndexNice }, 5},
		{"CHRONIK_INDEX_YIELD_CPU", "1.5", nil, func(c Config) any { return c.IndexYieldCPU }, 1.5},
		{"CHRONIK_SEARCH_MAX_HITS", "500", nil, func(c Config) any { return c.SearchMaxHits }, 500},
		{"CHRONIK_SEARCH_MAX_RESPONSE_BYTES", "1048576", nil, func(c Config) any { return c.SearchMaxResponseBytes }, 1 << 20},
		{"CHRONIK_SEARCH_TIMEOUT_MS", "5000", nil, func(c Config) any { return c.SearchTimeout }, 5 * time.Second},
		{"CHRONIK_SEARCH_MAX_CONCURRENT", "16", nil, func(c Config) any { return c.SearchMaxConcurrent }, 16},
		{"CHRONIK_DISABLE_REALTIME_INDEX", "false", nil, func(c Config) any { return c.RealtimeIndex }, true},
		{"CHRONIK_AUTO_CREATE_TOPICS", "false", nil, func(c Config) any { return c.AutoCreateTopics }, false},
		{"CHRONIK_DEFAULT_PARTITIONS", "12", nil, func(c Config) any { return c.DefaultPartitions }, int32(12)},
		{"CHRONIK_DEFAULT_REPLICATION_FACTOR", "2", map[string]string{"CHRONIK_CLUSTER_PEERS": "1@a:1,2@b:1,3@c:1"},
			func(c Config) any { return c.DefaultReplicationFactor }, int16(2)},
		{"CHRONIK_MIN_INSYNC_REPLICAS", "3", map[string]string{"CHRONIK_CLUSTER_PEERS": "1@a:1,2@b:1,3@c:1"},
			func(c Config) any { return c.MinInsyncReplicas }, int16(3)},
		{"CHRONIK_BROKER_HEARTBEAT_INTERVAL_MS", "100", map[string]string{"CHRONIK_CLUSTER_PEERS": "1@a:1,2@b:1,3@c:1"},
			func(c Config) any { return c.BrokerHeartbeatInterval }, 100 * time.Millisecond},
		{"CHRONIK_BROKER_SESSION_TIMEOUT_MS", "9000", nil, func(c Config) any { return c.BrokerSessionTimeout }, 9 * time.Second},
		{"CHRONIK_INTERNAL_ADDR", "chronik-1:9092", nil, func(c Config) any { return c.InternalAddr }, "chronik-1:9092"},
		{"CHRONIK_REPLICA_LAG_TIME_MAX_MS", "30000", nil, func(c Config) any { return c.ReplicaLagTimeMax }, 30 * time.Second},
		{"CHRONIK_REPLICA_FETCH_WAIT_MAX_MS", "250", nil, func(c Config) any { return c.ReplicaFetchWaitMax }, 250 * time.Millisecond},
		{"CHRONIK_AUTO_LEADER_REBALANCE_ENABLE", "false", nil, func(c Config) any { return c.AutoLeaderRebalance }, false},
		{"CHRONIK_LEADER_IMBALANCE_CHECK_INTERVAL_SECONDS", "30", nil, func(c Config) any { return c.LeaderImbalanceCheckInterval }, 30 * time.Second},
		{"CHRONIK_LEADER_IMBALANCE_PER_BROKER_PERCENTAGE", "25", nil, func(c Config) any { return c.LeaderImbalancePerBrokerPercentage }, 25},
		{"CHRONIK_CONTROLLER_RECOVER", "true", nil, func(c Config) any { return c.ControllerRecover }, true},
		{"CHRONIK_UNCLEAN_LEADER_ELECTION_ENABLE", "true", nil, func(c Config) any { return c.UncleanLeaderElection }, true},
		{"CHRONIK_SCRUB_INTERVAL_MS", "3600000", nil, func(c Config) any { return c.ScrubInterval }, time.Hour},
		{"CHRONIK_SCRUB_BYTES_PER_SEC", "1048576", nil, func(c Config) any { return c.ScrubBytesPerSec }, int64(1 << 20)},
		{"CHRONIK_MAX_REQUEST_BYTES", "2097152", nil, func(c Config) any { return c.MaxRequestBytes }, int32(2097152)},
		{"CHRONIK_MESSAGE_MAX_BYTES", "4096", nil, func(c Config) any { return c.MessageMaxBytes }, int32(4096)},
		{"CHRONIK_MESSAGE_TIMESTAMP_BEFORE_MAX_MS", "86400000", nil, func(c Config) any { return c.MessageTimestampBeforeMaxMs }, int64(86400000)},
		{"CHRONIK_MESSAGE_TIMESTAMP_AFTER_MAX_MS", "60000", nil, func(c Config) any { return c.MessageTimestampAfterMaxMs }, int64(60000)},
		{"CHRONIK_PRODUCER_ID_EXPIRATION_MS", "60000", nil, func(c Config) any { return c.ProducerIDExpiration }, time.Minute},
		{"CHRONIK_PRODUCER_IDS_MAX_PER_PARTITION", "500", nil, func(c Config) any { return c.ProducerIDsMaxPerPartition }, int32(500)},
		{"CHRONIK_MAX_PARTITIONS", "100", nil, func(c Config) any { return c.MaxPartitions }, int32(100)},
		{"CHRONIK_OFFSETS_TOPIC_NUM_PARTITIONS", "1", nil, func(c Config) any { return c.OffsetsTopicNumPartitions }, int32(1)},
		{"CHRONIK_OFFSETS_TOPIC_REPLICATION_FACTOR", "2", nil, func(c Config) any { return c.OffsetsTopicReplicationFactor }, int16(2)},
		{"CHRONIK_TRANSACTION_STATE_LOG_NUM_PARTITIONS", "7", nil, func(c Config) any { return c.TransactionStateLogNumPartitions }, int32(7)},
		{"CHRONIK_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "2", nil, func(c Config) any { return c.TransactionStateLogReplicationFactor }, int16(2)},
		{"CHRONIK_TRANSACTION_MAX_TIMEOUT_MS", "60000", nil, func(c Config) any { return c.TransactionMaxTimeout }, time.Minute},
		{"CHRONIK_TRANSACTION_ABORT_TIMED_OUT_TRANSACTION_CLEANUP_INTERVAL_MS", "500", nil, func(c Config) any { return c.TransactionAbortCheckInterval }, 500 * time.Millisecond},
		{"CHRONIK_OFFSETS_RETENTION_MINUTES", "1440", nil, func(c Config) any { return c.OffsetsRetention }, 24 * time.Hour},
		{"CHRONIK_REQUEST_READ_TIMEOUT_MS", "5000", nil, func(c Config) any { return c.RequestReadTimeout }, 5 * time.Second},
		{"CHRONIK_CONNECTIONS_MAX_IDLE_MS", "0", nil, func(c Config) any { return c.ConnectionsMaxIdle }, time.Duration(0)},
		{"CHRONIK_RESPONSE_WRITE_TIMEOUT_MS", "120000", nil, func(c Config) any { return c.ResponseWriteTimeout }, 2 * time.Minute},
		{"CHRONIK_CONNECTION_MAX_UNSENT_BYTES", "1048576", nil, func(c Config) any { return c.ConnectionMaxUnsentBytes }, int64(1 << 20)},
		{"CHRONIK_MAX_CONNECTIONS", "50", nil, func(c Config) any { return c.MaxConnections }, 50},
		{"CHRONIK_MAX_CONNECTIONS_PER_IP", "0", nil, func(c Config) any { return c.MaxConnectionsPerIP }, 0},
		{"CHRONIK_REPLICA_FETCH_REQUIRE_INTERNAL_ADDR", "false", nil, func(c Config) any { return c.ReplicaFetchRequireInternalAddr }, false},
		{"CHRONIK_LOG_LEVEL", "debug", nil, func(c Config) any { return c.LogLevel }, "debug"},
		{"CHRONIK_LOG_FORMAT", "json", nil, func(c Config) any { return c.LogFormat }, "json"},
		{"CHRONIK_LISTENERS", "SASL_SSL://:9094", nil, func(c Config) any { return c.Listeners }, "SASL_SSL://:9094"},
		{"CHRONIK_ADVERTISED_LISTENERS", "SASL_SSL://b1:9094", nil, func(c Config) any { return c.AdvertisedListeners }, "SASL_SSL://b1:9094"},
		{"CHRONIK_LISTENER_SECURITY_PROTOCOL_MAP", "CLIENT:SASL_SSL", nil, func(c Config) any { return c.ListenerProtocolMap }, "CLIENT:SASL_SSL"},
		{"CHRONIK_INTER_BROKER_LISTENER_NAME", "internal", nil, func(c Config) any { return c.InterBrokerListener }, "INTERNAL"},
		{"CHRONIK_TLS_CERT_FILE", "/etc/chronik/b.crt", map[string]string{"CHRONIK_TLS_KEY_FILE": "/etc/chronik/b.key"},
			func(c Config) any { return c.TLSCertFile }, "/etc/chronik/b.crt"},
		{"CHRONIK_TLS_KEY_FILE", "/etc/chronik/b.key", map[string]string{"CHRONIK_TLS_CERT_FILE": "/etc/chronik/b.crt"},
			func(c Config) any { return c.TLSKeyFile }, "/etc/chronik/b.key"},
		{"CHRONIK_TLS_CA_FILE", "/etc/chronik/ca.crt", nil, func(c Config) any { return c.TLSCAFile }, "/etc/chronik/ca.crt"},
		{"CHRONIK_TLS_CLIENT_AUTH", "Required", nil, func(c Config) any { return c.TLSClientAuth }, "required"},
		{"CHRONIK_SASL_ENABLED_MECHANISMS", "SCRAM-SHA-512", nil, func(c Config) any { return c.SASLMechanisms }, "SCRAM-SHA-512"},
		{"CHRONIK_AUTHORIZER", "acl", nil, func(c Config) any { return c.Authorizer }, "acl"},
		{"CHRONIK_SUPER_USERS", "User:admin", nil, func(c Config) any { return c.SuperUsers }, "User:admin"},
		{"CHRONIK_ALLOW_EVERYONE_IF_NO_ACL_FOUND", "true", nil, func(c Config) any { return c.AllowEveryoneIfNoACL }, true},
		{"CHRONIK_BOOTSTRAP_USERS_FILE", "/etc/chronik/users", nil, func(c Config) any { return c.BootstrapUsersFile }, "/etc/chronik/users"},
		{"CHRONIK_BOOTSTRAP_USERS", "SCRAM-SHA-512=[name=a,password=b]", nil, func(c Config) any { return c.BootstrapUsers }, "SCRAM-SHA-512=[name=a,password=b]"},
		{"CHRONIK_CONTROLLER_TLS", "true", map[string]string{"CHRONIK_TLS_CERT_FILE": "/b.crt", "CHRONIK_TLS_KEY_FILE": "/b.key", "CHRONIK_TLS_CA_FILE": "/ca.crt"},
			func(c Config) any { return c.ControllerTLS }, true},
		{"CHRONIK_HTTP_TLS", "true", map[string]string{"CHRONIK_TLS_CERT_FILE": "/b.crt", "CHRONIK_TLS_KEY_FILE": "/b.key"},
			func(c Config) any { return c.HTTPTLS }, true},
		{"CHRONIK_HTTP_AUTH_ALL", "true", nil, func(c Config) any { return c.HTTPAuthAll }, true},
	}
	covered := make(map[string]bool)
	for _, tt := range tests {
		covered[tt.env] = true
		t.Run(tt.env, func(t *testing.T) {
			def := tt.get(DefaultConfig())
			if cmp.Equal(def, tt.want) {
				t.Fatalf("test value %v equals the default: it would prove nothing", tt.want)
			}
			env := map[string]string{tt.env: tt.value}
			for k, v := range tt.extra {
				env[k] = v
			}
			c, err := Load(nil, mapEnv(env))
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if diff := cmp.Diff(tt.want, tt.get(c)); diff != "" {
				t.Errorf("%s=%s (-want +got):\n%s", tt.env, tt.value, diff)
			}
		})
	}
	for _, s := range Settings() {
		if !covered[s.Env] {
			t.Errorf("no test proves %s is read", s.Env)
		}
	}
}

// Every config-file key is read, and the file is found through the flag.
func TestEveryFileKeyIsHonoured(t *testing.T) {
	path := writeFile(t, `
data_dir: /srv/chronik
kafka_addr: 127.0.0.1:19092
advertised_addr: b1:9092
internal_addr: b1.internal:9092
http_addr: 127.0.0.1:16092
pprof: true
node_id: 2
raft_addr: 127.0.0.1:19093
cluster_peers: [1@h1:9093, 2@h2:9093, 3@h3:9093]
broker_heartbeat_interval_ms: 300
broker_session_timeout_ms: 3000
replica_lag_time_max_ms: 20000
scrub_interval_ms: 0
scrub_bytes_per_sec: 2048
wal_profile: HIGH
fsync: never
fsync_batch_timeout_ms: 5
tier3_url: minio://127.0.0.1:9000/chronik/archive
realtime_index: true
index_workers: 3
index_nice: 10
index_yield_cpu: 0
search_max_hits: 2000
search_max_response_bytes: 4096
search_timeout_ms: 0
search_max_concurrent: 1
auto_create_topics: false
default_partitions: 3
default_replication_factor: 3
min_insync_replicas: 3
max_request_bytes: 8388608
message_max_bytes: 2097152
message_timestamp_before_max_ms: 604800000
message_timestamp_after_max_ms: 0
producer_id_expiration_ms: 3600000
producer_ids_max_per_partition: 100
max_partitions: 5000
request_read_timeout_ms: 10000
connections_max_idle_ms: 60000
response_write_timeout_ms: 5000
connection_max_unsent_bytes: 8388608
max_connections: 100
max_connections_per_ip: 10
replica_fetch_require_internal_addr: false
replica_fetch_wait_max_ms: 400
auto_leader_rebalance_enable: false
leader_imbalance_check_interval_seconds: 60
leader_imbalance_per_broker_percentage: 20
log_level: warn
log_format: json
listeners: SSL://:9093,SASL_SSL://:9094
advertised_listeners: SSL://b1:9093,SASL_SSL://b1:9094
listener_security_protocol_map: ""
inter_broker_listener_name: SSL
tls_cert_file: /etc/chronik/b.crt
tls_key_file: /etc/chronik/b.key
tls_ca_file: /etc/chronik/ca.crt
tls_client_auth: requested
sasl_enabled_mechanisms: SCRAM-SHA-256
authorizer: acl
super_users: User:admin;User:CN=b1,O=Chronik
allow_everyone_if_no_acl_found: true
bootstrap_users_file: /etc/chronik/users
bootstrap_users: ""
controller_tls: true
http_tls: true
http_auth_all: true
`)
	c, err := Load(newFlags(t, "--config", path), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		ConfigFile:              path,
		DataDir:                 "/srv/chronik",
		KafkaAddr:               "127.0.0.1:19092",
		AdvertisedAddr:          "b1:9092",
		InternalAddr:            "b1.internal:9092",
		HTTPAddr:                "127.0.0.1:16092",
		Pprof:                   true,
		NodeID:                  2,
		RaftAddr:                "127.0.0.1:19093",
		Peers:                   []Peer{{1, "h1:9093"}, {2, "h2:9093"}, {3, "h3:9093"}},
		BrokerHeartbeatInterval: 300 * time.Millisecond,
		BrokerSessionTimeout:    3 * time.Second,
		ReplicaLagTimeMax:       20 * time.Second,
		ReplicaFetchWaitMax:     400 * time.Millisecond,

		LeaderImbalanceCheckInterval:       time.Minute,
		LeaderImbalancePerBrokerPercentage: 20,
		ScrubInterval:                      0,
		ScrubBytesPerSec:                   2048,
		WALProfile:                         "high",
		Fsync:                              FsyncNever,
		FsyncBatchTimeout:                  5 * time.Millisecond,
		Tier3URL:                           "minio://127.0.0.1:9000/chronik/archive",
		RealtimeIndex:                      true,
		IndexWorkers:                       3,
		IndexNice:                          10,
		AutoCreateTopics:                   false,
		DefaultPartitions:                  3,
		DefaultReplicationFactor:           3,
		MinInsyncReplicas:                  3,
		MaxRequestBytes:                    8 << 20,
		MessageMaxBytes:                    2 << 20,

		MessageTimestampBeforeMaxMs: 604800000,
		MessageTimestampAfterMaxMs:  0,

		ProducerIDExpiration:       time.Hour,
		ProducerIDsMaxPerPartition: 100,
		MaxPartitions:              5000,

		OffsetsTopicNumPartitions:     50,
		OffsetsTopicReplicationFactor: 3,
		OffsetsRetention:              7 * 24 * time.Hour,

		TransactionStateLogNumPartitions:     50,
		TransactionStateLogReplicationFactor: 3,
		TransactionMaxTimeout:                15 * time.Minute,
		TransactionAbortCheckInterval:        10 * time.Second,

		SearchMaxHits:          2000,
		SearchMaxResponseBytes: 4096,
		SearchTimeout:          0,
		SearchMaxConcurrent:    1,

		RequestReadTimeout:       10 * time.Second,
		ConnectionsMaxIdle:       time.Minute,
		ResponseWriteTimeout:     5 * time.Second,
		ConnectionMaxUnsentBytes: 8 << 20,
		MaxConnections:           100,
		MaxConnectionsPerIP:      10,

		LogLevel:  "warn",
		LogFormat: "json",

		Listeners:            "SSL://:9093,SASL_SSL://:9094",
		AdvertisedListeners:  "SSL://b1:9093,SASL_SSL://b1:9094",
		InterBrokerListener:  "SSL",
		TLSCertFile:          "/etc/chronik/b.crt",
		TLSKeyFile:           "/etc/chronik/b.key",
		TLSCAFile:            "/etc/chronik/ca.crt",
		TLSClientAuth:        "requested",
		SASLMechanisms:       "SCRAM-SHA-256",
		Authorizer:           "acl",
		SuperUsers:           "User:admin;User:CN=b1,O=Chronik",
		AllowEveryoneIfNoACL: true,
		BootstrapUsersFile:   "/etc/chronik/users",
		ControllerTLS:        true,
		HTTPTLS:              true,
		HTTPAuthAll:          true,
	}
	if diff := cmp.Diff(want, c, cmp.AllowUnexported(Config{}), cmpIgnoreOrigins); diff != "" {
		t.Errorf("file config (-want +got):\n%s", diff)
	}
	// The inverse key is read too.
	path = writeFile(t, "disable_realtime_index: true\n")
	c, err = Load(nil, mapEnv(map[string]string{"CHRONIK_CONFIG": path}))
	if err != nil {
		t.Fatal(err)
	}
	if c.RealtimeIndex {
		t.Errorf("disable_realtime_index: true left RealtimeIndex on")
	}
}

var cmpIgnoreOrigins = cmp.FilterPath(func(p cmp.Path) bool { return p.String() == "origins" }, cmp.Ignore())

func TestDefaults(t *testing.T) {
	c := DefaultConfig()
	abs, err := filepath.Abs("data/archive")
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		DataDir:                 "./data",
		KafkaAddr:               "0.0.0.0:9092",
		HTTPAddr:                "0.0.0.0:6092",
		NodeID:                  1,
		RaftAddr:                "0.0.0.0:9093",
		BrokerHeartbeatInterval: 200 * time.Millisecond,
		BrokerSessionTimeout:    1500 * time.Millisecond,
		ReplicaLagTimeMax:       10 * time.Second,
		ReplicaFetchWaitMax:     500 * time.Millisecond,

		AutoLeaderRebalance:                true,
		LeaderImbalanceCheckInterval:       300 * time.Second,
		LeaderImbalancePerBrokerPercentage: 10,
		ScrubInterval:                      24 * time.Hour,
		ScrubBytesPerSec:                   64 << 20,
		WALProfile:                         "medium",
		Fsync:                              FsyncAlways,
		Tier3URL:                           "file://" + filepath.ToSlash(abs),
		IndexWorkers:                       1,
		IndexNice:                          19,
		IndexYieldCPU:                      0.5,
		AutoCreateTopics:                   true,
		DefaultPartitions:                  1,
		DefaultReplicationFactor:           1,
		MinInsyncReplicas:                  1,
		MaxRequestBytes:                    104857600,
		MessageMaxBytes:                    1048576,

		MessageTimestampBeforeMaxMs: math.MaxInt64,
		MessageTimestampAfterMaxMs:  3600000,

		ProducerIDExpiration:       24 * time.Hour,
		ProducerIDsMaxPerPartition: 10000,
		MaxPartitions:              20000,

		OffsetsTopicNumPartitions:     50,
		OffsetsTopicReplicationFactor: 3,
		OffsetsRetention:              7 * 24 * time.Hour,

		TransactionStateLogNumPartitions:     50,
		TransactionStateLogReplicationFactor: 3,
		TransactionMaxTimeout:                15 * time.Minute,
		TransactionAbortCheckInterval:        10 * time.Second,

		SearchMaxHits:          10000,
		SearchMaxResponseBytes: 16 << 20,
		SearchTimeout:          30 * time.Second,
		SearchMaxConcurrent:    4,

		RequestReadTimeout:              30 * time.Second,
		ConnectionsMaxIdle:              10 * time.Minute,
		ResponseWriteTimeout:            30 * time.Second,
		ConnectionMaxUnsentBytes:        64 << 20,
		MaxConnections:                  10000,
		MaxConnectionsPerIP:             1000,
		ReplicaFetchRequireInternalAddr: true,

		LogLevel:  "info",
		LogFormat: "text",

		TLSClientAuth:  "none",
		SASLMechanisms: "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
	}
	if diff := cmp.Diff(want, c, cmp.AllowUnexported(Config{}), cmpIgnoreOrigins); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
}

func TestDerivedDefaults(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		rf, isr int16
		tier3   string
	}{
		{"standalone", map[string]string{"CHRONIK_DATA_DIR": "/var/lib/chronik"}, 1, 1, "file:///var/lib/chronik/archive"},
		{"two voters", map[string]string{"CHRONIK_CLUSTER_PEERS": "1@a:9093,2@b:9093", "CHRONIK_DATA_DIR": "/d"}, 2, 1, "file:///d/archive"},
		{"three voters", map[string]string{"CHRONIK_CLUSTER_PEERS": "1@a:9093,2@b:9093,3@c:9093"}, 3, 2, ""},
		{"five voters", map[string]string{"CHRONIK_CLUSTER_PEERS": "1@a:1,2@b:1,3@c:1,4@d:1,5@e:1"}, 3, 2, ""},
		{"explicit rf 2 of 3", map[string]string{"CHRONIK_CLUSTER_PEERS": "1@a:1,2@b:1,3@c:1", "CHRONIK_DEFAULT_REPLICATION_FACTOR": "2"}, 2, 1, ""},
		{"explicit tier3 kept", map[string]string{"CHRONIK_TIER3_URL": "s3://b/p"}, 1, 1, "s3://b/p"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(nil, mapEnv(tt.env))
			if err != nil {
				t.Fatal(err)
			}
			if c.DefaultReplicationFactor != tt.rf || c.MinInsyncReplicas != tt.isr {
				t.Errorf("rf, min isr = %d, %d; want %d, %d", c.DefaultReplicationFactor, c.MinInsyncReplicas, tt.rf, tt.isr)
			}
			if tt.tier3 != "" && c.Tier3URL != tt.tier3 {
				t.Errorf("tier3 url = %q; want %q", c.Tier3URL, tt.tier3)
			}
		})
	}
}

func TestPrecedence(t *testing.T) {
	file := writeFile(t, "wal_profile: low\nnode_id: 3\n")
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		profile string
		origin  string
	}{
		{"default", nil, nil, "medium", "CHRONIK_WAL_PROFILE"},
		{"file over default", []string{"--config", file}, nil, "low", file + ": wal_profile"},
		{"env over file", []string{"--config", file}, map[string]string{"CHRONIK_WAL_PROFILE": "high"}, "high", "CHRONIK_WAL_PROFILE"},
		{"flag over env", []string{"--config", file, "--wal-profile", "ultra"}, map[string]string{"CHRONIK_WAL_PROFILE": "high"}, "ultra", "--wal-profile"},
		{"flag over default", []string{"--wal-profile=ultra"}, nil, "ultra", "--wal-profile"},
		{"config file from env", nil, map[string]string{"CHRONIK_CONFIG": file}, "low", file + ": wal_profile"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(newFlags(t, tt.args...), mapEnv(tt.env))
			if err != nil {
				t.Fatal(err)
			}
			if c.WALProfile != tt.profile {
				t.Errorf("WALProfile = %q; want %q", c.WALProfile, tt.profile)
			}
			if got := c.Origin("CHRONIK_WAL_PROFILE"); got != tt.origin {
				t.Errorf("origin = %q; want %q", got, tt.origin)
			}
		})
	}
	// Settings not overridden still come from the file.
	c, err := Load(newFlags(t, "--config", file, "--wal-profile", "ultra"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.NodeID != 3 {
		t.Errorf("NodeID = %d; want 3 from the file", c.NodeID)
	}
	// --config beats CHRONIK_CONFIG.
	other := writeFile(t, "wal_profile: high\n")
	c, err = Load(newFlags(t, "--config", other), mapEnv(map[string]string{"CHRONIK_CONFIG": file}))
	if err != nil {
		t.Fatal(err)
	}
	if c.WALProfile != "high" || c.ConfigFile != other {
		t.Errorf("got profile %q from %q; want high from --config %q", c.WALProfile, c.ConfigFile, other)
	}
}

func TestRealtimeIndexInverse(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    bool
		wantErr string
	}{
		{"disable true", nil, map[string]string{"CHRONIK_DISABLE_REALTIME_INDEX": "true"}, false, ""},
		{"disable false", nil, map[string]string{"CHRONIK_DISABLE_REALTIME_INDEX": "false"}, true, ""},
		{"agreeing pair", nil, map[string]string{"CHRONIK_REALTIME_INDEX": "false", "CHRONIK_DISABLE_REALTIME_INDEX": "true"}, false, ""},
		{"contradicting pair", nil, map[string]string{"CHRONIK_REALTIME_INDEX": "true", "CHRONIK_DISABLE_REALTIME_INDEX": "true"}, false,
			`CHRONIK_REALTIME_INDEX="true" and CHRONIK_DISABLE_REALTIME_INDEX="true" contradict each other`},
		{"flag beats inverse env", []string{"--realtime-index"}, map[string]string{"CHRONIK_DISABLE_REALTIME_INDEX": "true"}, true, ""},
		{"bare flag means true", []string{"--realtime-index"}, nil, true, ""},
		{"flag false", []string{"--realtime-index=false"}, map[string]string{"CHRONIK_REALTIME_INDEX": "true"}, false, ""},
		{"bad inverse", nil, map[string]string{"CHRONIK_DISABLE_REALTIME_INDEX": "maybe"}, false,
			`CHRONIK_DISABLE_REALTIME_INDEX="maybe" is not a boolean (write true or false)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(newFlags(t, tt.args...), mapEnv(tt.env))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v; want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.RealtimeIndex != tt.want {
				t.Errorf("RealtimeIndex = %v; want %v", c.RealtimeIndex, tt.want)
			}
		})
	}
}

// Bad values fail with a message naming the setting as given and the fix.
func TestBadValues(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want []string
	}{
		{"wal profile", nil, map[string]string{"CHRONIK_WAL_PROFILE": "turbo"},
			[]string{`CHRONIK_WAL_PROFILE="turbo" is not one of low, medium, high, ultra`}},
		{"wal profile flag", []string{"--wal-profile", "turbo"}, nil,
			[]string{`--wal-profile="turbo" is not one of low, medium, high, ultra`}},
		{"fsync", nil, map[string]string{"CHRONIK_FSYNC": "sometimes"}, []string{`CHRONIK_FSYNC="sometimes" is not one of always, never`}},
		{"fsync timeout unit", nil, map[string]string{"CHRONIK_FSYNC_BATCH_TIMEOUT_MS": "10ms"},
			[]string{`CHRONIK_FSYNC_BATCH_TIMEOUT_MS="10ms" is not a whole number of milliseconds (write 10, not 10ms)`}},
		{"fsync timeout range", nil, map[string]string{"CHRONIK_FSYNC_BATCH_TIMEOUT_MS": "600000"},
			[]string{`CHRONIK_FSYNC_BATCH_TIMEOUT_MS=600000 is outside 0 to 60000`}},
		{"node id", nil, map[string]string{"CHRONIK_NODE_ID": "one"}, []string{`CHRONIK_NODE_ID="one" is not a whole number`}},
		{"negative node id", nil, map[string]string{"CHRONIK_NODE_ID": "-1"}, []string{`CHRONIK_NODE_ID=-1 is negative`}},
		{"kafka addr", nil, map[string]string{"CHRONIK_KAFKA_ADDR": "9092"}, []string{`CHRONIK_KAFKA_ADDR="9092" is not host:port`, "0.0.0.0:9092"}},
		{"kafka port", []string{"--kafka-addr", ":http"}, nil, []string{`--kafka-addr=":http" is not host:port`}},
		{"advertised unspecified", nil, map[string]string{"CHRONIK_ADVERTISED_ADDR": "0.0.0.0:9092"},
			[]string{`CHRONIK_ADVERTISED_ADDR="0.0.0.0:9092" is not an address clients can connect to`}},
		{"peers syntax", nil, map[string]string{"CHRONIK_CLUSTER_PEERS": "node1:9093"},
			[]string{`CHRONIK_CLUSTER_PEERS="node1:9093" has entry "node1:9093" that is not id@host:port`}},
		{"peers without self", nil, map[string]string{"CHRONIK_CLUSTER_PEERS": "2@a:9093,3@b:9093"},
			[]string{`CHRONIK_NODE_ID=1 is not among the ids of CHRONIK_CLUSTER_PEERS`}},
		{"peers duplicate id", nil, map[string]string{"CHRONIK_CLUSTER_PEERS": "1@a:9093,1@b:9093"},
			[]string{`lists id 1 twice`}},
		{"tier3 scheme", nil, map[string]string{"CHRONIK_TIER3_URL": "ftp://x/y"},
			[]string{`CHRONIK_TIER3_URL="ftp://x/y" has no supported scheme: use file://, s3:// or minio://`}},
		{"tier3 minio", nil, map[string]string{"CHRONIK_TIER3_URL": "minio://host/bucket"},
			[]string{`CHRONIK_TIER3_URL="minio://host/bucket" does not start with the MinIO host:port`}},
		{"index yield cpu", nil, map[string]string{"CHRONIK_INDEX_YIELD_CPU": "half"},
			[]string{`CHRONIK_INDEX_YIELD_CPU="half" is not a number of cores from 0 to 1024 (e.g. 0.5)`}},
		{"index nice", nil, map[string]string{"CHRONIK_INDEX_NICE": "-5"}, []string{`CHRONIK_INDEX_NICE="-5" is not a nice value from 0 to 19`}},
		{"index workers", nil, map[string]string{"CHRONIK_INDEX_WORKERS": "abc"}, []string{`CHRONIK_INDEX_WORKERS="abc" is not a number of workers from 0 to 64`}},
		{"bool", nil, map[string]string{"CHRONIK_AUTO_CREATE_TOPICS": "sure"},
			[]string{`CHRONIK_AUTO_CREATE_TOPICS="sure" is not a boolean (write true or false)`}},
		{"partitions", nil, map[string]string{"CHRONIK_DEFAULT_PARTITIONS": "0"}, []string{`CHRONIK_DEFAULT_PARTITIONS=0 must be at least 1`}},
		{"rf standalone", nil, map[string]string{"CHRONIK_DEFAULT_REPLICATION_FACTOR": "3"},
			[]string{`CHRONIK_DEFAULT_REPLICATION_FACTOR=3 needs 3 brokers but this node is standalone`}},
		{"rf overflow", nil, map[string]string{"CHRONIK_DEFAULT_REPLICATION_FACTOR": "70000"},
			[]string{`CHRONIK_DEFAULT_REPLICATION_FACTOR="70000" is not a whole number between -32768 and 32767`}},
		{"isr over rf", []string{"--min-insync-replicas", "2"}, nil,
			[]string{`--min-insync-replicas=2 exceeds CHRONIK_DEFAULT_REPLICATION_FACTOR=1`, "lower it or raise the replication factor"}},
		{"request below message", nil, map[string]string{"CHRONIK_MAX_REQUEST_BYTES": "2048", "CHRONIK_MESSAGE_MAX_BYTES": "4096"},
			[]string{`CHRONIK_MAX_REQUEST_BYTES=2048 is below CHRONIK_MESSAGE_MAX_BYTES=4096`}},
		{"message too small", nil, map[string]string{"CHRONIK_MESSAGE_MAX_BYTES": "100"}, []string{`CHRONIK_MESSAGE_MAX_BYTES=100 must be at least 1024`}},
		{"scrub rate", nil, map[string]string{"CHRONIK_SCRUB_BYTES_PER_SEC": "100"},
			[]string{`CHRONIK_SCRUB_BYTES_PER_SEC="100" is not a whole number between 1024 and 9223372036854775807`}},
		{"scrub interval unit", []string{"--scrub-interval", "24h"}, nil,
			[]string{`--scrub-interval="24h" is not a whole number of milliseconds`}},
		{"log level", nil, map[string]string{"CHRONIK_LOG_LEVEL": "trace"}, []string{`CHRONIK_LOG_LEVEL="trace" is not one of debug, info, warn, error`}},
		{"log format", nil, map[string]string{"CHRONIK_LOG_FORMAT": "xml"}, []string{`CHRONIK_LOG_FORMAT="xml" is not one of text, json`}},
		{"missing config file", nil, map[string]string{"CHRONIK_CONFIG": "/nonexistent/chronik.yaml"},
			[]string{`CHRONIK_CONFIG="/nonexistent/chronik.yaml": cannot read the config file`}},
		{"every problem at once", nil, map[string]string{"CHRONIK_WAL_PROFILE": "turbo", "CHRONIK_LOG_FORMAT": "xml"},
			[]string{`CHRONIK_WAL_PROFILE="turbo"`, `CHRONIK_LOG_FORMAT="xml"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(newFlags(t, tt.args...), mapEnv(tt.env))
			if err == nil {
				t.Fatal("Load succeeded; want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestConfigFileErrors(t *testing.T) {
	tests := []struct {
		name, body, want string
	}{
		{"flag-style key", "data-dir: /x\n", `line 1: unknown key "data-dir": did you mean data_dir?`},
		{"env-style key", "CHRONIK_WAL_PROFILE: low\n", `unknown key "CHRONIK_WAL_PROFILE": did you mean wal_profile?`},
		{"flag name for peers", "peers: 1@a:1\n", `unknown key "peers": did you mean cluster_peers?`},
		{"unknown key", "retention: 1d\n", `unknown key "retention" (the keys are listed by chronik start --help)`},
		{"duplicate", "node_id: 1\nnode_id: 2\n", `line 2: key "node_id" appears twice`},
		{"not a mapping", "- a\n- b\n", "the top level must map setting keys to values"},
		{"nested", "fsync:\n  mode: never\n", "fsync must be a plain value, not a mapping"},
		{"bad value", "wal_profile: turbo\n", `: wal_profile="turbo" is not one of low, medium, high, ultra`},
		{"bad yaml", "a: [\n", "config file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, tt.body)
			_, err := Load(newFlags(t, "--config", path), nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v; want it to contain %q", err, tt.want)
			}
		})
	}
	// An empty file and an empty value are fine.
	c, err := Load(newFlags(t, "--config", writeFile(t, "advertised_addr:\n")), nil)
	if err != nil || c.AdvertisedAddr != "" {
		t.Fatalf("empty value: %+v, %v", c.AdvertisedAddr, err)
	}
}

// The generated flag help names every setting's environment variable and
// default, including the flagless inverse alias.
func TestFlagUsageListsEverySetting(t *testing.T) {
	fs := pflag.NewFlagSet("start", pflag.ContinueOnError)
	RegisterFlags(fs)
	usage := fs.FlagUsages()
	for _, s := range Settings() {
		if !strings.Contains(usage, s.Env) {
			t.Errorf("usage lacks %s", s.Env)
		}
		if s.Flag != "" && !strings.Contains(usage, "--"+s.Flag) {
			t.Errorf("usage lacks --%s", s.Flag)
		}
		if s.Inverts == "" && !strings.Contains(usage, "default "+s.defaultText()) {
			t.Errorf("usage lacks the default of %s (%q)", s.Env, s.defaultText())
		}
	}
	if strings.Contains(usage, "(default ") {
		t.Errorf("pflag's own default text leaked into the usage:\n%s", usage)
	}
}

func TestWALProfilesAreTheContract(t *testing.T) {
	if !slices.Equal(walProfiles, []string{"low", "medium", "high", "ultra"}) {
		t.Fatalf("walProfiles = %v", walProfiles)
	}
}
