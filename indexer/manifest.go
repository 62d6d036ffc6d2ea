package indexer

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/chronik-go/chronik/tier3"
)

// Object layout, beside the archived segments (tier3/manifest.go):
//
//	topics/<topic-id-hex>/<partition>/search.json                 IndexManifest
//	topics/<topic-id-hex>/<partition>/<base>-<sha>.bleve          one segment's index
//
// An index object is a tar of a read-only Bleve (scorch) index directory,
// named by the segment's base offset (20 digits) and the first 16 hex
// digits of the object's own SHA-256: content-addressed like segments, so
// an object a manifest names is never overwritten with other bytes. The
// uploader writes and verifies (Head: size and SHA-256) the object before
// the index manifest that names it; the manifest is one object replaced
// whole by one Put, so readers see the old or the new list, never half of
// one. An entry names the segment it indexes by base offset and the
// .log's SHA-256: an index of a segment that was re-uploaded with other
// bytes does not match and is ignored (the segment is indexed on the fly).

// IndexManifest lists a partition's uploaded segment indexes.
type IndexManifest struct {
	Version    int          `json:"version"`
	TopicID    string       `json:"topic_id"`
	Partition  int32        `json:"partition"`
	Generation int64        `json:"generation"`
	Indexes    []IndexEntry `json:"indexes"`
}

// IndexEntry is one uploaded index.
type IndexEntry struct {
	Base      int64  `json:"base"`
	Next      int64  `json:"next"`
	LogSHA256 string `json:"log_sha256"` // the indexed segment's .log
	Object    string `json:"object"`     // relative to the partition's prefix
	SHA256    string `json:"sha256"`
	Size      int64  `json:"size"`
	Records   int64  `json:"records"`
	Mapping   int    `json:"mapping"` // mappingVersion it was built with
	Built     int64  `json:"built_ms"`
}

const indexManifestName = "search.json"

// maxIndexObject bounds an index object read back (and a tar's contents).
const maxIndexObject = 8 << 30

// LoadIndexManifest reads a partition's index manifest; a partition with
// none gets an empty one (Generation 0).
func LoadIndexManifest(ctx context.Context, s tier3.Store, topicID [16]byte, partition int32) (*IndexManifest, error) {
	b, _, err := tier3.ReadAll(ctx, s, tier3.PartitionPrefix(topicID, partition)+indexManifestName)
	if errors.Is(err, tier3.ErrNotFound) {
		return &IndexManifest{Version: 1, TopicID: hex.EncodeToString(topicID[:]), Partition: partition}, nil
	}
	if err != nil {
		return nil, err
	}
	var m IndexManifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: index manifest of %x/%d: %v", tier3.ErrChecksum, topicID, partition, err)
	}
	if m.Version != 1 {
		return nil, fmt.Errorf("indexer: index manifest of %x/%d has version %d; this release reads 1", topicID, partition, m.Version)
	}
	return &m, nil
}

// WriteIndexManifest replaces a partition's index manifest.
func WriteIndexManifest(ctx context.Context, s tier3.Store, topicID [16]byte, m *IndexManifest) error {
	b, err := json.MarshalIndent(m, "", " ")
	if err != nil {
		return err
	}
	_, err = s.Put(ctx, tier3.PartitionPrefix(topicID, m.Partition)+indexManifestName, bytes.NewReader(b), int64(len(b)))
	return err
}

// find returns the entry indexing segment e, if any.
func (m *IndexManifest) find(e *tier3.SegmentEntry) (*IndexEntry, bool) {
	i := sort.Search(len(m.Indexes), func(i int) bool { return m.Indexes[i].Base >= e.Base })
	if i < len(m.Indexes) && m.Indexes[i].Base == e.Base && m.Indexes[i].Next == e.Next &&
		m.Indexes[i].LogSHA256 == e.LogSHA256 && m.Indexes[i].Mapping == mappingVersion {
		return &m.Indexes[i], true
	}
	return nil, false
}

// packDir writes the index directory dir as a tar to w.
func packDir(dir string, w io.Writer) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("indexer: %s is not a regular file", path)
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := tw.WriteHeader(&tar.Header{Name: filepath.ToSlash(rel), Mode: 0o644, Size: info.Size(), Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err = io.Copy(tw, f)
		return err
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// unpack extracts an index tar into dir, refusing anything but regular
// files below it.
func unpack(r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	var total int64
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("indexer: index object: %w", err)
		}
		name := filepath.FromSlash(h.Name)
		if h.Typeflag != tar.TypeReg || !filepath.IsLocal(name) || strings.Contains(h.Name, "\\") {
			return fmt.Errorf("indexer: index object holds %q, not a file of an index", h.Name)
		}
		total += h.Size
		if h.Size < 0 || total > maxIndexObject {
			return fmt.Errorf("indexer: index object larger than %d bytes", int64(maxIndexObject))
		}
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		_, err = io.CopyN(f, tr, h.Size)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("indexer: index object: %w", err)
		}
	}
}
