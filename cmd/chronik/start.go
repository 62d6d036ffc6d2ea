package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/chronik-go/chronik/broker"
	"github.com/chronik-go/chronik/indexer"
	"github.com/chronik-go/chronik/ops"
	"github.com/chronik-go/chronik/replication"
	"github.com/chronik-go/chronik/tier1"
	"github.com/chronik-go/chronik/tier3"
)

func newStartCmd(env ops.Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "start",
		Short: "Run a broker",
		Long: `Run a Chronik broker until SIGINT or SIGTERM.

Every setting below has a flag, a CHRONIK_* environment variable and a key in
the YAML file named by --config. Precedence is flag > environment > config
file > default.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runStart(cmd.Context(), cmd.Flags(), env, cmd.ErrOrStderr())
		},
	}
	cmd.Flags().SortFlags = false // table order groups related settings
	ops.RegisterFlags(cmd.Flags())
	return cmd
}

func runStart(ctx context.Context, flags *pflag.FlagSet, env ops.Env, logOut io.Writer) error {
	cfg, err := ops.Load(flags, env)
	if err != nil {
		return err
	}
	log, err := ops.NewLogger(cfg.LogLevel, cfg.LogFormat, logOut)
	if err != nil {
		return err
	}
	if cfg.Fsync == ops.FsyncNever {
		log.Warn("acknowledging produces before fsync: acknowledged records can be lost on power failure or kernel crash",
			"setting", cfg.Origin("CHRONIK_FSYNC"))
	}
	bcfg, err := brokerConfig(cfg, log)
	if err != nil {
		return err
	}
	if bcfg.Tier3, err = tier3.Open(ctx, cfg.Tier3URL); err != nil {
		return fmt.Errorf("%s=%q: %w", cfg.Origin("CHRONIK_TIER3_URL"), cfg.Tier3URL, err)
	}

	// The HTTP listener comes up first so /healthz answers (and /readyz
	// says 503) while the WAL is recovered, which can take a while.
	reg := ops.NewRegistry()
	bcfg.Metrics = reg
	htls, err := httpTLS(cfg, log)
	if err != nil {
		return err
	}
	hs := ops.NewHTTPServer(ops.HTTPConfig{Addr: cfg.HTTPAddr, Pprof: cfg.Pprof, Gatherer: reg, Logger: log,
		TLS: htls, AuthAll: cfg.HTTPAuthAll && cfg.Authorizer != ""})
	if err := hs.Start(); err != nil {
		return fmt.Errorf("http listener on %s=%q: %w", cfg.Origin("CHRONIK_HTTP_ADDR"), cfg.HTTPAddr, err)
	}
	defer hs.Close()
	log.Info("http listener ready", "addr", hs.Addr().String(), "pprof", cfg.Pprof)

	var ix atomic.Pointer[indexer.Indexer]
	bcfg.SegmentArchived = func(topic string, partition int32) {
		if x := ix.Load(); x != nil {
			x.Notify(topic, partition)
		}
	}
	b, err := broker.New(bcfg)
	if err != nil {
		return fmt.Errorf("open broker in %s=%q: %w", cfg.Origin("CHRONIK_DATA_DIR"), cfg.DataDir, err)
	}
	hs.SetAuthenticator(b.Authenticate)
	stopSearch, err := startSearch(cfg, b, bcfg, hs, reg, log, &ix)
	if err != nil {
		_ = b.Close()
		return err
	}
	defer stopSearch()
	if err := b.Start(); err != nil {
		_ = b.Close()
		return fmt.Errorf("kafka listener on %s=%q: %w", cfg.Origin("CHRONIK_KAFKA_ADDR"), cfg.KafkaAddr, err)
	}
	hs.SetReadiness(b.Ready)
	log.Info("kafka listener ready", "addr", b.Addr().String(), "node_id", cfg.NodeID, "peers", len(cfg.Peers),
		"data_dir", cfg.DataDir, "wal_profile", cfg.WALProfile, "fsync", string(cfg.Fsync))

	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case <-b.Fatal():
		stopSearch()
		_ = b.Close()
		return b.Err()
	}
	stopSearch()
	if err := b.Close(); err != nil { // from here on /readyz answers 503
		return fmt.Errorf("close broker: %w", err)
	}
	if err := hs.Close(); err != nil {
		log.Warn("closing the http listener", "err", err)
	}
	log.Info("stopped")
	return nil
}

// brokerConfig maps the node configuration onto the broker's. The HTTP
// listener is the node's (runStart); the search settings (indexer workers,
// realtime index) are startSearch's; Tier 3's store is opened by runStart.
func brokerConfig(cfg ops.Config, log *slog.Logger) (broker.Config, error) {
	bc := broker.DefaultConfig()
	bc.DataDir = cfg.DataDir
	bc.KafkaAddr = cfg.KafkaAddr
	bc.AdvertisedAddr = cfg.AdvertisedAddr
	bc.InternalAddr = cfg.InternalAddr
	bc.NodeID = cfg.NodeID
	bc.AutoCreateTopics = cfg.AutoCreateTopics
	bc.DefaultPartitions = cfg.DefaultPartitions
	bc.DefaultReplicationFactor = cfg.DefaultReplicationFactor
	bc.MinInsyncReplicas = cfg.MinInsyncReplicas
	bc.MaxRequestBytes = cfg.MaxRequestBytes
	bc.MessageMaxBytes = cfg.MessageMaxBytes
	bc.MessageTimestampBeforeMaxMs = cfg.MessageTimestampBeforeMaxMs
	bc.MessageTimestampAfterMaxMs = cfg.MessageTimestampAfterMaxMs
	bc.ProducerIDExpiration = cfg.ProducerIDExpiration
	bc.ProducerIDsMaxPerPartition = int(cfg.ProducerIDsMaxPerPartition)
	bc.MaxPartitions = cfg.MaxPartitions
	bc.OffsetsTopicNumPartitions = cfg.OffsetsTopicNumPartitions
	bc.OffsetsTopicReplicationFactor = cfg.OffsetsTopicReplicationFactor
	bc.OffsetsRetention = cfg.OffsetsRetention
	bc.TransactionStateLogNumPartitions = cfg.TransactionStateLogNumPartitions
	bc.TransactionStateLogReplicationFactor = cfg.TransactionStateLogReplicationFactor
	bc.TransactionMaxTimeout = cfg.TransactionMaxTimeout
	bc.TransactionAbortCheckInterval = cfg.TransactionAbortCheckInterval
	bc.FsyncBatchTimeout = cfg.FsyncBatchTimeout
	bc.RequestReadTimeout = cfg.RequestReadTimeout
	bc.ConnectionsMaxIdle = cfg.ConnectionsMaxIdle
	bc.ResponseWriteTimeout = cfg.ResponseWriteTimeout
	bc.ConnectionMaxUnsentBytes = cfg.ConnectionMaxUnsentBytes
	bc.MaxConnections = cfg.MaxConnections
	bc.MaxConnectionsPerIP = cfg.MaxConnectionsPerIP
	bc.ReplicaFetchRequireInternalAddr = cfg.ReplicaFetchRequireInternalAddr
	bc.ScrubInterval = cfg.ScrubInterval
	bc.ScrubBytesPerSec = cfg.ScrubBytesPerSec
	bc.Logger = log
	if !cfg.Standalone() {
		cc := &broker.ClusterConfig{
			RaftAddr:          cfg.RaftAddr,
			HeartbeatInterval: cfg.BrokerHeartbeatInterval,
			SessionTimeout:    cfg.BrokerSessionTimeout,
			Recover:           cfg.ControllerRecover,

			UncleanLeaderElection: cfg.UncleanLeaderElection,

			AutoLeaderRebalance:                cfg.AutoLeaderRebalance,
			LeaderImbalanceCheckInterval:       cfg.LeaderImbalanceCheckInterval,
			LeaderImbalancePerBrokerPercentage: cfg.LeaderImbalancePerBrokerPercentage,
		}
		for _, p := range cfg.Peers {
			cc.Peers = append(cc.Peers, replication.Peer{ID: p.ID, Addr: p.Addr})
		}
		bc.Cluster = cc
		bc.ReplicaLagTimeMax = cfg.ReplicaLagTimeMax
		bc.ReplicaFetchWaitMax = cfg.ReplicaFetchWaitMax
	}

	if err := securityConfig(cfg, &bc, log); err != nil {
		return broker.Config{}, err
	}

	p, err := tier1.ProfileByName(cfg.WALProfile)
	if err != nil {
		return broker.Config{}, fmt.Errorf("%s=%q: %w", cfg.Origin("CHRONIK_WAL_PROFILE"), cfg.WALProfile, err)
	}
	bc.WALProfile = p
	switch cfg.Fsync {
	case ops.FsyncAlways:
		bc.Fsync = tier1.FsyncAlways
	case ops.FsyncNever:
		bc.Fsync = tier1.FsyncNever
	default:
		return broker.Config{}, fmt.Errorf("%s=%q is not one of always, never", cfg.Origin("CHRONIK_FSYNC"), cfg.Fsync)
	}
	if err := bc.Validate(); err != nil {
		return broker.Config{}, err
	}
	return bc, nil
}

// startSearch runs the batch indexer (unless CHRONIK_INDEX_WORKERS is 0)
// and serves the search API on the HTTP listener.
func startSearch(cfg ops.Config, b *broker.Broker, bcfg broker.Config, hs *ops.HTTPServer, reg prometheus.Registerer,
	log *slog.Logger, ix *atomic.Pointer[indexer.Indexer]) (func(), error) {
	cache, err := indexer.OpenCache(filepath.Join(cfg.DataDir, "search-cache"), 2<<30, 64)
	if err != nil {
		return nil, err
	}
	sl := b.SearchLog()
	eng, err := indexer.NewEngine(indexer.EngineConfig{Log: sl, Store: bcfg.Tier3, Cache: cache, Realtime: cfg.RealtimeIndex})
	if err != nil {
		cache.Close()
		return nil, err
	}
	rtCtx, rtStop := context.WithCancel(context.Background())
	rtDone := make(chan struct{})
	go func() {
		defer close(rtDone)
		if cfg.RealtimeIndex {
			log.Info("realtime index of the active tail on", "setting", cfg.Origin("CHRONIK_REALTIME_INDEX"))
			eng.RunRealtime(rtCtx, sl.TopicNames, time.Second)
		}
	}()
	var search http.Handler = indexer.Handler(eng, searchLimits(cfg))
	if b.AuthorizerOn() {
		search = hs.RequireAuth(authorizeSearch(b, search))
	}
	hs.Handle("POST /api/v1/search", search)
	var x *indexer.Indexer
	if cfg.IndexWorkers > 0 && bcfg.Tier3 != nil {
		// Index builds run in child processes of this binary at low
		// priority, off the broker's cores and heap (indexer/child.go).
		// /proc/self/exe is the running image even after the file was
		// replaced by an upgrade: children build what this broker's
		// mapping version says.
		exe := "/proc/self/exe"
		if _, err = os.Stat(exe); err != nil {
			exe, err = os.Executable()
		}
		if err == nil {
			x, err = indexer.NewIndexer(indexer.Config{Log: sl, Store: bcfg.Tier3, Topics: sl.TopicNames, Workers: cfg.IndexWorkers,
				TempDir: filepath.Join(cfg.DataDir, "index-build"), Logger: log, Metrics: reg,
				BuildCommand: []string{exe, "index-build", "--nice", strconv.Itoa(cfg.IndexNice)}, YieldCPU: cfg.IndexYieldCPU})
		}
		if err != nil {
			rtStop()
			<-rtDone
			cache.Close()
			return nil, err
		}
		ix.Store(x)
		x.Start()
		log.Info("batch indexer on", "workers", cfg.IndexWorkers, "build_nice", cfg.IndexNice, "yield_cpu", cfg.IndexYieldCPU)
	} else {
		log.Info("batch indexer off; searches index archived segments on the fly", "setting", cfg.Origin("CHRONIK_INDEX_WORKERS"))
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			rtStop()
			<-rtDone
			stopIndexer(x, ix, cache)
		})
	}, nil
}

// stopIndexer stops the indexer (uploads in flight are abandoned and
// redone by the next run) and closes the index cache.
func stopIndexer(x *indexer.Indexer, ix *atomic.Pointer[indexer.Indexer], cache *indexer.Cache) {
	if x != nil {
		ix.Store(nil)
		x.Close()
	}
	cache.Close()
}
