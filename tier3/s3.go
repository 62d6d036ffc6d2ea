package tier3

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// S3Store keeps objects in an S3 bucket (or any S3-compatible server,
// MinIO included) through aws-sdk-go-v2. Keys are stored under prefix.
//
// Put sends the SHA-256 as x-amz-checksum-sha256, so the server rejects a
// body damaged in transit, and as the user metadata chronik-sha256, which
// Head and Get return and Get checks.
type S3Store struct {
	client *s3.Client
	bucket string
	prefix string // "" or ends in "/"
}

var _ ConditionalStore = (*S3Store)(nil)

// S3Options configures an S3Store. Empty fields take the AWS defaults:
// credentials from the default chain (AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY, AWS_PROFILE and shared config files, web
// identity, ECS and EC2 instance roles), region from AWS_REGION or the
// profile (us-east-1 when none is set and Endpoint is).
type S3Options struct {
	Bucket    string
	Prefix    string
	Region    string
	Endpoint  string // e.g. http://127.0.0.1:9000 (CHRONIK_S3_ENDPOINT)
	PathStyle bool   // bucket in the path, as MinIO wants (CHRONIK_S3_PATH_STYLE)
	// AccessKey and SecretKey, when both set, replace the default chain.
	AccessKey, SecretKey string
}

// NewS3Store returns a store for the bucket; it does not contact S3.
func NewS3Store(ctx context.Context, o S3Options) (*S3Store, error) {
	var opts []func(*config.LoadOptions) error
	if o.Region != "" {
		opts = append(opts, config.WithRegion(o.Region))
	}
	if o.AccessKey != "" && o.SecretKey != "" {
		opts = append(opts, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(o.AccessKey, o.SecretKey, "")))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("tier3: load AWS config: %w", err)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	// Checksums are Chronik's own (SHA-256 on Put; callers verify ranges):
	// the SDK's default CRC32 on every request would be a second pass.
	cfg.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
	cfg.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	client := s3.NewFromConfig(cfg, func(so *s3.Options) {
		if o.Endpoint != "" {
			so.BaseEndpoint = aws.String(o.Endpoint)
		}
		so.UsePathStyle = o.PathStyle
	})
	return &S3Store{client: client, bucket: o.Bucket, prefix: normPrefix(o.Prefix)}, nil
}

func normPrefix(p string) string {
	p = strings.Trim(p, "/")
	if p == "" {
		return ""
	}
	return p + "/"
}

func isNotFound(err error) bool {
	var re *awshttp.ResponseError
	if errors.As(err, &re) && re.HTTPStatusCode() == 404 {
		return true
	}
	var nsk *types.NoSuchKey
	var nf *types.NotFound
	return errors.As(err, &nsk) || errors.As(err, &nf)
}

func (s *S3Store) Put(ctx context.Context, key string, body io.ReadSeeker, size int64) (ObjectInfo, error) {
	return s.put(ctx, key, body, size, nil)
}

// PutIf implements ConditionalStore with S3's conditional writes (If-Match,
// If-None-Match: *).
func (s *S3Store) PutIf(ctx context.Context, key string, body io.ReadSeeker, size int64, ifMatch string) (ObjectInfo, error) {
	return s.put(ctx, key, body, size, &ifMatch)
}

func (s *S3Store) put(ctx context.Context, key string, body io.ReadSeeker, size int64, ifMatch *string) (ObjectInfo, error) {
	if err := checkKey(key); err != nil {
		return ObjectInfo{}, err
	}
	sum, err := hashBody(body, size)
	if err != nil {
		return ObjectInfo{}, err
	}
	raw, _ := hex.DecodeString(sum)
	in := &s3.PutObjectInput{
		Bucket:            aws.String(s.bucket),
		Key:               aws.String(s.prefix + key),
		Body:              body,
		ContentLength:     aws.Int64(size),
		ChecksumAlgorithm: types.ChecksumAlgorithmSha256,
		ChecksumSHA256:    aws.String(base64.StdEncoding.EncodeToString(raw)),
		Metadata:          map[string]string{metaSHA256: sum},
	}
	if ifMatch != nil && *ifMatch == "" {
		in.IfNoneMatch = aws.String("*")
	} else if ifMatch != nil {
		in.IfMatch = aws.String(quoteETag(*ifMatch))
	}
	out, err := s.client.PutObject(ctx, in)
	if err != nil {
		if ifMatch != nil && (isPreconditionFailed(err) || *ifMatch != "" && isNotFound(err)) {
			return ObjectInfo{}, fmt.Errorf("%w: s3://%s/%s%s", ErrPrecondition, s.bucket, s.prefix, key)
		}
		return ObjectInfo{}, fmt.Errorf("tier3: put s3://%s/%s%s: %w", s.bucket, s.prefix, key, err)
	}
	return ObjectInfo{Key: key, Size: size, SHA256: sum, ETag: unquoteETag(aws.ToString(out.ETag))}, nil
}

