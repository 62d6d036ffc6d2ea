package tier3

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Object layout under a store's root (the URL's prefix):
//
//	cluster.json                                      ClusterInfo: the cluster the archive belongs to
//	topics/<topic-id-hex>/topic.json                  TopicInfo: name, partitions, configs
//	topics/<topic-id-hex>/<partition>/manifest.json   Manifest: the archived segments
//	topics/<topic-id-hex>/<partition>/<base>-<sha>.log        segment copies, named by
//	topics/<topic-id-hex>/<partition>/<base>-<sha>.index      base offset (20 digits) and the
//	topics/<topic-id-hex>/<partition>/<base>-<sha>.timeindex  first 16 hex digits of the
//	                                                          .log's SHA-256
//
// The segment files are tier2's formats byte for byte (tier2/doc.go).
// Naming them by content means an object, once a manifest names it, is
// never overwritten with other bytes: a re-upload of the same segment
// writes the same bytes, and anything else gets another name.
//
// # Manifest atomicity
//
// A partition's manifest is one object, replaced whole by one Put. S3 and
// MinIO make a PUT visible atomically (a GET returns the complete old or
// the complete new object, with strong read-after-write consistency); the
// file backend writes a temporary file, fsyncs it and renames it over the
// old one. Readers also check the SHA-256 stored with the object. An
// uploader writes and verifies (Head: size and SHA-256) every object of a
// segment before the manifest that names it, so a manifest never names a
// missing or partial object; an upload killed midway leaves objects no
// manifest names, which the next uploader of the partition deletes
// (Archive.Sweep) before it uploads anything. Generation counts the
// writes, so a reader can tell a newer manifest from an older one.
//
// # One writer: fencing by leader epoch
//
// Only the partition's leader writes its manifest, and every write names
// the leader epoch it was made under (LeaderEpoch). A leader loses its
// place without knowing it (paused, cut off), so two rules keep a deposed
// one from undoing its successor's work:
//
//   - a writer whose epoch is below the stored manifest's stops: the
//     partition has a newer leader;
//   - every write is conditional on the version the writer read (PutIf
//     with the ETag from the Get; "absent" for the first), on every store
//     that offers it (ConditionalStore: all of Chronik's backends). A write
//     that loses the race reads the manifest again and starts over.
//
// # One ordered log
//
// The segments of a manifest are contiguous and never overlap: each one
// starts where the previous one ends. Replicas seal at different offsets
// (segment.ms, WAL pinning, each its own high watermark), so a new leader's
// local segment may straddle the archive's end; it uploads only the part
// from that end on (a segment cut at a batch boundary). Manifests written
// before this rule may hold overlapping segments; LoadManifest reads them,
// dropping any segment another one wholly covers, and reads of an offset
// take the first segment that holds it.

// Manifest lists a partition's archived segments in offset order.
type Manifest struct {
	Version    int            `json:"version"`
	TopicID    string         `json:"topic_id"`
	Topic      string         `json:"topic"`
	Partition  int32          `json:"partition"`
	Generation int64          `json:"generation"`
	LogStart   int64          `json:"log_start"` // the partition's log start when written
	Segments   []SegmentEntry `json:"segments"`
	// LeaderEpoch is the leader epoch the manifest was written under (0
	// for a standalone broker and for manifests of earlier releases).
	LeaderEpoch int32 `json:"leader_epoch"`

	// Exists says the manifest was read from the store (or written to it);
	// ETag is the stored version, for the next conditional write.
	Exists bool   `json:"-"`
	ETag   string `json:"-"`
}

// SegmentEntry is one archived segment.
type SegmentEntry struct {
	Base     int64 `json:"base"`
	Next     int64 `json:"next"`
	Size     int64 `json:"size"`
	MaxTs    int64 `json:"max_ts"`
	MaxTsPos int64 `json:"max_ts_pos"`
	// Object names relative to the partition's prefix, and their SHA-256.
	Log             string `json:"log"`
	Index           string `json:"index"`
	TimeIndex       string `json:"timeindex"`
	LogSHA256       string `json:"log_sha256"`
	IndexSHA256     string `json:"index_sha256"`
	TimeIndexSHA256 string `json:"timeindex_sha256"`
	// ChunkCRC32C holds the CRC-32C of each ChunkSize piece of the .log
	// (the last one shorter): ranged reads are checked piece by piece.
	ChunkSize   int64    `json:"chunk_size"`
	ChunkCRC32C []uint32 `json:"chunk_crc32c"`
	// BatchesChecked is set when every batch's CRC was checked while the
	// segment was uploaded: reads then rely on the chunk CRCs alone. Reads
	// of segments archived without it check every batch they serve.
	BatchesChecked bool  `json:"batches_checked,omitempty"`
	Uploaded       int64 `json:"uploaded_ms"`
	// Aborted are the aborted transactions whose records lie in the
	// segment (a transaction may span several segments and is listed in
	// each): read_committed reads of the archive drop their records, even
	// on a broker that never held the segment.
	Aborted []AbortedTxn `json:"aborted,omitempty"`
}

