package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestServe(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	readyc := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, options{addr: "127.0.0.1:0", partitions: 4, autoCreate: true}, func(a string) { readyc <- a })
	}()
	var addr string
	select {
	case addr = <-readyc:
	case err := <-done:
		t.Fatalf("serve: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("not ready")
	}
	if !strings.HasPrefix(addr, "127.0.0.1:") || strings.HasSuffix(addr, ":0") {
		t.Fatalf("addr = %q", addr)
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(cl)
	defer adm.Close()
	resp, err := adm.CreateTopic(ctx, -1, -1, nil, "t")
	if err != nil || resp.NumPartitions != 4 {
		t.Fatalf("topic with default partitions: %+v, %v; want 4 partitions", resp, err)
	}
	res := cl.ProduceSync(ctx, &kgo.Record{Topic: "t", Value: []byte("v")})
	if err := res.FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not return after its context ended")
	}
}

func TestServeBadFlags(t *testing.T) {
	for _, o := range []options{{addr: "19092", partitions: 1}, {addr: "127.0.0.1:x", partitions: 1}, {addr: "127.0.0.1:0", partitions: 0}} {
		if err := serve(context.Background(), o, func(string) { t.Errorf("%+v became ready", o) }); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
}
