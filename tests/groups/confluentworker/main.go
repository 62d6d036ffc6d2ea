// Command confluentworker is a confluent-kafka-go (librdkafka) consumer-group
// member for the tests in tests/groups, with the same output as
// saramaworker: one {"topic","partition","offset"} JSON line per processed
// record on stdout, {"committed":{...}} after each successful commit, and
// {"redelivered":{...}} for a record librdkafka delivered twice in a row
// (dropped, not processed again).
// It commits synchronously every -commit-interval and in the rebalance
// callback before partitions are revoked (cooperative-sticky, or KIP-848's
// consumer protocol with -group-protocol consumer).
//
// With -committed it joins nothing: it asks for the group's committed
// offsets of every partition of -topic with one Consumer.Committed call
// (librdkafka's rd_kafka_committed: FindCoordinator, then OffsetFetch),
// bounded by -timeout, prints them as one JSON object and exits:
// {"committed":[{"partition":0,"offset":123},...],"ms":45}, a partition
// without a committed offset having offset -1001 (OFFSET_INVALID), or
// {"error":"..."} with exit status 1 when the call fails (e.g. _TIMED_OUT).
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

type record struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
}

type commit struct {
	Committed record `json:"committed"`
}

// redelivered reports a record the client delivered again inside one
// ownership of its partition, which the worker dropped.
type redelivered struct {
	Redelivered record `json:"redelivered"`
}

type worker struct {
	topic     string
	w         *bufio.Writer
	enc       *json.Encoder
	next      map[int32]int64 // one past the last record printed, per owned partition
	committed map[int32]int64
}

func (wk *worker) write(v any) {
	if err := wk.enc.Encode(v); err != nil {
		log.Fatalf("confluentworker: write: %v", err)
	}
}

func (wk *worker) flush() {
	if err := wk.w.Flush(); err != nil {
		log.Fatalf("confluentworker: write: %v", err)
	}
}

// commit commits the printed offsets of partitions (nil: all owned) that
// moved since their last commit and reports those that succeeded.
func (wk *worker) commit(c *ckafka.Consumer, only []ckafka.TopicPartition) {
	// The rebalance callback runs inside Poll, possibly with records
	// written but not flushed: they must be out before they are committed.
	wk.flush()
	var tps []ckafka.TopicPartition
	add := func(p int32) {
		off, ok := wk.next[p]
		if c0, done := wk.committed[p]; !ok || (done && c0 >= off) {
			return
		}
		tps = append(tps, ckafka.TopicPartition{Topic: &wk.topic, Partition: p, Offset: ckafka.Offset(off)})
	}
	if only == nil {
		for p := range wk.next {
			add(p)
		}
	} else {
		for _, tp := range only {
			add(tp.Partition)
		}
	}
	if len(tps) == 0 {
		return
	}
	res, err := c.CommitOffsets(tps)
	if err != nil {
		log.Printf("confluentworker: commit: %v", err)
		return
	}
	for _, tp := range res {
		if tp.Error != nil {
			log.Printf("confluentworker: commit partition %d at %d: %v", tp.Partition, tp.Offset, tp.Error)
			continue
		}
		wk.committed[tp.Partition] = int64(tp.Offset)
		wk.write(commit{record{wk.topic, tp.Partition, int64(tp.Offset)}})
	}
	wk.flush()
}

// partitions lists the partition numbers of tps, for the log.
func partitions(tps []ckafka.TopicPartition) []int32 {
	ps := make([]int32, len(tps))
	for i, tp := range tps {
		ps[i] = tp.Partition
	}
	return ps
}

