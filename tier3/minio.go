package tier3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// MinIOStore keeps objects in a MinIO (or other S3-compatible) bucket
// through minio-go. Keys are stored under prefix. Put sends Content-MD5,
// so the server rejects a body damaged in transit, and the SHA-256 as the
// user metadata chronik-sha256, which Head and Get return and Get checks.
type MinIOStore struct {
	client       *minio.Client
	bucket       string
	prefix       string // "" or ends in "/"
	region       string
	createBucket bool
}

var _ ConditionalStore = (*MinIOStore)(nil)

// MinIOOptions configures a MinIOStore.
type MinIOOptions struct {
	Endpoint             string // host:port
	Secure               bool   // https
	Bucket, Prefix       string
	AccessKey, SecretKey string
	Region               string
	// CreateBucket makes a Put that finds the bucket missing create it and
	// try once more, so a fresh MinIO (docker compose up) needs no setup
	// step. Reads of a missing bucket still find nothing.
	CreateBucket bool
}

// NewMinIOStore returns a store for the bucket; it does not contact the
// server.
func NewMinIOStore(o MinIOOptions) (*MinIOStore, error) {
	tr, err := minio.DefaultTransport(o.Secure)
	if err != nil {
		return nil, fmt.Errorf("tier3: minio transport: %w", err)
	}
	tr.MaxIdleConnsPerHost = 64
	c, err := minio.New(o.Endpoint, &minio.Options{
		Creds:     credentials.NewStaticV4(o.AccessKey, o.SecretKey, ""),
		Secure:    o.Secure,
		Region:    o.Region,
		Transport: tr,
	})
	if err != nil {
		return nil, fmt.Errorf("tier3: minio client for %s: %w", o.Endpoint, err)
	}
	return &MinIOStore{client: c, bucket: o.Bucket, prefix: normPrefix(o.Prefix), region: o.Region, createBucket: o.CreateBucket}, nil
}

// Client returns the minio-go client (tests use it to create buckets and
// to damage objects).
func (s *MinIOStore) Client() *minio.Client { return s.client }

func minioNotFound(err error) bool {
	r := minio.ToErrorResponse(err)
	return r.StatusCode == http.StatusNotFound || r.Code == minio.NoSuchKey
}

func (s *MinIOStore) wrap(op, key string, err error) error {
	if minioNotFound(err) {
		return fmt.Errorf("%w: minio %s/%s%s", ErrNotFound, s.bucket, s.prefix, key)
	}
	return fmt.Errorf("tier3: %s minio %s/%s%s: %w", op, s.bucket, s.prefix, key, err)
}

func userSHA256(m map[string]string) string {
	for k, v := range m {
		if strings.EqualFold(k, metaSHA256) || strings.EqualFold(k, "X-Amz-Meta-"+metaSHA256) {
			return v
		}
	}
	return ""
}

func (s *MinIOStore) Put(ctx context.Context, key string, body io.ReadSeeker, size int64) (ObjectInfo, error) {
	return s.put(ctx, key, body, size, nil)
}

// PutIf implements ConditionalStore with conditional PUTs (If-Match,
// If-None-Match: *).
func (s *MinIOStore) PutIf(ctx context.Context, key string, body io.ReadSeeker, size int64, ifMatch string) (ObjectInfo, error) {
	return s.put(ctx, key, body, size, &ifMatch)
}

func (s *MinIOStore) put(ctx context.Context, key string, body io.ReadSeeker, size int64, ifMatch *string) (ObjectInfo, error) {
	if err := checkKey(key); err != nil {
		return ObjectInfo{}, err
	}
	sum, err := hashBody(body, size)
	if err != nil {
		return ObjectInfo{}, err
	}
	var etag string
	put := func() error {
		opts := minio.PutObjectOptions{
			UserMetadata:   map[string]string{metaSHA256: sum},
			SendContentMd5: true,
			PartSize:       64 << 20,
			ContentType:    "application/octet-stream",
		}
		if ifMatch != nil && *ifMatch == "" {
			opts.SetMatchETagExcept("*")
		} else if ifMatch != nil {
			opts.SetMatchETag(*ifMatch)
		}
		info, err := s.client.PutObject(ctx, s.bucket, s.prefix+key, body, size, opts)
		etag = info.ETag
		return err
	}
	err = put()
	if err != nil && s.createBucket && minio.ToErrorResponse(err).Code == minio.NoSuchBucket {
		if err = s.makeBucket(ctx); err == nil {
			if _, err = body.Seek(0, io.SeekStart); err != nil {
				return ObjectInfo{}, fmt.Errorf("tier3: rewind body: %w", err)
			}
			err = put()
		}
	}
	if err != nil {
		r := minio.ToErrorResponse(err)
		lost := r.StatusCode == http.StatusPreconditionFailed || r.StatusCode == http.StatusConflict ||
			(ifMatch != nil && *ifMatch != "" && minioNotFound(err)) // If-Match on a key that is gone
		if ifMatch != nil && lost {
			return ObjectInfo{}, fmt.Errorf("%w: minio %s/%s%s", ErrPrecondition, s.bucket, s.prefix, key)
		}
		return ObjectInfo{}, s.wrap("put", key, err)
	}
	return ObjectInfo{Key: key, Size: size, SHA256: sum, ETag: unquoteETag(etag)}, nil
}

