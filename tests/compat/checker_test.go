package compat_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestChecker proves the read-back check fails on each way a broker can get
// a partition wrong, so a passing TestCompat means something.
func TestChecker(t *testing.T) {
	r := run{topic: "t", codec: codecs[1], n: 9}
	good := func(i int) record {
		return record{Partition: partitionOf(i), Offset: offsetOf(i), Key: string(key(i)), Value: string(value(i)), Headers: goHeaders(r, i)}
	}
	feed := func(recs ...record) (*checker, error) {
		c := &checker{r: r, headers: goHeaders}
		for _, rec := range recs {
			if err := c.add(rec); err != nil {
				return c, err
			}
		}
		return c, nil
	}

	var all []record
	for i := range r.n {
		all = append(all, good(i))
	}
	if c, err := feed(all...); err != nil || !c.done() {
		t.Fatalf("every record in order: done %v, error %v", c.done(), err)
	}

	wrongValue := good(4)
	wrongValue.Value += "x"
	wrongHeader := good(4)
	wrongHeader.Headers = []header{{"idx", "5"}, {"codec", "gzip"}}
	wrongOffset := good(4)
	wrongOffset.Offset++
	for name, recs := range map[string][]record{
		"lost":          {good(0), good(6)},
		"duplicated":    {good(0), good(0)},
		"reordered":     {good(3), good(0)},
		"wrong value":   {good(1), wrongValue},
		"wrong header":  {good(1), wrongHeader},
		"offset gap":    {good(1), wrongOffset},
		"extra":         append(append([]record(nil), all...), record{Partition: 0, Offset: 3}),
		"bad partition": {{Partition: 3}},
	} {
		if _, err := feed(recs...); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestParseKcatLine(t *testing.T) {
	got, err := parseKcatLine("2\t17\tkey-0000053\tcodec=lz4,partition=2\tvalue-0000053 alpha kilo")
	if err != nil {
		t.Fatal(err)
	}
	want := record{Partition: 2, Offset: 17, Key: "key-0000053", Value: "value-0000053 alpha kilo",
		Headers: []header{{"codec", "lz4"}, {"partition", "2"}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if _, err := parseKcatLine("2\t17\tkey"); err == nil {
		t.Error("short line: no error")
	}
}