// AbortedTxn is a producer's aborted transaction: its records from First
// up to its abort marker at Last.
type AbortedTxn struct {
	Producer int64 `json:"producer"`
	First    int64 `json:"first"`
	Last     int64 `json:"last"`
}

// End returns the offset after the last archived segment, or -1.
func (m *Manifest) End() int64 {
	if m == nil || len(m.Segments) == 0 {
		return -1
	}
	return m.Segments[len(m.Segments)-1].Next
}

// TopicInfo describes an archived topic, for restore.
type TopicInfo struct {
	Name       string            `json:"name"`
	ID         string            `json:"id"`
	Partitions int32             `json:"partitions"`
	Configs    map[string]string `json:"configs,omitempty"`
	Updated    int64             `json:"updated_ms"`
}

// TopicPrefix is the key prefix of a topic's objects.
func TopicPrefix(topicID [16]byte) string { return "topics/" + hex.EncodeToString(topicID[:]) + "/" }

// PartitionPrefix is the key prefix of a partition's objects.
func PartitionPrefix(topicID [16]byte, partition int32) string {
	return TopicPrefix(topicID) + strconv.Itoa(int(partition)) + "/"
}

const (
	manifestName    = "manifest.json"
	topicInfoName   = "topic.json"
	clusterInfoName = "cluster.json"
)

// ClusterInfo names the cluster an archive belongs to: the first broker to
// archive there claims it, and a broker of another cluster refuses it.
type ClusterInfo struct {
	ClusterID string `json:"cluster_id"`
	Claimed   int64  `json:"claimed_ms"`
}

// ReadClusterInfo reads the archive's cluster.json (ErrNotFound when no
// cluster has claimed it).
func ReadClusterInfo(ctx context.Context, s Store) (ClusterInfo, error) {
	b, _, err := ReadAll(ctx, s, clusterInfoName)
	if err != nil {
		return ClusterInfo{}, err
	}
	var ci ClusterInfo
	if err := json.Unmarshal(b, &ci); err != nil || ci.ClusterID == "" {
		return ClusterInfo{}, fmt.Errorf("%w: %s names no cluster (%v)", ErrChecksum, clusterInfoName, err)
	}
	return ci, nil
}

// ClaimCluster writes cluster.json naming id unless the archive is claimed
// already (on a store with conditional writes, even by a racing claim),
// and returns the archive's owner.
func ClaimCluster(ctx context.Context, s Store, id string) (ClusterInfo, error) {
	ci := ClusterInfo{ClusterID: id, Claimed: time.Now().UnixMilli()}
	b, err := json.MarshalIndent(ci, "", " ")
	if err != nil {
		return ClusterInfo{}, err
	}
	if cs, ok := s.(ConditionalStore); ok {
		_, err = cs.PutIf(ctx, clusterInfoName, bytes.NewReader(b), int64(len(b)), "")
		if errors.Is(err, ErrPrecondition) {
			return ReadClusterInfo(ctx, s)
		}
	} else {
		_, err = s.Put(ctx, clusterInfoName, bytes.NewReader(b), int64(len(b)))
	}
	if err != nil {
		return ClusterInfo{}, err
	}
	return ci, nil
}

func putJSON(ctx context.Context, s Store, key string, v any) error {
	b, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		return err
	}
	_, err = s.Put(ctx, key, bytes.NewReader(b), int64(len(b)))
	return err
}

// LoadManifest reads a partition's manifest; a partition never archived
// gets an empty one (Generation 0, Exists false). A manifest of an earlier
// release whose segments overlap is read with every segment that another
// one wholly covers dropped (see "One ordered log").
func LoadManifest(ctx context.Context, s Store, topicID [16]byte, partition int32) (*Manifest, error) {
	b, info, err := ReadAll(ctx, s, PartitionPrefix(topicID, partition)+manifestName)
	if errors.Is(err, ErrNotFound) {
		return &Manifest{Version: 1, TopicID: hex.EncodeToString(topicID[:]), Partition: partition}, nil
	}
	if err != nil {
		return nil, err
	}
	m, err := ParseManifest(b)
	if err != nil {
		return nil, fmt.Errorf("manifest of %x/%d: %w", topicID, partition, err)
	}
	m.Exists, m.ETag = true, info.ETag
	return m, nil
}

