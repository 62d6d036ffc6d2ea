package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

type gotRecord struct {
	Topic     string            `json:"topic"`
	Partition int32             `json:"partition"`
	Offset    int64             `json:"offset"`
	Timestamp string            `json:"timestamp"`
	Key       *string           `json:"key"`
	Headers   []json.RawMessage `json:"headers"`
	Value     json.RawMessage   `json:"value"`
}

func parseRecords(t *testing.T, out string) []gotRecord {
	t.Helper()
	var recs []gotRecord
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var r gotRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("line %q is not a JSON record: %v", sc.Text(), err)
		}
		if _, err := time.Parse(time.RFC3339Nano, r.Timestamp); err != nil {
			t.Errorf("timestamp %q is not RFC3339: %v", r.Timestamp, err)
		}
		recs = append(recs, r)
	}
	return recs
}

func TestProduceConsumeRoundTrip(t *testing.T) {
	addr := newKfake(t)
	b := []string{"--brokers", addr}
	mustChronik(t, "", append([]string{"topic", "create", "events", "--partitions", "1"}, b...)...)

	r := mustChronik(t, "first\n\nthird with spaces\n",
		append([]string{"produce", "--topic", "events", "--key", "user-1", "--header", "source=cli", "--header", "trace=a=b", "--compression", "zstd"}, b...)...)
	if !strings.Contains(r.stderr, `produced 3 of 3 records to "events"`) {
		t.Errorf("produce stderr: %q", r.stderr)
	}
	mustChronik(t, "", append([]string{"produce", "--topic", "events", "--value", `{"total":12}`, "--acks", "1"}, b...)...)
	mustChronik(t, "", append([]string{"produce", "--topic", "events", "--value", "bin", "--key", "", "--acks", "0", "--compression", "lz4"}, b...)...)

	r = mustChronik(t, "", append([]string{"consume", "--topic", "events", "--count", "5", "--format", "json"}, b...)...)
	recs := parseRecords(t, r.stdout)
	if len(recs) != 5 {
		t.Fatalf("consumed %d records; want 5:\n%s", len(recs), r.stdout)
	}
	str := func(s string) *string { return &s }
	type rec struct {
		Offset  int64
		Key     *string
		Headers string
		Value   string
	}
	hdrs := `[{"key":"source","value":"cli"},{"key":"trace","value":"a=b"}]`
	want := []rec{
		{0, str("user-1"), hdrs, `"first"`},
		{1, str("user-1"), hdrs, `""`},
		{2, str("user-1"), hdrs, `"third with spaces"`},
		{3, nil, `[]`, `"{\"total\":12}"`},
		{4, str(""), `[]`, `"bin"`},
	}
	var got []rec
	for _, r := range recs {
		if r.Topic != "events" || r.Partition != 0 {
			t.Errorf("record at %s/%d; want events/0", r.Topic, r.Partition)
		}
		h, _ := json.Marshal(r.Headers)
		got = append(got, rec{r.Offset, r.Key, string(h), string(r.Value)})
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}

	r = mustChronik(t, "", append([]string{"consume", "--topic", "events", "--count", "3"}, b...)...)
	if r.stdout != "first\n\nthird with spaces\n" {
		t.Errorf("text output = %q", r.stdout)
	}
}

func TestConsumePartitionAndOffset(t *testing.T) {
	addr := newKfake(t)
	b := []string{"--brokers", addr}
	mustChronik(t, "", append([]string{"topic", "create", "p", "--partitions", "2"}, b...)...)
	mustChronik(t, "zero\none\ntwo\n", append([]string{"produce", "--topic", "p", "--partition", "1"}, b...)...)
	mustChronik(t, "other\n", append([]string{"produce", "--topic", "p", "--partition", "0"}, b...)...)

	r := mustChronik(t, "", append([]string{"consume", "--topic", "p", "--partition", "1", "--from", "1", "--count", "2"}, b...)...)
	if r.stdout != "one\ntwo\n" {
		t.Errorf("partition 1 from offset 1 = %q; want one, two", r.stdout)
	}
	r = mustChronik(t, "", append([]string{"consume", "--topic", "p", "--count", "4", "--format", "json"}, b...)...)
	perPart := map[int32]int{}
	for _, rec := range parseRecords(t, r.stdout) {
		perPart[rec.Partition]++
	}
	if perPart[0] != 1 || perPart[1] != 3 {
		t.Errorf("records per partition = %v; want 0:1 1:3", perPart)
	}
}

// --from latest skips what was there before the consumer started.
func TestConsumeFromLatest(t *testing.T) {
	addr := newKfake(t)
	b := []string{"--brokers", addr}
	mustChronik(t, "", append([]string{"topic", "create", "l", "--partitions", "1"}, b...)...)
	mustChronik(t, "old\n", append([]string{"produce", "--topic", "l"}, b...)...)

	var (
		wg  sync.WaitGroup
		res cmdResult
	)
	wg.Go(func() {
		res = chronik(t, "", append([]string{"consume", "--topic", "l", "--from", "latest", "--count", "1"}, b...)...)
	})
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	// The consumer resolves "latest" asynchronously: keep producing until it
	// has printed something.
	for i := 0; ; i++ {
		mustChronik(t, "", append([]string{"produce", "--topic", "l", "--value", fmt.Sprintf("new-%d", i)}, b...)...)
		select {
		case <-done:
			if res.code != 0 || !strings.HasPrefix(res.stdout, "new-") {
				t.Fatalf("consume --from latest: exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
			}
			return
		case <-time.After(100 * time.Millisecond):
		}
		if i > 300 {
			t.Fatal("consumer printed nothing")
		}
	}
}

func TestProduceUnknownTopic(t *testing.T) {
	addr := newKfake(t) // no auto-creation
	r := chronik(t, "x\n", "produce", "--brokers", addr, "--topic", "nope")
	wantErr(t, r, "1 of 1 records failed: topic \"nope\" does not exist: create it with `chronik topic create nope`")
}
