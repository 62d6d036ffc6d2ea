// Package ops holds what operating a Chronik node needs besides the data
// path: configuration (flags, CHRONIK_* environment, config file),
// logging, and the HTTP listener with metrics, health and pprof.
package ops

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// FsyncMode says when a produce is acknowledged.
type FsyncMode string

const (
	FsyncAlways FsyncMode = "always" // ack after fsync (the default)
	FsyncNever  FsyncMode = "never"  // ack after write(2); the OS flushes. Explicitly weaker.
)

// maxFsyncBatchTimeout bounds CHRONIK_FSYNC_BATCH_TIMEOUT_MS: a produce
// lingering longer than this is a misconfiguration (most likely a value
// written in microseconds or seconds), not a tuning choice.
const maxFsyncBatchTimeout = time.Minute

// Config is a node's resolved configuration. Load returns it with every
// derived default filled in except AdvertisedAddr, which only the bound
// listener can supply.
type Config struct {
	ConfigFile string // the YAML file read, if any

	DataDir        string
	KafkaAddr      string
	AdvertisedAddr string // empty: the bound listener address
	InternalAddr   string // empty: AdvertisedAddr; what other brokers dial
	HTTPAddr       string
	Pprof          bool // serve /debug/pprof/ on HTTPAddr
	NodeID         int32
	RaftAddr       string
	Peers          []Peer // empty: standalone

	// BrokerHeartbeatInterval and BrokerSessionTimeout: a broker silent
	// for a session is fenced (cluster mode).
	BrokerHeartbeatInterval time.Duration
	BrokerSessionTimeout    time.Duration
	// ReplicaLagTimeMax: a follower behind for this long leaves the ISR.
	ReplicaLagTimeMax time.Duration
	// ReplicaFetchWaitMax: how long a follower's fetch waits at its leader
	// for new data.
	ReplicaFetchWaitMax time.Duration
	// ControllerRecover forms a new controller quorum over data directories
	// whose cluster's Raft state is lost everywhere.
	ControllerRecover bool
	// UncleanLeaderElection is the default of unclean.leader.election.enable.
	UncleanLeaderElection bool
	// AutoLeaderRebalance, LeaderImbalanceCheckInterval and
	// LeaderImbalancePerBrokerPercentage: preferred leader election by the
	// controller (Kafka's auto.leader.rebalance.enable and the two below).
	AutoLeaderRebalance                bool
	LeaderImbalanceCheckInterval       time.Duration
	LeaderImbalancePerBrokerPercentage int

	// ScrubInterval: how often sealed segments are verified in full (0:
	// never); ScrubBytesPerSec paces it.
	ScrubInterval    time.Duration
	ScrubBytesPerSec int64

	WALProfile        string // one of low, medium, high, ultra
	Fsync             FsyncMode
	FsyncBatchTimeout time.Duration // 0: the profile's max wait

	Tier3URL      string
	RealtimeIndex bool
	IndexWorkers  int     // batch indexer workers; 0: off
	IndexNice     int     // nice value of the index build processes (0-19)
	IndexYieldCPU float64 // cores of broker CPU above which index builds pause; 0: never

	// The search API's bounds on one request (indexer.Limits).
	SearchMaxHits          int           // offset + limit of a page
	SearchMaxResponseBytes int           // hits' bytes of an answer
	SearchTimeout          time.Duration // 0: none
	SearchMaxConcurrent    int           // searches at once; more: 429

	AutoCreateTopics         bool
	DefaultPartitions        int32
	DefaultReplicationFactor int16
	MinInsyncReplicas        int16

	MaxRequestBytes int32
	MessageMaxBytes int32

	// KIP-937 defaults of the topic configs: how far a CreateTime
	// timestamp may lie behind and ahead of the broker's clock, in ms.
	MessageTimestampBeforeMaxMs int64
	MessageTimestampAfterMaxMs  int64

	// Bounds on state clients can make the broker keep.
	ProducerIDExpiration       time.Duration
	ProducerIDsMaxPerPartition int32
	MaxPartitions              int32

	// Consumer groups: __consumer_offsets' shape when it is created, and
	// how long an empty group's committed offsets are kept.
	OffsetsTopicNumPartitions     int32
	OffsetsTopicReplicationFactor int16
	OffsetsRetention              time.Duration

	// Transactions: __transaction_state's shape when it is created, the
	// longest transaction timeout, and how often timeouts are checked.
	TransactionStateLogNumPartitions     int32
	TransactionStateLogReplicationFactor int16
	TransactionMaxTimeout                time.Duration
	TransactionAbortCheckInterval        time.Duration

	// Connection hygiene: how long a started request may take to arrive,
	// how long an idle connection and an unread response are kept (0:
	// for ever), the Fetch response bytes built ahead of the socket per
	// connection, and the connection caps (0: none).
	RequestReadTimeout       time.Duration
	ConnectionsMaxIdle       time.Duration
	ResponseWriteTimeout     time.Duration
	ConnectionMaxUnsentBytes int64
	MaxConnections           int
	MaxConnectionsPerIP      int
	// ReplicaFetchRequireInternalAddr: a follower's fetch must come from an
	// IP of the claimed broker's registered internal host.
	ReplicaFetchRequireInternalAddr bool

	LogLevel  string // debug, info, warn, error
	LogFormat string // text, json

	// Security (docs/security.md): kept as written here, parsed by the
	// packages that use them.
	Listeners, AdvertisedListeners, ListenerProtocolMap string
	InterBrokerListener                                 string
	TLSCertFile, TLSKeyFile, TLSCAFile, TLSClientAuth   string
	SASLMechanisms                                      string
	Authorizer                                          string // "" or "acl"
	SuperUsers                                          string // semicolon-separated principals
	AllowEveryoneIfNoACL                                bool
	BootstrapUsersFile, BootstrapUsers                  string
	ControllerTLS, HTTPTLS, HTTPAuthAll                 bool

	// origins maps a setting's Env to where its value came from ("--fsync",
	// "CHRONIK_FSYNC", "chronik.yaml: fsync"), so messages name the setting
	// the way the operator wrote it. Missing entries fall back to the Env.
	origins map[string]string
}