// makeBucket creates the store's bucket. Several brokers sharing a fresh
// bucket race to create it; losing that race is success.
func (s *MinIOStore) makeBucket(ctx context.Context) error {
	err := s.client.MakeBucket(ctx, s.bucket, minio.MakeBucketOptions{Region: s.region})
	switch minio.ToErrorResponse(err).Code {
	case minio.BucketAlreadyOwnedByYou, minio.BucketAlreadyExists:
		return nil
	}
	if err != nil {
		return fmt.Errorf("create bucket: %w", err)
	}
	return nil
}

// Get and GetRange use minio.Core: one request whose body is the object.
// minio.Client's lazy Object re-requests with If-Match on later reads,
// which fails when a manifest is replaced between the two.
func (s *MinIOStore) Get(ctx context.Context, key string) (io.ReadCloser, ObjectInfo, error) {
	body, st, _, err := minio.Core{Client: s.client}.GetObject(ctx, s.bucket, s.prefix+key, minio.GetObjectOptions{})
	if err != nil {
		return nil, ObjectInfo{}, s.wrap("get", key, err)
	}
	info := ObjectInfo{Key: key, Size: st.Size, SHA256: userSHA256(st.UserMetadata), ETag: unquoteETag(st.ETag)}
	return newVerifyingReader(body, info), info, nil
}

func (s *MinIOStore) GetRange(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	if off < 0 || length < 0 {
		return nil, fmt.Errorf("tier3: range %d+%d of %s is invalid", off, length, key)
	}
	if length == 0 {
		if _, err := s.Head(ctx, key); err != nil {
			return nil, err
		}
		return io.NopCloser(strings.NewReader("")), nil
	}
	opts := minio.GetObjectOptions{}
	if err := opts.SetRange(off, off+length-1); err != nil {
		return nil, err
	}
	body, _, _, err := minio.Core{Client: s.client}.GetObject(ctx, s.bucket, s.prefix+key, opts)
	if err != nil {
		return nil, s.wrap("get range of", key, err)
	}
	return body, nil
}

func (s *MinIOStore) Head(ctx context.Context, key string) (ObjectInfo, error) {
	st, err := s.client.StatObject(ctx, s.bucket, s.prefix+key, minio.StatObjectOptions{})
	if err != nil {
		return ObjectInfo{}, s.wrap("head", key, err)
	}
	return ObjectInfo{Key: key, Size: st.Size, SHA256: userSHA256(st.UserMetadata), ETag: unquoteETag(st.ETag)}, nil
}

func (s *MinIOStore) List(ctx context.Context, prefix string) ([]ObjectInfo, error) {
	var out []ObjectInfo
	for o := range s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.prefix + prefix, Recursive: true}) {
		if o.Err != nil {
			return nil, fmt.Errorf("tier3: list minio %s/%s%s: %w", s.bucket, s.prefix, prefix, o.Err)
		}
		out = append(out, ObjectInfo{Key: strings.TrimPrefix(o.Key, s.prefix), Size: o.Size})
	}
	return out, nil
}

func (s *MinIOStore) Delete(ctx context.Context, key string) error {
	err := s.client.RemoveObject(ctx, s.bucket, s.prefix+key, minio.RemoveObjectOptions{})
	if err != nil && !minioNotFound(err) {
		return fmt.Errorf("tier3: delete minio %s/%s%s: %w", s.bucket, s.prefix, key, err)
	}
	return nil
}

// errNoCredentials says how to give minio:// its keys.
var errNoCredentials = errors.New("tier3: minio:// needs credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or MINIO_ROOT_USER and MINIO_ROOT_PASSWORD")
