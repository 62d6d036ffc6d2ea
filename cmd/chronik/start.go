package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/chronik-go/chronik/broker"
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
	if cfg.RealtimeIndex {
		log.Warn("the realtime index is not available in this build yet; the setting is accepted and has no effect",
			"setting", cfg.Origin("CHRONIK_REALTIME_INDEX"))
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
	hs := ops.NewHTTPServer(ops.HTTPConfig{Addr: cfg.HTTPAddr, Pprof: cfg.Pprof, Gatherer: reg, Logger: log})
	if err := hs.Start(); err != nil {
		return fmt.Errorf("http listener on %s=%q: %w", cfg.Origin("CHRONIK_HTTP_ADDR"), cfg.HTTPAddr, err)
	}
	defer hs.Close()
	log.Info("http listener ready", "addr", hs.Addr().String(), "pprof", cfg.Pprof)

	b, err := broker.New(bcfg)
	if err != nil {
		return fmt.Errorf("open broker in %s=%q: %w", cfg.Origin("CHRONIK_DATA_DIR"), cfg.DataDir, err)
	}
	if err := b.Start(); err != nil {
		_ = b.Close()
		return fmt.Errorf("kafka listener on %s=%q: %w", cfg.Origin("CHRONIK_KAFKA_ADDR"), cfg.KafkaAddr, err)
	}
	hs.SetReadiness(b.Ready)
	log.Info("kafka listener ready", "addr", b.Addr().String(), "node_id", cfg.NodeID, "peers", len(cfg.Peers),
		"data_dir", cfg.DataDir, "wal_profile", cfg.WALProfile, "fsync", string(cfg.Fsync))

	<-ctx.Done()
	log.Info("shutting down")
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
// listener is the node's (runStart); settings of features the broker does
// not have yet (realtime index) stay in ops.Config; Tier 3's store is
// opened by runStart.
func brokerConfig(cfg ops.Config, log *slog.Logger) (broker.Config, error) {
	bc := broker.DefaultConfig()
	bc.DataDir = cfg.DataDir
	bc.KafkaAddr = cfg.KafkaAddr
	bc.AdvertisedAddr = cfg.AdvertisedAddr
	bc.NodeID = cfg.NodeID
	bc.AutoCreateTopics = cfg.AutoCreateTopics
	bc.DefaultPartitions = cfg.DefaultPartitions
	bc.DefaultReplicationFactor = cfg.DefaultReplicationFactor
	bc.MinInsyncReplicas = cfg.MinInsyncReplicas
	bc.MaxRequestBytes = cfg.MaxRequestBytes
	bc.MessageMaxBytes = cfg.MessageMaxBytes
	bc.FsyncBatchTimeout = cfg.FsyncBatchTimeout
	bc.Logger = log
	if !cfg.Standalone() {
		cc := &broker.ClusterConfig{
			RaftAddr:          cfg.RaftAddr,
			HeartbeatInterval: cfg.BrokerHeartbeatInterval,
			SessionTimeout:    cfg.BrokerSessionTimeout,
		}
		for _, p := range cfg.Peers {
			cc.Peers = append(cc.Peers, replication.Peer{ID: p.ID, Addr: p.Addr})
		}
		bc.Cluster = cc
		bc.ReplicaLagTimeMax = cfg.ReplicaLagTimeMax
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
