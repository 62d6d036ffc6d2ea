package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chronik-go/chronik/ops"
	"github.com/chronik-go/chronik/tier1"
)

// `chronik start --help` lists every setting with its env name and default.
func TestStartHelpListsEverySetting(t *testing.T) {
	r := mustChronik(t, "", "start", "--help")
	for _, s := range ops.Settings() {
		if !strings.Contains(r.stdout, s.Env) {
			t.Errorf("help lacks %s", s.Env)
		}
		if s.Flag != "" && !strings.Contains(r.stdout, "--"+s.Flag) {
			t.Errorf("help lacks --%s", s.Flag)
		}
		def := s.Default
		if s.DefaultDoc != "" {
			def = s.DefaultDoc
		}
		if s.Inverts == "" && !strings.Contains(r.stdout, "default "+def) {
			t.Errorf("help lacks the default of %s: %q", s.Env, def)
		}
	}
}

func TestBrokerConfigFromSettings(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{
		"CHRONIK_DATA_DIR":               dir,
		"CHRONIK_KAFKA_ADDR":             "127.0.0.1:0",
		"CHRONIK_ADVERTISED_ADDR":        "b1.example.com:9092",
		"CHRONIK_NODE_ID":                "4",
		"CHRONIK_WAL_PROFILE":            "high",
		"CHRONIK_FSYNC":                  "never",
		"CHRONIK_FSYNC_BATCH_TIMEOUT_MS": "7",
		"CHRONIK_AUTO_CREATE_TOPICS":     "false",
		"CHRONIK_DEFAULT_PARTITIONS":     "6",
		"CHRONIK_MAX_REQUEST_BYTES":      "8388608",
		"CHRONIK_MESSAGE_MAX_BYTES":      "2097152",
		"CHRONIK_SCRUB_INTERVAL_MS":      "60000",
		"CHRONIK_SCRUB_BYTES_PER_SEC":    "1048576",
	}
	cfg, err := ops.Load(nil, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	bc, err := brokerConfig(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	high, err := tier1.ProfileByName("high")
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"DataDir", bc.DataDir, dir},
		{"KafkaAddr", bc.KafkaAddr, "127.0.0.1:0"},
		{"AdvertisedAddr", bc.AdvertisedAddr, "b1.example.com:9092"},
		{"NodeID", bc.NodeID, int32(4)},
		{"WALProfile", bc.WALProfile, high},
		{"Fsync", bc.Fsync, tier1.FsyncNever},
		{"FsyncBatchTimeout", bc.FsyncBatchTimeout, 7 * time.Millisecond},
		{"AutoCreateTopics", bc.AutoCreateTopics, false},
		{"DefaultPartitions", bc.DefaultPartitions, int32(6)},
		{"DefaultReplicationFactor", bc.DefaultReplicationFactor, int16(1)},
		{"MinInsyncReplicas", bc.MinInsyncReplicas, int16(1)},
		{"MaxRequestBytes", bc.MaxRequestBytes, int32(8 << 20)},
		{"MessageMaxBytes", bc.MessageMaxBytes, int32(2 << 20)},
		{"ScrubInterval", bc.ScrubInterval, time.Minute},
		{"ScrubBytesPerSec", bc.ScrubBytesPerSec, int64(1 << 20)},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v; want %v", c.name, c.got, c.want)
		}
	}
	cfg = ops.DefaultConfig()
	if bc, err = brokerConfig(cfg, nil); err != nil || bc.Fsync != tier1.FsyncAlways || bc.WALProfile.Name != "medium" {
		t.Errorf("defaults: fsync %v, profile %q, %v", bc.Fsync, bc.WALProfile.Name, err)
	}
}

// start serves Kafka on the configured address until its context ends,
// and the client commands work against it.
func TestStartServesKafka(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{"CHRONIK_DATA_DIR": dir, "CHRONIK_LOG_FORMAT": "json"}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs syncBuffer
	exited := make(chan int, 1)
	go func() {
		exited <- run(ctx, []string{"start", "--kafka-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--log-level", "debug"},
			strings.NewReader(""), &logs, &logs, func(k string) string { return env[k] })
	}()

	var addr string
	checkFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		select {
		case code := <-exited:
			t.Fatalf("start exited with %d before it was ready:\n%s", code, logs.String())
		default:
		}
		sc := bufio.NewScanner(strings.NewReader(logs.String()))
		for sc.Scan() {
			var rec map[string]any
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec["msg"] == "kafka listener ready" {
				addr, _ = rec["addr"].(string)
				return nil
			}
		}
		return errors.New("no kafka listener ready line yet")
	})
	if !strings.HasPrefix(addr, "127.0.0.1:") || strings.HasSuffix(addr, ":0") {
		t.Fatalf("ready line addr = %q; want the bound 127.0.0.1 port", addr)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatal(err)
	}

	b := []string{"--brokers", addr}
	mustChronik(t, "", append([]string{"topic", "create", "s", "--partitions", "2"}, b...)...)
	mustChronik(t, "one\ntwo\nthree\n", append([]string{"produce", "--topic", "s", "--partition", "1", "--key", "k", "--header", "h=v"}, b...)...)
	r := mustChronik(t, "", append([]string{"consume", "--topic", "s", "--partition", "1", "--count", "3", "--format", "json"}, b...)...)
	recs := parseRecords(t, r.stdout)
	var got []string
	for _, rec := range recs {
		got = append(got, fmt.Sprintf("%d:%s:%s", rec.Offset, *rec.Key, rec.Value))
	}
	if want := []string{`0:k:"one"`, `1:k:"two"`, `2:k:"three"`}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("consumed %v; want %v", got, want)
	}

	cancel()
	select {
	case code := <-exited:
		if code != 0 {
			t.Errorf("start exited with %d:\n%s", code, logs.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("start did not stop after its context ended:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), `"msg":"stopped"`) {
		t.Errorf("no stopped line in logs:\n%s", logs.String())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) == 0 {
		t.Errorf("nothing written under the data dir %s", filepath.Base(dir))
	}
}
