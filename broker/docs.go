package broker

import "strings"

// TopicConfigDoc describes one topic config a broker accepts
// (docs/operations.md).
type TopicConfigDoc struct {
	Name    string
	Type    string // Kafka's config type: boolean, int, long, string, list
	Default string // under the Config given to TopicConfigDocs
	// From names the broker setting (its CHRONIK_* variable) the default
	// follows, or is empty for a fixed default.
	From string
	Doc  string
}

// topicConfigFrom maps the topic configs whose defaults follow a broker
// setting to that setting. TestTopicConfigDocsFrom keeps it complete.
var topicConfigFrom = map[string]string{
	"max.message.bytes":               "CHRONIK_MESSAGE_MAX_BYTES",
	"message.timestamp.after.max.ms":  "CHRONIK_MESSAGE_TIMESTAMP_AFTER_MAX_MS",
	"message.timestamp.before.max.ms": "CHRONIK_MESSAGE_TIMESTAMP_BEFORE_MAX_MS",
	"min.insync.replicas":             "CHRONIK_MIN_INSYNC_REPLICAS",
}

// TopicConfigDocs returns the topic configs, sorted by name, with their
// defaults under cfg.
func TopicConfigDocs(cfg Config) []TopicConfigDoc {
	var out []TopicConfigDoc
	for _, name := range sortedConfigNames() {
		d := topicConfigDefs[name]
		out = append(out, TopicConfigDoc{
			Name:    name,
			Type:    strings.ToLower(d.typ.String()),
			Default: d.def(&cfg),
			From:    topicConfigFrom[name],
			Doc:     d.doc,
		})
	}
	return out
}