// ParseManifest decodes and checks a manifest's bytes (see LoadManifest).
func ParseManifest(b []byte) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrChecksum, err)
	}
	if m.Version != 1 {
		return nil, fmt.Errorf("tier3: manifest version %d; this release reads 1", m.Version)
	}
	segs := m.Segments[:0:0]
	for _, e := range m.Segments {
		if e.Next <= e.Base && e.Size > 0 {
			return nil, fmt.Errorf("tier3: manifest segment at %d ends at %d", e.Base, e.Next)
		}
		if n := len(segs); n > 0 {
			prev := segs[n-1]
			if e.Base < prev.Base {
				return nil, fmt.Errorf("tier3: manifest segments out of order at %d", e.Base)
			}
			if e.Next <= prev.Next {
				continue // wholly covered by prev (an earlier release's overlap)
			}
		}
		segs = append(segs, e)
	}
	m.Segments = segs
	return &m, nil
}

// Overlaps reports whether a segment starts before the previous one ends:
// a manifest an earlier release wrote, read as LoadManifest describes.
func (m *Manifest) Overlaps() bool {
	for i := 1; i < len(m.Segments); i++ {
		if m.Segments[i].Base < m.Segments[i-1].Next {
			return true
		}
	}
	return false
}

// Newer reports whether m was written after o: a later leader epoch, or
// the same epoch and a later generation.
func (m *Manifest) Newer(o *Manifest) bool {
	if m.LeaderEpoch != o.LeaderEpoch {
		return m.LeaderEpoch > o.LeaderEpoch
	}
	return m.Generation > o.Generation
}

// WriteManifest replaces the partition's manifest with m, provided the
// store still holds the version base was read at (base.ETag, or no
// manifest when !base.Exists); otherwise it fails with ErrPrecondition
// and writes nothing. Stores without conditional writes replace it
// unconditionally. On success m.Exists and m.ETag name the new version.
func WriteManifest(ctx context.Context, s Store, topicID [16]byte, base, m *Manifest) error {
	b, err := json.MarshalIndent(m, "", " ")
	if err != nil {
		return err
	}
	key := PartitionPrefix(topicID, m.Partition) + manifestName
	var info ObjectInfo
	if cs, ok := s.(ConditionalStore); ok {
		etag := ""
		if base.Exists {
			etag = base.ETag
		}
		info, err = cs.PutIf(ctx, key, bytes.NewReader(b), int64(len(b)), etag)
	} else {
		info, err = s.Put(ctx, key, bytes.NewReader(b), int64(len(b)))
	}
	if err != nil {
		return err
	}
	m.Exists, m.ETag = true, info.ETag
	return nil
}

// WriteTopicInfo records a topic's description beside its partitions.
func WriteTopicInfo(ctx context.Context, s Store, topicID [16]byte, ti TopicInfo) error {
	return putJSON(ctx, s, TopicPrefix(topicID)+topicInfoName, ti)
}

// FindTopic returns the most recently described archived topic named name.
func FindTopic(ctx context.Context, s Store, name string) (TopicInfo, [16]byte, error) {
	objs, err := s.List(ctx, "topics/")
	if err != nil {
		return TopicInfo{}, [16]byte{}, err
	}
	var best TopicInfo
	var bestID [16]byte
	found := false
	for _, o := range objs {
		rest, ok := strings.CutPrefix(o.Key, "topics/")
		idHex, file, _ := strings.Cut(rest, "/")
		if !ok || file != topicInfoName {
			continue
		}
		b, _, err := ReadAll(ctx, s, o.Key)
		if err != nil {
			return TopicInfo{}, [16]byte{}, err
		}
		var ti TopicInfo
		if err := json.Unmarshal(b, &ti); err != nil {
			return TopicInfo{}, [16]byte{}, fmt.Errorf("tier3: %s: %w", o.Key, err)
		}
		id, err := hex.DecodeString(idHex)
		if ti.Name != name || err != nil || len(id) != 16 || ti.ID != idHex {
			continue
		}
		if !found || ti.Updated > best.Updated {
			best, found = ti, true
			copy(bestID[:], id)
		}
	}
	if !found {
		return TopicInfo{}, [16]byte{}, fmt.Errorf("%w: no archived topic named %q", ErrNotFound, name)
	}
	return best, bestID, nil
}