func main() {
	brokers := flag.String("brokers", "127.0.0.1:9092", "bootstrap broker")
	topic := flag.String("topic", "", "topic")
	group := flag.String("group", "", "group")
	interval := flag.Duration("commit-interval", 100*time.Millisecond, "commit interval")
	session := flag.Duration("session-timeout", 6*time.Second, "session timeout")
	protocol := flag.String("group-protocol", "classic", "classic or consumer (KIP-848)")
	committedOnly := flag.Bool("committed", false, "print the group's committed offsets of -topic and exit")
	timeout := flag.Duration("timeout", 10*time.Second, "with -committed: bound of the metadata and committed calls")
	flag.Parse()
	if *committedOnly {
		os.Exit(committed(*brokers, *group, *topic, *timeout))
	}

	conf := ckafka.ConfigMap{
		"bootstrap.servers":  *brokers,
		"group.id":           *group,
		"client.id":          "confluentworker",
		"enable.auto.commit": false,
		"auto.offset.reset":  "earliest",
		"log_level":          4,
	}
	if *protocol == "consumer" {
		// KIP-848: the broker assigns partitions and owns the session
		// settings.
		conf["group.protocol"] = "consumer"
	} else {
		conf["partition.assignment.strategy"] = "cooperative-sticky"
		conf["session.timeout.ms"] = int(session.Milliseconds())
		conf["heartbeat.interval.ms"] = int(session.Milliseconds() / 6)
	}
	if d := os.Getenv("CHRONIK_GROUPS_RDKAFKA_DEBUG"); d != "" {
		conf["debug"] = d // librdkafka debug contexts (e.g. cgrp,fetch), to stderr
	}
	c, err := ckafka.NewConsumer(&conf)
	if err != nil {
		log.Fatalf("confluentworker: %v", err)
	}
	w := bufio.NewWriterSize(os.Stdout, 64<<10)
	wk := &worker{topic: *topic, w: w, enc: json.NewEncoder(w), next: map[int32]int64{}, committed: map[int32]int64{}}
	err = c.SubscribeTopics([]string{*topic}, func(c *ckafka.Consumer, ev ckafka.Event) error {
		switch e := ev.(type) {
		case ckafka.AssignedPartitions:
			log.Printf("confluentworker: assigned %v", partitions(e.Partitions))
		case ckafka.RevokedPartitions:
			log.Printf("confluentworker: revoked %v (lost: %v)", partitions(e.Partitions), c.AssignmentLost())
			if !c.AssignmentLost() {
				wk.commit(c, e.Partitions)
			}
			for _, tp := range e.Partitions {
				delete(wk.next, tp.Partition)
				delete(wk.committed, tp.Partition)
			}
		}
		return nil // the library (incrementally) assigns and unassigns
	})
	if err != nil {
		log.Fatalf("confluentworker: subscribe: %v", err)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	lastCommit := time.Now()
	for {
		select {
		case <-sig:
			wk.commit(c, nil)
			c.Close() // revokes (committing in the callback) and leaves
			return
		default:
		}
		wait := 100 // ms; once something was printed, take only what is ready
		for n := 0; n < 1000 && time.Since(lastCommit) < *interval; n++ {
			ev := c.Poll(wait)
			if ev == nil {
				break
			}
			switch e := ev.(type) {
			case *ckafka.Message:
				if e.TopicPartition.Error != nil {
					continue
				}
				rec := record{*e.TopicPartition.Topic, e.TopicPartition.Partition, int64(e.TopicPartition.Offset)}
				next, owned := wk.next[rec.Partition]
				switch {
				case owned && rec.Offset == next-1:
					// librdkafka (2.11) can hand back the record it
					// delivered last: the pause it takes itself during
					// an incremental rebalance keeps the position of a
					// record then still queued for the application, and
					// the resume fetches it again (debug=cgrp,fetch
					// shows "Pause ... at offset N", N delivered,
					// "Resuming ... at offset N", "Fetch ... at offset
					// N"). The broker is asked for N and serves N. Like
					// an application that tracks its position, drop
					// that one record, and report it. Any other rewind
					// is printed and fails the test.
					wk.write(redelivered{rec})
					continue
				case owned && rec.Offset != next:
					log.Printf("confluentworker: partition %d: offset %d follows %d", rec.Partition, rec.Offset, next-1)
				}
				wk.write(rec)
				wk.next[rec.Partition] = rec.Offset + 1
				wait = 0
			case ckafka.Error:
				log.Printf("confluentworker: %v", e)
			}
		}
		wk.flush()
		if time.Since(lastCommit) >= *interval {
			wk.commit(c, nil)
			lastCommit = time.Now()
		}
	}
}

// committedOffset is one partition of the -committed output.
type committedOffset struct {
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
	Error     string `json:"error,omitempty"`
}

// committed prints the committed offsets of group for every partition of
// topic as librdkafka's committed() returns them, and returns the exit
// status.
func committed(brokers, group, topic string, timeout time.Duration) int {
	enc := json.NewEncoder(os.Stdout)
	fail := func(err error) int {
		enc.Encode(map[string]string{"error": err.Error()})
		return 1
	}
	c, err := ckafka.NewConsumer(&ckafka.ConfigMap{
		"bootstrap.servers":  brokers,
		"group.id":           group,
		"client.id":          "confluentworker-committed",
		"enable.auto.commit": false,
		"log_level":          4,
	})
	if err != nil {
		return fail(err)
	}
	defer c.Close()
	md, err := c.GetMetadata(&topic, false, int(timeout.Milliseconds()))
	if err != nil {
		return fail(fmt.Errorf("metadata: %w", err))
	}
	var tps []ckafka.TopicPartition
	for _, p := range md.Topics[topic].Partitions {
		tps = append(tps, ckafka.TopicPartition{Topic: &topic, Partition: p.ID})
	}
	if len(tps) == 0 {
		return fail(fmt.Errorf("metadata: topic %s has no partitions (%v)", topic, md.Topics[topic].Error))
	}
	start := time.Now()
	res, err := c.Committed(tps, int(timeout.Milliseconds()))
	if err != nil {
		return fail(fmt.Errorf("committed after %v: %w", time.Since(start).Round(time.Millisecond), err))
	}
	out := struct {
		Committed []committedOffset `json:"committed"`
		Ms        int64             `json:"ms"`
	}{Ms: time.Since(start).Milliseconds()}
	for _, tp := range res {
		o := committedOffset{Partition: tp.Partition, Offset: int64(tp.Offset)}
		if tp.Error != nil {
			o.Error = tp.Error.Error()
		}
		out.Committed = append(out.Committed, o)
	}
	if err := enc.Encode(out); err != nil {
		return 1
	}
	return 0
}