// Brokers is the number of brokers the node expects: 1 standalone, else
// one per controller voter.
func (c *Config) Brokers() int { return max(1, len(c.Peers)) }

// Standalone reports whether no cluster peers are configured.
func (c *Config) Standalone() bool { return len(c.Peers) == 0 }

// DefaultConfig returns the embedded defaults, derived values included.
func DefaultConfig() Config {
	c, err := Load(nil, nil)
	if err != nil {
		// The defaults are constants of the settings table; a failure is a
		// bug in this package, found by its tests.
		panic(err)
	}
	return c
}

// RegisterFlags adds a flag for every setting that has one. Flag values are
// kept as text and parsed by Load, so an error names the flag the same way
// as it would name an environment variable.
func RegisterFlags(fs *pflag.FlagSet) {
	for i := range settings {
		s := &settings[i]
		if s.Flag == "" {
			continue
		}
		f := fs.VarPF(&flagValue{typ: s.Type}, s.Flag, "", s.usage())
		if s.isBool() {
			f.NoOptDefVal = "true"
		}
	}
}

type flagValue struct {
	val string
	typ string
}

func (v *flagValue) String() string     { return v.val }
func (v *flagValue) Set(s string) error { v.val = s; return nil }
func (v *flagValue) Type() string       { return v.typ }

// Env is the environment lookup Load uses; os.Getenv fits. An empty value
// counts as unset.
type Env func(name string) string

