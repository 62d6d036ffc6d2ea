package tier3

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
)

// Errors returned by every Store.
var (
	// ErrNotFound is returned (wrapped) for a key that holds no object.
	ErrNotFound = errors.New("tier3: object not found")
	// ErrChecksum marks bytes that do not match the checksum stored with
	// their object: they are never returned as good data.
	ErrChecksum = errors.New("tier3: checksum mismatch")
	// ErrPrecondition is returned (wrapped) by PutIf when the object is not
	// the version the caller named: someone else wrote it first.
	ErrPrecondition = errors.New("tier3: object changed since it was read")
)

// Store is object storage: a flat namespace of immutable objects named by
// slash-separated keys. Put replaces an object whole and atomically: a
// concurrent or later Get sees the old object or the new one, never a mix
// (S3 and MinIO PUT semantics; the file backend renames a complete,
// fsynced file into place). Every object carries the SHA-256 of its
// content, computed by Put and checked by Get.
//
// Implementations are safe for concurrent use.
type Store interface {
	// Put stores size bytes read from body under key. body is read twice
	// (once to checksum, once to send), hence the Seeker.
	Put(ctx context.Context, key string, body io.ReadSeeker, size int64) (ObjectInfo, error)
	// Get returns the whole object. The reader fails with ErrChecksum at
	// the end instead of io.EOF when the content does not match.
	Get(ctx context.Context, key string) (io.ReadCloser, ObjectInfo, error)
	// GetRange returns length bytes from off (fewer at the end of the
	// object). A range cannot be checked against the whole-object
	// checksum: callers verify ranges with their own checksums.
	GetRange(ctx context.Context, key string, off, length int64) (io.ReadCloser, error)
	// Head returns the object's size and checksum.
	Head(ctx context.Context, key string) (ObjectInfo, error)
	// List returns the objects whose keys start with prefix, in key order.
	List(ctx context.Context, prefix string) ([]ObjectInfo, error)
	// Delete removes the object; deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error
}

// ObjectInfo describes one object.
type ObjectInfo struct {
	Key    string
	Size   int64
	SHA256 string // hex; empty in List results of backends that do not return metadata
	// ETag names this version of the object for PutIf (the server's ETag
	// in S3 and MinIO, the content's SHA-256 elsewhere). Empty in List
	// results.
	ETag string
}

// ConditionalStore is a Store that can replace an object only if it is
// still the version the caller read: the fencing of a partition's
// manifest against a deposed writer (manifest.go). Every backend here
// implements it; a Store without it gets unconditional writes guarded by
// the leader epoch check alone.
type ConditionalStore interface {
	Store
	// PutIf is Put, done only if the key currently holds the version
	// ifMatch (an ETag from Get, Head or Put), or, with ifMatch empty,
	// only if the key holds no object. Otherwise it fails with an error
	// wrapping ErrPrecondition and stores nothing.
	PutIf(ctx context.Context, key string, body io.ReadSeeker, size int64, ifMatch string) (ObjectInfo, error)
}

// metaSHA256 is the user metadata key holding an object's SHA-256 in S3
// and MinIO (x-amz-meta-chronik-sha256).
const metaSHA256 = "chronik-sha256"

// hashBody computes body's SHA-256 and rewinds it.
func hashBody(body io.ReadSeeker, size int64) (string, error) {
	h := sha256.New()
	n, err := io.Copy(h, body)
	if err != nil {
		return "", fmt.Errorf("tier3: read body: %w", err)
	}
	if n != size {
		return "", fmt.Errorf("tier3: body is %d bytes, not %d", n, size)
	}
	if _, err := body.Seek(0, io.SeekStart); err != nil {
		return "", fmt.Errorf("tier3: rewind body: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// verifyingReader passes an object's bytes through and checks its size
// and SHA-256 when the stream ends.
type verifyingReader struct {
	rc   io.ReadCloser
	h    hash.Hash
	n    int64
	info ObjectInfo
}

func newVerifyingReader(rc io.ReadCloser, info ObjectInfo) io.ReadCloser {
	return &verifyingReader{rc: rc, h: sha256.New(), info: info}
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	n, err := v.rc.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if err == io.EOF {
		if v.n != v.info.Size {
			return n, fmt.Errorf("%w: %s: got %d bytes, want %d", ErrChecksum, v.info.Key, v.n, v.info.Size)
		}
		if v.info.SHA256 != "" && hex.EncodeToString(v.h.Sum(nil)) != v.info.SHA256 {
			return n, fmt.Errorf("%w: %s: sha256 differs from the stored one", ErrChecksum, v.info.Key)
		}
	}
	return n, err
}

func (v *verifyingReader) Close() error { return v.rc.Close() }

// ReadAll reads a whole object, verified.
func ReadAll(ctx context.Context, s Store, key string) ([]byte, ObjectInfo, error) {
	rc, info, err := s.Get(ctx, key)
	if err != nil {
		return nil, info, err
	}
	defer rc.Close()
	buf := make([]byte, 0, info.Size)
	buf, err = readAllInto(rc, buf)
	return buf, info, err
}

func readAllInto(r io.Reader, buf []byte) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}
