package broker

import "testing"

// A topic config whose default changes with the broker's settings names
// the setting in its documentation, and only such a config does.
func TestTopicConfigDocsFrom(t *testing.T) {
	base := DefaultConfig()
	other := base
	other.MessageMaxBytes++
	other.MinInsyncReplicas++
	other.DefaultPartitions++
	other.DefaultReplicationFactor++
	other.MessageTimestampBeforeMaxMs--
	other.MessageTimestampAfterMaxMs++
	a, b := TopicConfigDocs(base), TopicConfigDocs(other)
	for i := range a {
		varies := a[i].Default != b[i].Default
		if varies != (a[i].From != "") {
			t.Errorf("%s: default %q vs %q under other settings, but From = %q", a[i].Name, a[i].Default, b[i].Default, a[i].From)
		}
		if a[i].Doc == "" || a[i].Type == "" || a[i].Type == "unknown" {
			t.Errorf("%s: incomplete doc %+v", a[i].Name, a[i])
		}
	}
	if len(a) != len(topicConfigDefs) {
		t.Errorf("%d docs for %d configs", len(a), len(topicConfigDefs))
	}
}
