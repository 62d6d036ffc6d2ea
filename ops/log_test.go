package ops

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestNewLogger(t *testing.T) {
	var buf bytes.Buffer
	l, err := NewLogger("warn", "json", &buf)
	if err != nil {
		t.Fatal(err)
	}
	l.Info("hidden")
	l.Warn("kafka listener ready", "addr", "127.0.0.1:9092")
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("one JSON record expected, got %q: %v", buf.String(), err)
	}
	if rec["msg"] != "kafka listener ready" || rec["addr"] != "127.0.0.1:9092" || rec["level"] != "WARN" {
		t.Errorf("record = %v", rec)
	}

	buf.Reset()
	l, err = NewLogger("debug", "text", &buf)
	if err != nil {
		t.Fatal(err)
	}
	l.Debug("visible", "k", 1)
	if got := buf.String(); !strings.Contains(got, "level=DEBUG") || !strings.Contains(got, "msg=visible k=1") {
		t.Errorf("text output = %q", got)
	}

	if _, err := NewLogger("trace", "text", &buf); err == nil || !strings.Contains(err.Error(), `log level "trace"`) {
		t.Errorf("bad level: err = %v", err)
	}
	if _, err := NewLogger("info", "xml", &buf); err == nil || !strings.Contains(err.Error(), `log format "xml"`) {
		t.Errorf("bad format: err = %v", err)
	}
}