// Load resolves every setting with precedence flag > environment > config
// file > default, derives the dependent defaults and validates the result.
// flags may be nil (no flags) and so may env (empty environment); flags not
// registered in the set are ignored.
func Load(flags *pflag.FlagSet, env Env) (Config, error) {
	if env == nil {
		env = func(string) string { return "" }
	}
	c := Config{origins: make(map[string]string)}
	l := loader{flags: flags, env: env}

	// The config file is found first: it is a source for everything else.
	cfgSetting := settingByEnv("CHRONIK_CONFIG")
	if v, ok := l.pick(cfgSetting, levelFlag, levelEnv); ok {
		c.origins[cfgSetting.Env] = v.origin
		c.ConfigFile = v.raw
		file, err := readConfigFile(c.ConfigFile, v.origin)
		if err != nil {
			return Config{}, err
		}
		l.file = file
	}

	var errs []error
	var derive []*Setting
	for i := range settings {
		s := &settings[i]
		if s == cfgSetting || s.Inverts != "" {
			continue // resolved above, or together with the setting it inverts
		}
		found, err := l.resolve(&c, s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		switch {
		case found:
		case s.Default != "":
			if err := s.set(&c, s.Default); err != nil {
				errs = append(errs, fmt.Errorf("ops: default of %s: %w", s.Env, err))
			}
		case s.derive != nil:
			derive = append(derive, s)
		}
	}
	if len(errs) > 0 {
		return Config{}, errors.Join(errs...)
	}
	for _, s := range derive {
		if err := s.derive(&c); err != nil {
			return Config{}, err
		}
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

type level int

const (
	levelFlag level = iota
	levelEnv
	levelFile
)

type given struct {
	s      *Setting
	raw    string
	origin string
}

type loader struct {
	flags *pflag.FlagSet
	env   Env
	file  map[string]fileValue
}

// at returns the value s has at one precedence level, if any.
func (l *loader) at(s *Setting, lv level) (given, bool) {
	switch lv {
	case levelFlag:
		if l.flags == nil || s.Flag == "" {
			return given{}, false
		}
		if f := l.flags.Lookup(s.Flag); f != nil && f.Changed {
			return given{s, f.Value.String(), "--" + s.Flag}, true
		}
	case levelEnv:
		if v := l.env(s.Env); v != "" {
			return given{s, v, s.Env}, true
		}
	case levelFile:
		if s.Key == "" {
			return given{}, false
		}
		if v, ok := l.file[s.Key]; ok {
			return given{s, v.value, v.origin}, true
		}
	}
	return given{}, false
}

// pick returns the value of s from the highest level that has one.
func (l *loader) pick(s *Setting, levels ...level) (given, bool) {
	for _, lv := range levels {
		if v, ok := l.at(s, lv); ok {
			return v, true
		}
	}
	return given{}, false
}

// resolve applies the highest-precedence value of s, or of a setting that
// inverts it, and reports whether there was one. A setting and its inverse
// given at the same level must agree.
func (l *loader) resolve(c *Config, s *Setting) (bool, error) {
	group := []*Setting{s}
	for i := range settings {
		if settings[i].Inverts == s.Env {
			group = append(group, &settings[i])
		}
	}
	for _, lv := range []level{levelFlag, levelEnv, levelFile} {
		var vals []given
		for _, m := range group {
			if v, ok := l.at(m, lv); ok {
				vals = append(vals, v)
			}
		}
		if len(vals) == 0 {
			continue
		}
		var first Config
		for i, v := range vals {
			probe := *c
			if err := v.s.set(&probe, v.raw); err != nil {
				return false, fmt.Errorf("%s=%q %w", v.origin, v.raw, err)
			}
			if i == 0 {
				first = probe
			} else if !reflect.DeepEqual(probe, first) {
				return false, fmt.Errorf("%s=%q and %s=%q contradict each other: set only one of them",
					vals[0].origin, vals[0].raw, v.origin, v.raw)
			}
		}
		first.origins[s.Env] = vals[0].origin
		*c = first
		return true, nil
	}
	return false, nil
}

func settingByEnv(env string) *Setting {
	for i := range settings {
		if settings[i].Env == env {
			return &settings[i]
		}
	}
	panic("ops: no setting " + env)
}

func deriveTier3URL(c *Config) error {
	abs, err := filepath.Abs(filepath.Join(c.DataDir, "archive"))
	if err != nil {
		return fmt.Errorf("ops: default %s from %s=%q: %w", "CHRONIK_TIER3_URL", c.Origin("CHRONIK_DATA_DIR"), c.DataDir, err)
	}
	c.Tier3URL = (&url.URL{Scheme: "file", Path: filepath.ToSlash(abs)}).String()
	return nil
}

// Origin names a setting, given by its environment variable, the way the
// operator gave it: "--fsync", "CHRONIK_FSYNC" or "chronik.yaml: fsync".
func (c *Config) Origin(env string) string {
	if o := c.origins[env]; o != "" {
		return o
	}
	return env
}

// Validate checks every value and the constraints between them. Each
// message names the setting as it was given and says what would fix it.
func (c *Config) Validate() error {
	var errs []error
	bad := func(env string, v any, format string, args ...any) {
		if s, ok := v.(string); ok {
			v = fmt.Sprintf("%q", s)
		}
		errs = append(errs, fmt.Errorf("%s=%v %s", c.Origin(env), v, fmt.Sprintf(format, args...)))
	}

	if c.DataDir == "" {
		bad("CHRONIK_DATA_DIR", c.DataDir, "is empty: set the directory for local state, e.g. ./data")
	}
	checkAddr := func(env, addr, example string) {
		if _, _, err := splitHostPort(addr); err != nil {
			bad(env, addr, "is not host:port (%v): write e.g. %s", err, example)
		}
	}
	checkAddr("CHRONIK_KAFKA_ADDR", c.KafkaAddr, "0.0.0.0:9092")
	checkAddr("CHRONIK_HTTP_ADDR", c.HTTPAddr, "0.0.0.0:6092")
	checkAddr("CHRONIK_RAFT_ADDR", c.RaftAddr, "0.0.0.0:9093")
	// Addresses others dial: a host they can reach and a real port.
	checkDialAddr := func(env, addr, who, example string) {
		if addr == "" {
			return
		}
		host, port, err := splitHostPort(addr)
		switch {
		case err != nil:
			bad(env, addr, "is not host:port (%v): write the address %s connect to, e.g. %s", err, who, example)
		case host == "" || net.ParseIP(host) != nil && net.ParseIP(host).IsUnspecified():
			bad(env, addr, "is not an address %s can connect to: give a host name or IP they can reach", who)
		case port == 0:
			bad(env, addr, "has port 0: give the port %s connect to", who)
		}
	}
	checkDialAddr("CHRONIK_ADVERTISED_ADDR", c.AdvertisedAddr, "clients", "broker1.example.com:9092")
	checkDialAddr("CHRONIK_INTERNAL_ADDR", c.InternalAddr, "other brokers", "chronik-1:9092")
	if c.NodeID < 0 {
		bad("CHRONIK_NODE_ID", c.NodeID, "is negative: broker ids start at 0")
	}
	c.validatePeers(bad)

	if !slices.Contains(walProfiles, c.WALProfile) {
		bad("CHRONIK_WAL_PROFILE", c.WALProfile, "is not one of %s", strings.Join(walProfiles, ", "))
	}
	if c.Fsync != FsyncAlways && c.Fsync != FsyncNever {
		bad("CHRONIK_FSYNC", string(c.Fsync), "is not one of always, never")
	}
	if c.FsyncBatchTimeout < 0 || c.FsyncBatchTimeout > maxFsyncBatchTimeout {
		bad("CHRONIK_FSYNC_BATCH_TIMEOUT_MS", c.FsyncBatchTimeout.Milliseconds(),
			"is outside 0 to %d: the value is in milliseconds, 0 keeps the profile's max wait", maxFsyncBatchTimeout.Milliseconds())
	}
	if err := checkTier3URL(c.Tier3URL); err != nil {
		bad("CHRONIK_TIER3_URL", c.Tier3URL, "%v", err)
	}

	if c.DefaultPartitions < 1 {
		bad("CHRONIK_DEFAULT_PARTITIONS", c.DefaultPartitions, "must be at least 1")
	}
	switch rf := c.DefaultReplicationFactor; {
	case rf < 1:
		bad("CHRONIK_DEFAULT_REPLICATION_FACTOR", rf, "must be at least 1")
	case c.Standalone() && rf > 1:
		bad("CHRONIK_DEFAULT_REPLICATION_FACTOR", rf, "needs %d brokers but this node is standalone (%s is empty): use 1", rf, c.Origin("CHRONIK_CLUSTER_PEERS"))
	}
	switch isr := c.MinInsyncReplicas; {
	case isr < 1:
		bad("CHRONIK_MIN_INSYNC_REPLICAS", isr, "must be at least 1")
	case isr > c.DefaultReplicationFactor && c.DefaultReplicationFactor >= 1:
		bad("CHRONIK_MIN_INSYNC_REPLICAS", isr, "exceeds %s=%d, so acks=all would always fail with NOT_ENOUGH_REPLICAS: lower it or raise the replication factor",
			c.Origin("CHRONIK_DEFAULT_REPLICATION_FACTOR"), c.DefaultReplicationFactor)
	}

	if c.MessageMaxBytes < 1024 {
		bad("CHRONIK_MESSAGE_MAX_BYTES", c.MessageMaxBytes, "must be at least 1024")
	}
	if c.MaxRequestBytes < c.MessageMaxBytes {
		bad("CHRONIK_MAX_REQUEST_BYTES", c.MaxRequestBytes, "is below %s=%d, so a batch of the largest allowed size could never arrive: raise it",
			c.Origin("CHRONIK_MESSAGE_MAX_BYTES"), c.MessageMaxBytes)
	}
	if c.ProducerIDExpiration <= 0 {
		bad("CHRONIK_PRODUCER_ID_EXPIRATION_MS", c.ProducerIDExpiration.Milliseconds(), "must be positive")
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.LogLevel) {
		bad("CHRONIK_LOG_LEVEL", c.LogLevel, "is not one of debug, info, warn, error")
	}
	if c.Authorizer != "" && c.Authorizer != "acl" {
		bad("CHRONIK_AUTHORIZER", c.Authorizer, "is not acl: set acl to check ACLs, or leave it empty")
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		bad("CHRONIK_TLS_CERT_FILE", c.TLSCertFile, "and %s must be set together", c.Origin("CHRONIK_TLS_KEY_FILE"))
	}
	if (c.ControllerTLS || c.HTTPTLS) && c.TLSCertFile == "" {
		bad("CHRONIK_TLS_CERT_FILE", c.TLSCertFile, "is empty, but CHRONIK_CONTROLLER_TLS or CHRONIK_HTTP_TLS needs a certificate")
	}
	if c.ControllerTLS && c.TLSCAFile == "" {
		bad("CHRONIK_TLS_CA_FILE", c.TLSCAFile, "is empty, but CHRONIK_CONTROLLER_TLS verifies the other nodes' certificates against it")
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		bad("CHRONIK_LOG_FORMAT", c.LogFormat, "is not one of text, json")
	}
	return errors.Join(errs...)
}

func (c *Config) validatePeers(bad func(env string, v any, format string, args ...any)) {
	if len(c.Peers) == 0 {
		return
	}
	const env = "CHRONIK_CLUSTER_PEERS"
	list := c.peerList()
	ids := make(map[int32]bool)
	addrs := make(map[string]bool)
	for _, p := range c.Peers {
		if _, port, err := splitHostPort(p.Addr); err != nil || port == 0 {
			bad(env, list, "has %s whose address is not host:port with a port: write e.g. %d@10.0.0.%d:9093", p, p.ID, p.ID)
		}
		if ids[p.ID] {
			bad(env, list, "lists id %d twice: every voter needs its own id", p.ID)
		}
		if addrs[p.Addr] {
			bad(env, list, "lists address %s twice: every voter needs its own address", p.Addr)
		}
		ids[p.ID], addrs[p.Addr] = true, true
	}
	if c.BrokerSessionTimeout < 3*c.BrokerHeartbeatInterval || c.BrokerHeartbeatInterval <= 0 {
		bad("CHRONIK_BROKER_SESSION_TIMEOUT_MS", c.BrokerSessionTimeout.Milliseconds(), "must be at least 3 times %s=%d (and that positive): a session must survive a lost heartbeat",
			c.Origin("CHRONIK_BROKER_HEARTBEAT_INTERVAL_MS"), c.BrokerHeartbeatInterval.Milliseconds())
	}
	if c.ReplicaFetchWaitMax <= 0 || c.ReplicaFetchWaitMax >= c.ReplicaLagTimeMax {
		bad("CHRONIK_REPLICA_FETCH_WAIT_MAX_MS", c.ReplicaFetchWaitMax.Milliseconds(), "must be positive and below %s=%d: a follower waiting at its leader is caught up, and must not leave the ISR for it",
			c.Origin("CHRONIK_REPLICA_LAG_TIME_MAX_MS"), c.ReplicaLagTimeMax.Milliseconds())
	}
	if !ids[c.NodeID] {
		bad("CHRONIK_NODE_ID", c.NodeID, "is not among the ids of %s=%q: add this node to the voters or fix its id", c.Origin(env), list)
	}
}

func (c *Config) peerList() string {
	s := make([]string, len(c.Peers))
	for i, p := range c.Peers {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

// splitHostPort accepts host:port with an empty host (all interfaces) and a
// numeric port.
func splitHostPort(addr string) (string, int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, errors.New("missing port or malformed host")
	}
	var n int
	if _, err := fmt.Sscanf(port, "%d", &n); err != nil || fmt.Sprint(n) != port || n < 0 || n > 65535 {
		return "", 0, fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	return host, n, nil
}

func checkTier3URL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("is not a URL (%v)", err)
	}
	switch u.Scheme {
	case "file":
		if u.Host != "" || u.Path == "" {
			return errors.New("is not a file URL with an absolute path: write file:///var/lib/chronik/archive")
		}
	case "s3":
		if u.Host == "" {
			return errors.New("names no bucket: write s3://bucket/prefix")
		}
	case "minio":
		if _, port, err := splitHostPort(u.Host); err != nil || port == 0 {
			return errors.New("does not start with the MinIO host:port: write minio://host:port/bucket/prefix")
		}
		if strings.Trim(u.Path, "/") == "" {
			return errors.New("names no bucket: write minio://host:port/bucket/prefix")
		}
	default:
		return errors.New("has no supported scheme: use file://, s3:// or minio://")
	}
	return nil
}
