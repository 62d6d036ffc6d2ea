package testharness

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// startKfake runs franz-go's fake cluster in process on the broker's Kafka
// address and data directory, so tests can be developed and debugged without
// the chronik binary. It persists to the data directory with fsync per batch,
// and reloads it on restart; Kill is a clean close, so crash tests prove
// nothing on this target beyond the test's own logic.
func (b *Broker) startKfake() error {
	fmt.Fprintf(logWriter(b.logPath), "=== testharness: kfake start #%d at %s: kafka %s data %s\n",
		b.starts, time.Now().Format(time.RFC3339Nano), b.kafkaAddr, b.dataDir)

	_, portStr, _ := net.SplitHostPort(b.kafkaAddr)
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return fmt.Errorf("kfake: address %q: %v", b.kafkaAddr, err)
	}
	autoCreate, partitions, err := kfakeArgs(b.opts.Args)
	if err != nil {
		return err
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.Ports(port),
		kfake.DataDir(b.dataDir),
		kfake.SyncWrites(),
		kfake.DefaultNumPartitions(partitions),
		kfake.WithLogger(kfake.BasicLogger(logWriter(b.logPath), kfake.LogLevelWarn)),
	}
	if autoCreate {
		opts = append(opts, kfake.AllowAutoTopicCreation())
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("kfake: %v: %w", err, errAddrInUse)
		}
		return fmt.Errorf("kfake: %w", err)
	}
	b.fake = c
	return Poll(b.opts.StartTimeout, 20*time.Millisecond, func() error {
		return ProbeAPIVersions(b.kafkaAddr, time.Second)
	})
}

// kfakeArgs maps the chronik flags kfake can honour, with chronik's defaults
// (auto-create on, one partition).
func kfakeArgs(args []string) (autoCreate bool, partitions int, err error) {
	autoCreate, partitions = true, 1
	for i := 0; i < len(args); i++ {
		name, val, hasVal := strings.Cut(args[i], "=")
		switch name {
		case "--auto-create-topics":
			if !hasVal {
				val = "true"
			}
			if autoCreate, err = strconv.ParseBool(val); err != nil {
				return false, 0, fmt.Errorf("kfake: %s: %v", args[i], err)
			}
		case "--default-partitions":
			if !hasVal && i+1 < len(args) {
				i++
				val = args[i]
			}
			if partitions, err = strconv.Atoi(val); err != nil {
				return false, 0, fmt.Errorf("kfake: %s: %v", args[i], err)
			}
		default:
			// Flags that only mean something to chronik (WAL profile, fsync
			// mode, ...) have no kfake equivalent.
		}
	}
	return autoCreate, partitions, nil
}

// logWriter appends each write to the log file, so the kfake logger keeps
// working across restarts without holding a file open.
type logWriter string

func (w logWriter) Write(p []byte) (int, error) {
	f, err := os.OpenFile(string(w), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return f.Write(p)
}