// isPreconditionFailed reports S3's answers to a conditional write that
// lost: 412 Precondition Failed, or 409 when a concurrent conditional
// write to the key was in progress. (An If-Match on a key that is gone
// gets 404.)
func isPreconditionFailed(err error) bool {
	var re *awshttp.ResponseError
	return errors.As(err, &re) && (re.HTTPStatusCode() == 412 || re.HTTPStatusCode() == 409)
}

func quoteETag(e string) string { return "\"" + e + "\"" }

func unquoteETag(e string) string { return strings.Trim(e, "\"") }

func (s *S3Store) Get(ctx context.Context, key string) (io.ReadCloser, ObjectInfo, error) {
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.prefix + key)})
	if err != nil {
		return nil, ObjectInfo{}, s.wrap("get", key, err)
	}
	info := ObjectInfo{Key: key, Size: aws.ToInt64(out.ContentLength), SHA256: out.Metadata[metaSHA256], ETag: unquoteETag(aws.ToString(out.ETag))}
	return newVerifyingReader(out.Body, info), info, nil
}

func (s *S3Store) GetRange(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	if off < 0 || length < 0 {
		return nil, fmt.Errorf("tier3: range %d+%d of %s is invalid", off, length, key)
	}
	if length == 0 {
		if _, err := s.Head(ctx, key); err != nil {
			return nil, err
		}
		return io.NopCloser(strings.NewReader("")), nil
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(s.bucket),
		Key:    aws.String(s.prefix + key),
		Range:  aws.String(fmt.Sprintf("bytes=%d-%d", off, off+length-1)),
	})
	if err != nil {
		return nil, s.wrap("get range of", key, err)
	}
	return out.Body, nil
}

func (s *S3Store) Head(ctx context.Context, key string) (ObjectInfo, error) {
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.prefix + key)})
	if err != nil {
		return ObjectInfo{}, s.wrap("head", key, err)
	}
	return ObjectInfo{Key: key, Size: aws.ToInt64(out.ContentLength), SHA256: out.Metadata[metaSHA256], ETag: unquoteETag(aws.ToString(out.ETag))}, nil
}

func (s *S3Store) List(ctx context.Context, prefix string) ([]ObjectInfo, error) {
	var out []ObjectInfo
	pg := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: aws.String(s.bucket), Prefix: aws.String(s.prefix + prefix)})
	for pg.HasMorePages() {
		page, err := pg.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("tier3: list s3://%s/%s%s: %w", s.bucket, s.prefix, prefix, err)
		}
		for _, o := range page.Contents {
			out = append(out, ObjectInfo{Key: strings.TrimPrefix(aws.ToString(o.Key), s.prefix), Size: aws.ToInt64(o.Size)})
		}
	}
	return out, nil
}

func (s *S3Store) Delete(ctx context.Context, key string) error {
	_, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.prefix + key)})
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("tier3: delete s3://%s/%s%s: %w", s.bucket, s.prefix, key, err)
	}
	return nil
}

func (s *S3Store) wrap(op, key string, err error) error {
	if isNotFound(err) {
		return fmt.Errorf("%w: s3://%s/%s%s", ErrNotFound, s.bucket, s.prefix, key)
	}
	return fmt.Errorf("tier3: %s s3://%s/%s%s: %w", op, s.bucket, s.prefix, key, err)
}
