package broker

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/tier1"
)

// metrics are one broker's Prometheus series. Every series a request
// touches is resolved when the broker is built (per API key, indexed by the
// key), so the request path does no label lookups and no allocation: an
// observation is a few atomic adds. Only error counts, rare by nature,
// resolve their label pair on first use.
type metrics struct {
	api []apiMetrics // indexed by API key; zero for keys not served

	requestErrors *prometheus.CounterVec
	errChildren   sync.Map // errKey -> prometheus.Counter

	bytesIn, bytesOut prometheus.Counter
	produceRecords    prometheus.Counter

	walGroupEntries prometheus.Observer
	walGroupBytes   prometheus.Observer
	walFsync        prometheus.Observer

	segmentsSealed     prometheus.Counter
	segmentBytesSealed prometheus.Counter
	segmentsDeleted    prometheus.Counter
	walSegmentsTrimmed prometheus.Counter

	// wal is set once recovery has finished; the WAL gauges read 0 before.
	wal atomic.Pointer[tier1.WAL]

	collectors []prometheus.Collector
	docs       []MetricDoc
}

type apiMetrics struct {
	name     string
	requests prometheus.Counter
	duration prometheus.Observer
}

type errKey struct{ api, code int16 }

// MetricDoc describes one metric a broker exports (docs/operations.md).
type MetricDoc struct {
	Name   string
	Type   string // counter, gauge or histogram
	Help   string
	Labels []string
}

// MetricDocs returns the metrics a broker registers, in registration order.
// It builds them exactly as New does, on no registry.
func MetricDocs() []MetricDoc {
	return newMetrics(nil).docs
}

var (
	requestBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
	fsyncBuckets   = []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1}
)

// newMetrics builds the broker's series. b supplies the gauges read at
// scrape time; it is nil for MetricDocs.
func newMetrics(b *Broker) *metrics {
	m := &metrics{}
	requests := m.counterVec("chronik_requests_total",
		"Kafka requests decoded, by API.", "api")
	duration := m.histogramVec("chronik_request_duration_seconds",
		"Time from decoding a Kafka request to writing its response (a long-polling fetch includes its wait; acks=0 produces end when handled), by API.",
		requestBuckets, "api")
	m.requestErrors = m.counterVec("chronik_request_errors_total",
		"Error codes returned in Produce and Fetch responses, one per partition (or per response for a response-level error), by API and Kafka error name.",
		"api", "code")
	var maxKey kmsg.Key
	for k := range apis {
		maxKey = max(maxKey, k)
	}
	m.api = make([]apiMetrics, maxKey+1)
	for k := range apis {
		name := kmsg.NameForKey(int16(k))
		m.api[k] = apiMetrics{
			name:     name,
			requests: requests.WithLabelValues(name),
			duration: duration.WithLabelValues(name),
		}
	}
	m.bytesIn = m.counter("chronik_bytes_in_total", "Bytes of Kafka request frames read from clients.")
	m.bytesOut = m.counter("chronik_bytes_out_total", "Bytes of Kafka response frames written to clients.")
	m.produceRecords = m.counter("chronik_produce_records_total",
		"Records in produce batches accepted for the log, from the batch headers (records are not decoded; an idempotent retry answered as a duplicate counts again).")

	m.gaugeFunc("chronik_connections", "Open Kafka client connections.", func() float64 {
		b.lnMu.Lock()
		defer b.lnMu.Unlock()
		return float64(len(b.conns))
	})
	m.gaugeFunc("chronik_topics", "Topics, internal ones included.", func() float64 {
		b.mu.RLock()
		defer b.mu.RUnlock()
		return float64(len(b.topics))
	})
	m.gaugeFunc("chronik_partitions", "Partitions of all topics.", func() float64 {
		b.mu.RLock()
		defer b.mu.RUnlock()
		n := 0
		for _, t := range b.topics {
			n += len(t.partitions)
		}
		return float64(n)
	})

	walStat := func(f func(s tier1.Stats) float64) func() float64 {
		return func() float64 {
			if w := m.wal.Load(); w != nil {
				return f(w.Stats())
			}
			return 0
		}
	}
	m.gaugeFunc("chronik_wal_queue_depth", "Produce batches queued for the next WAL group commit (bounded by the WAL profile's queue depth).",
		walStat(func(s tier1.Stats) float64 { return float64(s.QueueDepth) }))
	m.gaugeFunc("chronik_wal_queue_bytes", "Bytes of the produce batches queued for the next WAL group commit (bounded by the WAL profile's memory bound).",
		walStat(func(s tier1.Stats) float64 { return float64(s.QueueBytes) }))
	m.counterFunc("chronik_wal_appends_total", "Produce batches made durable by the WAL.",
		walStat(func(s tier1.Stats) float64 { return float64(s.Appends) }))
	m.counterFunc("chronik_wal_written_bytes_total", "Bytes (frames included) written to WAL segments.",
		walStat(func(s tier1.Stats) float64 { return float64(s.BytesWritten) }))
	m.counterFunc("chronik_wal_backpressure_total",
		"Appends that waited for room in a full WAL queue: the broker stopped reading the producer's connection and reported ThrottleMillis.",
		walStat(func(s tier1.Stats) float64 { return float64(s.BackpressureWait) }))
	m.walGroupEntries = m.histogram("chronik_wal_group_batches",
		"Produce batches per WAL group commit (one write and one fsync each).", prometheus.ExponentialBuckets(1, 2, 18))
	m.walGroupBytes = m.histogram("chronik_wal_group_bytes",
		"Batch bytes per WAL group commit.", prometheus.ExponentialBuckets(1024, 4, 10))
	m.walFsync = m.histogram("chronik_wal_fsync_duration_seconds",
		"Time in fsync per WAL group commit (under CHRONIK_FSYNC=never, 0 except when the group seals a WAL segment).", fsyncBuckets)

	m.segmentsSealed = m.counter("chronik_segments_sealed_total", "Tier 2 segments sealed from the active log.")
	m.segmentBytesSealed = m.counter("chronik_segment_sealed_bytes_total", "Bytes of record batches moved from the active log into sealed Tier 2 segments.")
	m.segmentsDeleted = m.counter("chronik_segments_deleted_total", "Sealed Tier 2 segments deleted by retention (retention.ms, retention.bytes, local.retention.*).")
	m.walSegmentsTrimmed = m.counter("chronik_wal_segments_trimmed_total", "WAL segments removed once every batch in them was sealed into Tier 2.")
	return m
}

