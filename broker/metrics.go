package broker

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/replication"
	"github.com/chronik-go/chronik/tier1"
	"github.com/chronik-go/chronik/tier3"
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
	connsClosed       connCloseMetrics

	authFailures, tlsHandshakeFailures prometheus.Counter

	walGroupEntries prometheus.Observer
	walGroupBytes   prometheus.Observer
	walFsync        prometheus.Observer

	isrShrinks, isrExpands prometheus.Counter
	replicaFetchesRefused  prometheus.Counter

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
		"Records in produce batches accepted for the log, as counted by validation (an idempotent retry answered as a duplicate counts again).")

	m.gaugeFunc("chronik_connections", "Open Kafka client connections.", func() float64 {
		b.lnMu.Lock()
		defer b.lnMu.Unlock()
		return float64(len(b.conns))
	})
	m.connsClosed = newConnCloseMetrics(m)
	m.authFailures = m.counter("chronik_authentication_failures_total",
		"SASL authentications that failed (wrong password, unknown user, bad exchange); each closes its connection.")
	m.tlsHandshakeFailures = m.counter("chronik_tls_handshake_failures_total",
		"Connections to SSL and SASL_SSL listeners closed because the TLS handshake failed (a plaintext client, an untrusted or missing client certificate, a timeout).")
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
	m.gaugeFunc("chronik_producer_ids",
		"Idempotent producers remembered, summed over partitions: bounded per partition by CHRONIK_PRODUCER_IDS_MAX_PER_PARTITION, forgotten after CHRONIK_PRODUCER_ID_EXPIRATION_MS.",
		func() float64 {
			n := int64(0)
			for _, p := range b.allPartitions() {
				n += p.nProducers.Load()
			}
			return float64(n)
		})

	// Cluster mode (cluster.go, replica*.go); 0 on a standalone broker.
	m.isrShrinks = m.counter("chronik_isr_shrinks_total",
		"ISR shrinks this broker, as a partition leader, had the controller commit (a follower behind for replica.lag.time.max.ms).")
	m.isrExpands = m.counter("chronik_isr_expands_total",
		"ISR expansions this broker, as a partition leader, had the controller commit (a follower caught up to the high watermark).")
	m.replicaFetchesRefused = m.counter("chronik_replica_fetches_refused_total",
		"Fetches that claimed a broker's replica ID without that broker's epoch (KIP-903): served as consumers' fetches, moving no high watermark.")
	m.gaugeFunc("chronik_under_replicated_partitions",
		"Partitions this broker leads whose ISR is smaller than their replica set.", func() float64 {
			n := 0
			for _, p := range b.allPartitions() {
				p.mu.RLock()
				if p.repl.on && p.repl.leader && len(p.repl.isr) < len(p.repl.replicas) {
					n++
				}
				p.mu.RUnlock()
			}
			return float64(n)
		})
	ctlState := func(f func(st *replication.State) float64) func() float64 {
		return func() float64 {
			if b.ctl == nil {
				return 0
			}
			return f(b.ctl.State())
		}
	}
	m.gaugeFunc("chronik_offline_partitions",
		"Partitions of the cluster without a leader (every ISR member fenced), from the controller's state: the same on every broker.",
		ctlState(func(st *replication.State) float64 {
			n := 0
			for _, t := range st.Topics {
				for _, p := range t.Partitions {
					if p.Leader < 0 {
						n++
					}
				}
			}
			return float64(n)
		}))
	m.gaugeFunc("chronik_fenced_brokers", "Registered brokers the controller has fenced (missed heartbeats or shut down).",
		ctlState(func(st *replication.State) float64 { return float64(len(st.Brokers) - len(st.LiveBrokers())) }))
	m.gaugeFunc("chronik_controller_metadata_index", "Raft index of the last metadata command this broker applied.",
		ctlState(func(st *replication.State) float64 { return float64(st.Index) }))
	m.gaugeFunc("chronik_controller_leader", "1 while this broker is the Raft leader of the controller quorum.", func() float64 {
		if b.ctl != nil && b.ctl.LeaderID() == b.cfg.NodeID {
			return 1
		}
		return 0
	})
	m.gaugeFunc("chronik_controller_lease_current",
		"1 while this broker holds a current lease from the controller (it may serve as a partition leader); 0 when cut off, paused or fenced.", func() float64 {
			if b.ctl != nil && b.ctl.Current() {
				return 1
			}
			return 0
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
	m.gaugeFunc("chronik_wal_disk_full",
		"1 while WAL appends fail because the disk is full (from a group undone for want of space until one is written), else 0.",
		walStat(func(s tier1.Stats) float64 {
			if s.DiskFull {
				return 1
			}
			return 0
		}))
	m.gaugeFunc("chronik_wal_failed",
		"1 once the WAL failed for good (a write or fsync error other than a full disk): the broker gave up its leaderships and needs a restart, else 0.",
		func() float64 {
			if b != nil && b.walErr.Load() != nil {
				return 1
			}
			return 0
		})
	m.counterFunc("chronik_wal_disk_full_groups_total",
		"WAL group commits undone because the disk was full; their produces got KAFKA_STORAGE_ERROR and are retried by clients.",
		walStat(func(s tier1.Stats) float64 { return float64(s.DiskFullGroups) }))
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
	m.gaugeFunc("chronik_damaged_segments",
		"Sealed Tier 2 segments whose log failed a check (at startup, in a scrub pass or on a read) and are not repaired yet: fetches of their damaged range get KAFKA_STORAGE_ERROR, and they are not archived.",
		func() float64 {
			n := 0
			for _, p := range b.allPartitions() {
				p.mu.RLock()
				for _, s := range p.segs {
					if s.Damage() != nil {
						n++
					}
				}
				p.mu.RUnlock()
			}
			return float64(n)
		})
	m.counterFunc("chronik_segment_repairs_total",
		"Damaged sealed segments rebuilt from a good copy (the partition's leader or the Tier 3 archive).",
		func() float64 { return float64(b.scrub.repairs.Load()) })
	m.counterFunc("chronik_scrub_bytes_total",
		"Bytes of sealed segments the scrubber read and checked (CHRONIK_SCRUB_BYTES_PER_SEC paces it).",
		func() float64 { return float64(b.scrub.bytes.Load()) })
	m.tier3(b)
	return m
}

// tier3 adds the Tier 3 series, read at scrape time (0 without Tier 3).
func (m *metrics) tier3(b *Broker) {
	lag := func(bytes bool) func() float64 {
		return func() float64 {
			if b == nil || b.tier.arch == nil {
				return 0
			}
			n := int64(0)
			for _, p := range b.allPartitions() {
				if _, compact := b.cleanupPolicy(p.topic); compact {
					continue // never archived
				}
				p.mu.RLock()
				for _, s := range p.segs {
					switch {
					case s.Archived():
					case bytes:
						n += s.Size
					default:
						n++
					}
				}
				p.mu.RUnlock()
			}
			return float64(n)
		}
	}
	m.gaugeFunc("chronik_tier3_upload_lag_segments",
		"Sealed local segments not yet archived to Tier 3 (compacted topics, which are not archived, excluded).", lag(false))
	m.gaugeFunc("chronik_tier3_upload_lag_bytes",
		"Bytes of the sealed local segments not yet archived to Tier 3.", lag(true))
	tier := func(f func(t *tierState) int64) func() float64 {
		return func() float64 {
			if b == nil {
				return 0
			}
			return float64(f(&b.tier))
		}
	}
	m.counterFunc("chronik_tier3_uploaded_segments_total", "Segments archived to Tier 3 (uploaded, verified and named by the partition's manifest).",
		tier(func(t *tierState) int64 { return t.uploaded.Load() }))
	m.counterFunc("chronik_tier3_uploaded_objects_total", "Objects (.log, .index, .timeindex) put to Tier 3 and verified.",
		tier(func(t *tierState) int64 { return t.uploadedObjects.Load() }))
	m.counterFunc("chronik_tier3_uploaded_bytes_total", "Bytes of the objects put to Tier 3 and verified.",
		tier(func(t *tierState) int64 { return t.uploadedBytes.Load() }))
	m.counterFunc("chronik_tier3_upload_errors_total", "Upload passes of a partition that failed (the partition retries after a backoff; nothing is deleted).",
		tier(func(t *tierState) int64 { return t.uploadErrors.Load() }))
	m.counterFunc("chronik_tier3_upload_retries_total", "Upload passes of a partition run again after a failed one.",
		tier(func(t *tierState) int64 { return t.uploadRetries.Load() }))

	reads := func(f func(s tier3.ReadStats) int64) func() float64 {
		return func() float64 {
			if b == nil || b.tier.arch == nil {
				return 0
			}
			return float64(f(b.tier.arch.ReadStats()))
		}
	}
	m.counterFunc("chronik_tier3_read_gets_total", "Ranged GETs of archived segment data (one may cover several chunks).",
		reads(func(s tier3.ReadStats) int64 { return s.GETs }))
	m.counterFunc("chronik_tier3_read_bytes_total", "Bytes of archived segment data read from the object store.",
		reads(func(s tier3.ReadStats) int64 { return s.GETBytes }))
	m.labelledCounterFunc("chronik_tier3_cache_hits_total",
		"Archived chunks a read found in a cache: memory (verified chunks kept in memory), else disk (the on-disk cache).", "cache",
		map[string]func() float64{
			"memory": reads(func(s tier3.ReadStats) int64 { return s.MemHits }),
			"disk":   reads(func(s tier3.ReadStats) int64 { return s.DiskHits }),
		})
	m.labelledCounterFunc("chronik_tier3_cache_misses_total",
		"Archived chunks a read did not find in a cache: a memory miss looks on disk, a disk miss waits for a GET.", "cache",
		map[string]func() float64{
			"memory": reads(func(s tier3.ReadStats) int64 { return s.MemMisses }),
			"disk":   reads(func(s tier3.ReadStats) int64 { return s.DiskMisses }),
		})
	m.counterFunc("chronik_tier3_cache_writes_total", "Chunks copied into the on-disk cache (those read again after leaving memory, or fetched ahead and never read).",
		reads(func(s tier3.ReadStats) int64 { return s.DiskWrites }))
	m.counterFunc("chronik_tier3_cache_writes_dropped_total", "Chunks not copied into the on-disk cache because its writer was behind.",
		reads(func(s tier3.ReadStats) int64 { return s.DiskDropped }))
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

// labelledCounterFunc is a counter with one label whose values are read
// at scrape time, one function per label value.
func (m *metrics) labelledCounterFunc(name, help, label string, fs map[string]func() float64) {
	m.add(&funcVec{desc: prometheus.NewDesc(name, help, []string{label}, nil), fs: fs}, name, "counter", help, []string{label})
}

type funcVec struct {
	desc *prometheus.Desc
	fs   map[string]func() float64
}

func (v *funcVec) Describe(ch chan<- *prometheus.Desc) { ch <- v.desc }

func (v *funcVec) Collect(ch chan<- prometheus.Metric) {
	for value, f := range v.fs {
		ch <- prometheus.MustNewConstMetric(v.desc, prometheus.CounterValue, f(), value)
	}
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
