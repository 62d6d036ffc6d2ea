package tier3

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
)

// Open returns the Store a CHRONIK_TIER3_URL names, reading the other
// settings from the environment:
//
//	file:///abs/path                  FileStore rooted there
//	s3://bucket/prefix                S3Store (aws-sdk-go-v2): AWS credential
//	                                  chain and AWS_REGION; CHRONIK_S3_ENDPOINT
//	                                  (e.g. http://127.0.0.1:9000) and
//	                                  CHRONIK_S3_PATH_STYLE=true for MinIO and
//	                                  other S3-compatible servers
//	minio://host:port/bucket/prefix   MinIOStore (minio-go), plain HTTP unless
//	                                  ?secure=true; keys from AWS_ACCESS_KEY_ID
//	                                  and AWS_SECRET_ACCESS_KEY, else
//	                                  MINIO_ROOT_USER and MINIO_ROOT_PASSWORD;
//	                                  region from AWS_REGION (optional); the
//	                                  bucket is created by the first upload
//	                                  that finds it missing
func Open(ctx context.Context, rawURL string) (Store, error) {
	return OpenEnv(ctx, rawURL, os.Getenv)
}

// OpenEnv is Open with the environment given as a lookup function.
func OpenEnv(ctx context.Context, rawURL string, getenv func(string) string) (Store, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("tier3: %q is not a URL: %w", rawURL, err)
	}
	switch u.Scheme {
	case "file":
		if u.Host != "" || u.Path == "" {
			return nil, fmt.Errorf("tier3: %q is not a file URL with an absolute path", rawURL)
		}
		return NewFileStore(u.Path, nil)
	case "s3":
		if u.Host == "" {
			return nil, fmt.Errorf("tier3: %q names no bucket: write s3://bucket/prefix", rawURL)
		}
		pathStyle := false
		if v := getenv("CHRONIK_S3_PATH_STYLE"); v != "" {
			if pathStyle, err = strconv.ParseBool(v); err != nil {
				return nil, fmt.Errorf("tier3: CHRONIK_S3_PATH_STYLE=%q is not true or false", v)
			}
		}
		return NewS3Store(ctx, S3Options{
			Bucket:    u.Host,
			Prefix:    u.Path,
			Endpoint:  getenv("CHRONIK_S3_ENDPOINT"),
			PathStyle: pathStyle,
		})
	case "minio":
		bucket, prefix, _ := strings.Cut(strings.TrimPrefix(u.Path, "/"), "/")
		if u.Host == "" || u.Port() == "" || bucket == "" {
			return nil, fmt.Errorf("tier3: %q is not minio://host:port/bucket/prefix", rawURL)
		}
		ak, sk := getenv("AWS_ACCESS_KEY_ID"), getenv("AWS_SECRET_ACCESS_KEY")
		if ak == "" || sk == "" {
			ak, sk = getenv("MINIO_ROOT_USER"), getenv("MINIO_ROOT_PASSWORD")
		}
		if ak == "" || sk == "" {
			return nil, errNoCredentials
		}
		secure, _ := strconv.ParseBool(u.Query().Get("secure"))
		return NewMinIOStore(MinIOOptions{
			Endpoint: u.Host, Secure: secure, Bucket: bucket, Prefix: prefix,
			AccessKey: ak, SecretKey: sk, Region: getenv("AWS_REGION"),
			CreateBucket: true,
		})
	}
	return nil, fmt.Errorf("tier3: %q has no supported scheme: use file://, s3:// or minio://", rawURL)
}