// observeGroup is the WAL's OnGroup hook.
func (m *metrics) observeGroup(entries int, bytes int64, fsync time.Duration) {
	m.walGroupEntries.Observe(float64(entries))
	m.walGroupBytes.Observe(float64(bytes))
	m.walFsync.Observe(fsync.Seconds())
}

// requestDone records a request whose response (nil for acks=0) was
// written; start is when its decoding began.
func (m *metrics) requestDone(key int16, start time.Time, resp kmsg.Response) {
	m.api[key].duration.Observe(time.Since(start).Seconds())
	switch r := resp.(type) {
	case *kmsg.ProduceResponse:
		for i := range r.Topics {
			for j := range r.Topics[i].Partitions {
				m.countError(key, r.Topics[i].Partitions[j].ErrorCode)
			}
		}
	case *kmsg.FetchResponse:
		m.countError(key, r.ErrorCode)
		for i := range r.Topics {
			for j := range r.Topics[i].Partitions {
				m.countError(key, r.Topics[i].Partitions[j].ErrorCode)
			}
		}
	}
}

func (m *metrics) countError(key, code int16) {
	if code == 0 {
		return
	}
	k := errKey{key, code}
	if c, ok := m.errChildren.Load(k); ok {
		c.(prometheus.Counter).Inc()
		return
	}
	name := "UNKNOWN"
	if e := kerr.TypedErrorForCode(code); e != nil {
		name = e.Message
	}
	c, _ := m.errChildren.LoadOrStore(k, m.requestErrors.WithLabelValues(m.api[key].name, name))
	c.(prometheus.Counter).Inc()
}

// register adds every series to reg; on error nothing stays registered.
func (m *metrics) register(reg prometheus.Registerer) error {
	for i, c := range m.collectors {
		if err := reg.Register(c); err != nil {
			for _, r := range m.collectors[:i] {
				reg.Unregister(r)
			}
			return err
		}
	}
	return nil
}

func (m *metrics) unregister(reg prometheus.Registerer) {
	for _, c := range m.collectors {
		reg.Unregister(c)
	}
}

func (m *metrics) add(c prometheus.Collector, name, typ, help string, labels []string) {
	m.collectors = append(m.collectors, c)
	m.docs = append(m.docs, MetricDoc{Name: name, Type: typ, Help: help, Labels: labels})
}

func (m *metrics) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	m.add(c, name, "counter", help, nil)
	return c
}

func (m *metrics) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	m.add(c, name, "counter", help, labels)
	return c
}

func (m *metrics) counterFunc(name, help string, f func() float64) {
	m.add(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f), name, "counter", help, nil)
}

func (m *metrics) gaugeFunc(name, help string, f func() float64) {
	m.add(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f), name, "gauge", help, nil)
}

func (m *metrics) histogram(name, help string, buckets []float64) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets})
	m.add(h, name, "histogram", help, nil)
	return h
}

func (m *metrics) histogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
	m.add(h, name, "histogram", help, labels)
	return h
}

// LabelList renders a metric's labels for documentation: "{api, code}".
func (d MetricDoc) LabelList() string {
	if len(d.Labels) == 0 {
		return ""
	}
	return "{" + strings.Join(d.Labels, ", ") + "}"
}
