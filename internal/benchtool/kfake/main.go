// Command kfake runs franz-go's in-memory fake Kafka broker (pkg/kfake) as
// its own process, so a benchmark run can measure it beside Chronik on the
// same machine: kfake's numbers are the ceiling of a Go Kafka server there.
//
//	go run ./internal/benchtool/kfake --addr 127.0.0.1:19092
//
// It prints "kfake listening on ADDR" on stdout once clients can connect,
// and serves until SIGINT or SIGTERM.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/twmb/franz-go/pkg/kfake"
)

type options struct {
	addr       string
	partitions int
	autoCreate bool
	blackhole  bool
}

func main() {
	var o options
	flag.StringVar(&o.addr, "addr", "127.0.0.1:19092", "listen address host:port (port 0 picks a free one)")
	flag.IntVar(&o.partitions, "default-partitions", 1, "partitions of auto-created topics and of CreateTopics asking for the default")
	flag.BoolVar(&o.autoCreate, "auto-create-topics", true, "create unknown topics on metadata requests")
	flag.BoolVar(&o.blackhole, "blackhole", false, "acknowledge produces without storing them (nothing can be consumed)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := serve(ctx, o, func(addr string) { fmt.Printf("kfake listening on %s\n", addr) })
	if err != nil {
		fmt.Fprintf(os.Stderr, "kfake: %v\n", err)
		os.Exit(1)
	}
}

// serve runs the cluster until ctx ends, calling ready with the bound
// address once clients can connect.
func serve(ctx context.Context, o options, ready func(addr string)) error {
	_, port, err := net.SplitHostPort(o.addr)
	if err != nil {
		return fmt.Errorf("--addr %q is not host:port: %w", o.addr, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("--addr %q: port is not a number from 0 to 65535", o.addr)
	}
	if o.partitions < 1 {
		return fmt.Errorf("--default-partitions %d must be at least 1", o.partitions)
	}
	opts := []kfake.Opt{
		kfake.Ports(p), // one broker
		// kfake always listens on 127.0.0.1:port; honour the host of --addr.
		kfake.ListenFn(func(network, _ string) (net.Listener, error) { return net.Listen(network, o.addr) }),
		kfake.DefaultNumPartitions(o.partitions),
	}
	if o.autoCreate {
		opts = append(opts, kfake.AllowAutoTopicCreation())
	}
	if o.blackhole {
		opts = append(opts, kfake.BlackholeProduce())
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return err
	}
	defer c.Close()
	ready(c.ListenAddrs()[0])
	<-ctx.Done()
	return nil
}
