package broker

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/internal/inflate"
)

// topicConfigDef describes one topic config Chronik accepts. Names and
// defaults follow Kafka. segment.*, retention.*, local.retention.*,
// cleanup.policy and delete.retention.ms take effect in Tier 2
// (retention.go); search.enabled is read by the batch indexer (indexer/,
// through SearchLog); compression.type is stored and described only.
type topicConfigDef struct {
	name     string
	def      func(c *Config) string
	typ      kmsg.ConfigType
	validate func(string) error
	doc      string
}

func constDefault(v string) func(*Config) string { return func(*Config) string { return v } }

func validateInt(min int64) func(string) error {
	return func(v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not an integer", v)
		}
		if n < min {
			return fmt.Errorf("%d is below the minimum %d", n, min)
		}
		return nil
	}
}

func validateEnum(choices ...string) func(string) error {
	return func(v string) error {
		for _, c := range choices {
			if v == c {
				return nil
			}
		}
		return fmt.Errorf("%q is not one of %s", v, strings.Join(choices, ", "))
	}
}

func validateCleanupPolicy(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "delete" && p != "compact" {
			return fmt.Errorf("%q is not delete, compact or compact,delete", v)
		}
	}
	return nil
}

var topicConfigDefs = func() map[string]*topicConfigDef {
	defs := []*topicConfigDef{
		{name: "cleanup.policy", def: constDefault("delete"), typ: kmsg.ConfigTypeList, validate: validateCleanupPolicy,
			doc: "delete (retention), compact (latest value per key), or both"},
		{name: "compression.type", def: constDefault("producer"), typ: kmsg.ConfigTypeString,
			validate: validateEnum("producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"),
			doc:      "batches are stored as the producer sent them; only producer is honoured today"},
		{name: "delete.retention.ms", def: constDefault("86400000"), typ: kmsg.ConfigTypeLong, validate: validateInt(0),
			doc: "how long tombstones survive compaction"},
		{name: "local.retention.bytes", def: constDefault("-2"), typ: kmsg.ConfigTypeLong, validate: validateInt(-2),
			doc: "local bytes kept of segments archived to Tier 3; -2 means retention.bytes"},
		{name: "local.retention.ms", def: constDefault("-2"), typ: kmsg.ConfigTypeLong, validate: validateInt(-2),
			doc: "local time kept of segments archived to Tier 3; -2 means retention.ms"},
		{name: "max.message.bytes", def: func(c *Config) string { return strconv.Itoa(int(c.MessageMaxBytes)) },
			typ: kmsg.ConfigTypeInt, validate: validateInt(0),
			doc: "largest record batch accepted; a compressed batch's records may inflate to " + strconv.Itoa(inflate.Factor) + " times this (a larger one gets MESSAGE_TOO_LARGE), " +
				"and every read that inflates them holds to the same bound, so lowering it can leave larger batches already stored unreadable by " +
				"compaction, ListOffsets by timestamp and search"},
		{name: "message.timestamp.after.max.ms", def: func(c *Config) string { return strconv.FormatInt(c.MessageTimestampAfterMaxMs, 10) },
			typ: kmsg.ConfigTypeLong, validate: validateInt(0),
			doc: "how far ahead of the broker's clock a CreateTime record's timestamp may be; a batch with a later one gets INVALID_TIMESTAMP (KIP-937)"},
		{name: "message.timestamp.before.max.ms", def: func(c *Config) string { return strconv.FormatInt(c.MessageTimestampBeforeMaxMs, 10) },
			typ: kmsg.ConfigTypeLong, validate: validateInt(0),
			doc: "how far behind the broker's clock a CreateTime record's timestamp may be; a batch with an earlier one gets INVALID_TIMESTAMP (KIP-937)"},
		{name: "message.timestamp.type", def: constDefault("CreateTime"), typ: kmsg.ConfigTypeString,
			validate: validateEnum("CreateTime", "LogAppendTime"), doc: "CreateTime keeps the producer's timestamps"},
		{name: "min.insync.replicas", def: func(c *Config) string { return strconv.Itoa(int(c.MinInsyncReplicas)) },
			typ: kmsg.ConfigTypeInt, validate: validateInt(1), doc: "replicas that must hold an acks=all write"},
		{name: "retention.bytes", def: constDefault("-1"), typ: kmsg.ConfigTypeLong, validate: validateInt(-1),
			doc: "bytes kept per partition, active segment included; whole sealed segments are deleted; -1 means unlimited"},
		{name: "retention.ms", def: constDefault("604800000"), typ: kmsg.ConfigTypeLong, validate: validateInt(-1),
			doc: "a sealed segment is deleted once its newest record is older than this; -1 means forever"},
		{name: "search.enabled", def: constDefault("true"), typ: kmsg.ConfigTypeBoolean, validate: validateEnum("true", "false"),
			doc: "let the batch indexer index archived segments (search covers the topic either way, indexing on the fly)"},
		{name: "segment.bytes", def: constDefault("1073741824"), typ: kmsg.ConfigTypeInt, validate: validateInt(14),
			doc: "bytes of a partition's active segment that make it roll into a sealed segment"},
		{name: "segment.ms", def: constDefault("604800000"), typ: kmsg.ConfigTypeLong, validate: validateInt(1),
			doc: "age (since its oldest batch became durable) at which an active segment rolls"},
		{name: "unclean.leader.election.enable", def: func(c *Config) string {
			return strconv.FormatBool(c.Cluster != nil && c.Cluster.UncleanLeaderElection)
		}, typ: kmsg.ConfigTypeBoolean, validate: validateEnum("true", "false"),
			doc: "elect a replica outside the ISR when no ISR member is live (cluster mode): the partition comes back, losing what that replica lacks"},
	}
	m := make(map[string]*topicConfigDef, len(defs))
	for _, d := range defs {
		m[d.name] = d
	}
	return m
}()

// validateTopicConfig checks one name=value pair.
func validateTopicConfig(name string, value *string) error {
	d, ok := topicConfigDefs[name]
	if !ok {
		return fmt.Errorf("unknown topic config %q", name)
	}
	if value == nil {
		return fmt.Errorf("topic config %q has a null value", name)
	}
	if err := d.validate(*value); err != nil {
		return fmt.Errorf("topic config %s: %v", name, err)
	}
	return nil
}

// effectiveConfig returns a topic's value for name: set or broker default.
func (b *Broker) effectiveConfig(t *topic, name string) (value string, isDefault bool) {
	if v, ok := b.topicConfigs(t)[name]; ok {
		return v, false
	}
	return topicConfigDefs[name].def(&b.cfg), true
}

func sortedConfigNames() []string {
	names := make([]string, 0, len(topicConfigDefs))
	for n := range topicConfigDefs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
