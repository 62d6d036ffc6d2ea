package main

import (
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

func endOffsetsSum(t *testing.T, addr, topic string) int64 {
	t.Helper()
	ends, err := newAdmin(t, addr).ListEndOffsets(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	ends.Each(func(o kadm.ListedOffset) { sum += o.Offset })
	return sum
}

func TestBenchProduceJSON(t *testing.T) {
	addr := newKfake(t)
	r := mustChronik(t, "", "bench", "produce", "--brokers", addr, "--topic", "b", "--count", "20000", "--partitions", "3",
		"--record-size", "64", "--json", "--progress=false")
	var res benchResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, r.stdout)
	}
	if res.Mode != "produce" || res.Records != 20000 || res.Errors != 0 || res.Bytes != 20000*64 {
		t.Errorf("summary = %+v; want 20000 records of 64 B, no errors", res)
	}
	if res.MsgsPerSec <= 0 || res.MBPerSec <= 0 || res.ElapsedSec <= 0 {
		t.Errorf("rates = %v msg/s, %v MB/s over %vs", res.MsgsPerSec, res.MBPerSec, res.ElapsedSec)
	}
	l := res.LatencyMs
	if l == nil || l.Max <= 0 || l.P50 > l.P99 || l.P99 > l.P999 || l.P999 > l.Max {
		t.Errorf("latency = %+v; want 0 < p50 <= p99 <= p99.9 <= max", l)
	}
	if res.Settings["partitions"] != 3.0 || res.Settings["idempotent"] != true || res.Settings["acks"] != "all" {
		t.Errorf("settings = %v", res.Settings)
	}
	if got := endOffsetsSum(t, addr, "b"); got != 20000 {
		t.Errorf("the broker has %d records; want 20000", got)
	}

	r = mustChronik(t, "", "bench", "consume", "--brokers", addr, "--topic", "b", "--json", "--progress=false")
	var cres benchResult
	if err := json.Unmarshal([]byte(r.stdout), &cres); err != nil {
		t.Fatalf("consume stdout is not JSON: %v\n%s", err, r.stdout)
	}
	if cres.Mode != "consume" || cres.Records != 20000 || cres.Bytes != 20000*64 || cres.Errors != 0 {
		t.Errorf("consume summary = %+v; want all 20000 records", cres)
	}
	r = mustChronik(t, "", "bench", "consume", "--brokers", addr, "--topic", "b", "--count", "500", "--json", "--progress=false")
	if err := json.Unmarshal([]byte(r.stdout), &cres); err != nil || cres.Records != 500 {
		t.Errorf("consume --count 500 read %d records (%v)", cres.Records, err)
	}
}

func TestBenchProduceDurationManyProducers(t *testing.T) {
	addr := newKfake(t)
	r := mustChronik(t, "", "bench", "produce", "--brokers", addr, "--topic", "d", "--duration", "300ms", "--producers", "3",
		"--acks", "1", "--compression", "snappy", "--linger", "1ms", "--json", "--progress=false")
	var res benchResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, r.stdout)
	}
	if res.Records == 0 || res.Errors != 0 || res.Settings["idempotent"] != false || res.Settings["producers"] != 3.0 {
		t.Errorf("summary = %+v", res)
	}
	if res.ElapsedSec < 0.3 {
		t.Errorf("ran %.3fs; want at least --duration", res.ElapsedSec)
	}
	if got := endOffsetsSum(t, addr, "d"); got != res.Records {
		t.Errorf("the broker has %d records; the summary says %d", got, res.Records)
	}
}

func TestBenchProduceText(t *testing.T) {
	addr := newKfake(t)
	r := mustChronik(t, "", "bench", "produce", "--brokers", addr, "--topic", "t", "--count", "1000", "--progress=false")
	for _, want := range []string{`produce "t": 1000 records, 0.1 MB`, "throughput", "latency     p50", "errors      0"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("summary lacks %q:\n%s", want, r.stdout)
		}
	}
}

func TestHistogram(t *testing.T) {
	var h histogram
	if h.quantile(0.5) != 0 {
		t.Fatal("empty histogram has a median")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	samples := make([]time.Duration, 100000)
	for i := range samples {
		// Log-uniform from 1µs to 1s: every bucket range gets exercised.
		samples[i] = time.Duration(math.Exp(rng.Float64()*math.Log(1e6)) * 1e3)
		h.record(samples[i])
	}
	slices.Sort(samples)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999, 1} {
		exact := samples[int(math.Ceil(q*float64(len(samples))))-1]
		got := h.quantile(q)
		if got < exact || float64(got-exact) > float64(exact)/64 {
			t.Errorf("q%v = %v; exact %v (allowed +1/64)", q, got, exact)
		}
	}
	if time.Duration(h.max.Load()) != samples[len(samples)-1] {
		t.Errorf("max = %v; want %v", time.Duration(h.max.Load()), samples[len(samples)-1])
	}
	for _, v := range []uint64{0, 1, 63, 64, 65, 127, 128, 129, 1 << 40, math.MaxInt64} {
		b := histBucket(v)
		if v > histUpper(b) || (b > 0 && v <= histUpper(b-1)) {
			t.Errorf("value %d in bucket %d, range (%d, %d]", v, b, histUpper(b-1), histUpper(b))
		}
	}
}
