package broker

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/chronik-go/chronik/internal/vfs"
)

// metaFile holds the broker's durable metadata: the data directory's
// identity (cluster ID, storage ID), every topic (ID, partition count,
// configs), the topics whose deletion is recorded, and the producer-ID
// high-water mark. It is small and rewritten whole: temp file, fsync,
// rename, fsync of the directory, so a crash leaves the old or the new
// version, never a mix.
const metaFile = "meta.json"

// metaVersion 2 added the identity fields: ClusterID is authoritative (in
// version 1 a cluster broker's was a random ID nobody else knew), Member,
// StorageID and DeletedTopics.
const metaVersion = 2

type metaState struct {
	Version int `json:"version"`
	// ClusterID is the cluster this data directory belongs to: a
	// standalone broker's own, or the controller quorum's once a cluster
	// broker joined it ("" until then). A broker never serves a data
	// directory under another cluster's controller (identity.go).
	ClusterID string `json:"cluster_id"`
	// Member says the directory has joined its cluster's controller quorum
	// (as opposed to a standalone broker's, which may grow into a cluster).
	Member bool `json:"member,omitempty"`
	// StorageID is chosen when the directory is created: a broker whose
	// disk was replaced or wiped comes back with another, and the
	// controller takes its replicas for empty.
	StorageID string `json:"storage_id"`
	// NextProducerID: every ID below it may have been handed out; a restart
	// continues from here so no ID is reused.
	NextProducerID int64       `json:"next_producer_id"`
	Topics         []metaTopic `json:"topics"`
	// DeletedTopics are the IDs of topics whose deletion was recorded (by
	// DeleteTopics standalone, by the controller in a cluster) and whose
	// partition directories may still be on disk: the only directories
	// retention's cleanup removes. An unknown directory is left alone.
	DeletedTopics []string `json:"deleted_topics,omitempty"`
	// Parked are local topics whose name the controller gave to another
	// topic: no longer served, their data left on disk for the operator.
	Parked []metaTopic `json:"parked_topics,omitempty"`
}

type metaTopic struct {
	Name       string            `json:"name"`
	ID         string            `json:"id"` // 32 hex digits
	Partitions int32             `json:"partitions"`
	Configs    map[string]string `json:"configs,omitempty"`
}

// loadMeta reads the data directory's metadata, creating it for a new
// directory: a standalone broker names its own cluster, a cluster broker's
// directory has no cluster ID until the controller's (identity.go). A
// version 1 file is upgraded; its cluster ID is kept unless the directory
// was already a cluster member (hadRaft), whose version 1 ID was never the
// cluster's.
func loadMeta(fs vfs.FS, dir string, cluster, hadRaft bool) (metaState, error) {
	var st metaState
	f, err := fs.OpenFile(filepath.Join(dir, metaFile), os.O_RDONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		st.Version = metaVersion
		st.StorageID = newClusterID()
		if !cluster {
			st.ClusterID = newClusterID()
		}
		st.NextProducerID = 1
		return st, saveMeta(fs, dir, &st)
	}
	if err != nil {
		return st, fmt.Errorf("broker: open metadata: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return st, fmt.Errorf("broker: stat metadata: %w", err)
	}
	buf := make([]byte, fi.Size())
	if _, err := f.ReadAt(buf, 0); err != nil && !errors.Is(err, io.EOF) {
		return st, fmt.Errorf("broker: read metadata: %w", err)
	}
	if err := json.Unmarshal(buf, &st); err != nil {
		return st, fmt.Errorf("broker: metadata file %s is corrupt (%v); restore it from a backup or move the data dir aside", metaFile, err)
	}
	if st.Version > metaVersion {
		return st, fmt.Errorf("broker: metadata file %s has version %d; this release reads up to %d: run a newer release", metaFile, st.Version, metaVersion)
	}
	if st.Version < metaVersion {
		if cluster && hadRaft {
			st.ClusterID = ""
		}
		if st.StorageID == "" {
			st.StorageID = newClusterID()
		}
		st.Version = metaVersion
		if err := saveMeta(fs, dir, &st); err != nil {
			return st, err
		}
	}
	return st, nil
}

func saveMeta(fs vfs.FS, dir string, st *metaState) error {
	sort.Slice(st.Topics, func(i, j int) bool { return st.Topics[i].Name < st.Topics[j].Name })
	buf, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(fs, filepath.Join(dir, metaFile), buf)
}

// readFile reads a small file whole.
func readFile(fs vfs.FS, path string) ([]byte, error) {
	f, err := fs.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	buf := make([]byte, fi.Size())
	if _, err := f.ReadAt(buf, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return buf, nil
}

// writeFileAtomic replaces path with data: a temporary file, fsynced,
// renamed over it, and the directory fsynced, so a crash leaves the old or
// the new content, never a mix.
func writeFileAtomic(fs vfs.FS, path string, data []byte) error {
	return writeFileAtomicPerm(fs, path, data, 0o644)
}

// writeFileAtomicPerm is writeFileAtomic creating the file with perm.
func writeFileAtomicPerm(fs vfs.FS, path string, data []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	f, err := fs.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_RDWR, perm)
	if err != nil {
		return fmt.Errorf("broker: write %s: %w", filepath.Base(path), err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("broker: write %s: %w", filepath.Base(path), err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("broker: sync %s: %w", filepath.Base(path), err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("broker: close %s: %w", filepath.Base(path), err)
	}
	if err := fs.Rename(tmp, path); err != nil {
		return fmt.Errorf("broker: rename %s: %w", filepath.Base(path), err)
	}
	if err := fs.SyncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("broker: sync the directory of %s: %w", filepath.Base(path), err)
	}
	return nil
}

func newClusterID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func newTopicID() [16]byte {
	var id [16]byte
	_, _ = rand.Read(id[:])
	id[6] = id[6]&0x0f | 0x40 // UUID v4, as Kafka's topic IDs
	id[8] = id[8]&0x3f | 0x80
	return id
}

func parseTopicID(s string) ([16]byte, error) {
	var id [16]byte
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 16 {
		return id, fmt.Errorf("broker: bad topic id %q in metadata", s)
	}
	copy(id[:], b)
	return id, nil
}
