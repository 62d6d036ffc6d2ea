package tier3_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/chronik-go/chronik/tier3"
	"github.com/chronik-go/chronik/tier3/miniotest"
	"github.com/chronik-go/chronik/tier3/tier3test"
)

func TestConformanceMem(t *testing.T) {
	var mu sync.Mutex
	stores := map[*testing.T]*tier3.MemStore{}
	tier3test.Run(t, func(t *testing.T) tier3.Store {
		s := tier3.NewMemStore()
		mu.Lock()
		stores[t] = s
		mu.Unlock()
		return s
	}, tier3test.Options{Corrupt: func(t *testing.T, key string, at int64) {
		mu.Lock()
		s := stores[t]
		mu.Unlock()
		if err := s.Corrupt(key, at); err != nil {
			t.Fatal(err)
		}
	}})
}

func TestConformanceFile(t *testing.T) {
	var mu sync.Mutex
	stores := map[*testing.T]*tier3.FileStore{}
	tier3test.Run(t, func(t *testing.T) tier3.Store {
		s, err := tier3.NewFileStore(t.TempDir(), nil)
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		stores[t] = s
		mu.Unlock()
		return s
	}, tier3test.Options{Corrupt: func(t *testing.T, key string, at int64) {
		mu.Lock()
		s := stores[t]
		mu.Unlock()
		if err := s.CorruptFile(key, at); err != nil {
			t.Fatal(err)
		}
	}})
}

// minioConformance runs the suite against a real MinIO server through one
// of the two S3 client libraries.
func minioConformance(t *testing.T, open func(srv *miniotest.Server, t *testing.T, bucket string) tier3.Store) {
	srv := miniotest.Start(t)
	var mu sync.Mutex
	buckets := map[*testing.T]string{}
	tier3test.Run(t, func(t *testing.T) tier3.Store {
		b := srv.NewBucket(t)
		mu.Lock()
		buckets[t] = b
		mu.Unlock()
		return open(srv, t, b)
	}, tier3test.Options{Corrupt: func(t *testing.T, key string, at int64) {
		mu.Lock()
		b := buckets[t]
		mu.Unlock()
		srv.Corrupt(t, b, key, at)
	}})
}

func TestConformanceMinIO(t *testing.T) {
	minioConformance(t, func(srv *miniotest.Server, t *testing.T, bucket string) tier3.Store {
		return srv.Store(t, bucket)
	})
}

func TestConformanceS3OnMinIO(t *testing.T) {
	minioConformance(t, func(srv *miniotest.Server, t *testing.T, bucket string) tier3.Store {
		return srv.S3Store(t, bucket)
	})
}

// TestOpenURLs checks each CHRONIK_TIER3_URL form reaches a working
// backend, with the environment variables DESIGN.md names.
func TestOpenURLs(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := tier3.OpenEnv(ctx, "file://"+dir, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.(*tier3.FileStore); !ok {
		t.Fatalf("file:// opened %T", s)
	}
	for _, bad := range []string{"ftp://x", "file://host/path", "s3:///prefix", "minio://host/bucket", "minio://host:9000/"} {
		if _, err := tier3.OpenEnv(ctx, bad, func(string) string { return "x" }); err == nil {
			t.Errorf("Open(%q) succeeded", bad)
		}
	}
	if _, err := tier3.OpenEnv(ctx, "minio://127.0.0.1:9/b", func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "AWS_ACCESS_KEY_ID") {
		t.Errorf("minio:// without credentials: %v", err)
	}

	srv := miniotest.Start(t)
	bucket := srv.NewBucket(t)
	envs := map[string]map[string]string{
		"s3 (aws-sdk-go-v2) via CHRONIK_S3_ENDPOINT": {
			"url": "s3://" + bucket + "/pre/fix", "CHRONIK_S3_ENDPOINT": "http://" + srv.Endpoint(), "CHRONIK_S3_PATH_STYLE": "true",
			"AWS_ACCESS_KEY_ID": miniotest.AccessKey, "AWS_SECRET_ACCESS_KEY": miniotest.SecretKey, "AWS_REGION": "us-east-1",
		},
		"minio with AWS_* keys": {
			"url": srv.URL(bucket, "pre/fix"), "AWS_ACCESS_KEY_ID": miniotest.AccessKey, "AWS_SECRET_ACCESS_KEY": miniotest.SecretKey,
		},
		"minio with MINIO_ROOT_* keys": {
			"url": srv.URL(bucket, "pre/fix"), "MINIO_ROOT_USER": miniotest.AccessKey, "MINIO_ROOT_PASSWORD": miniotest.SecretKey,
		},
	}
	for name, env := range envs {
		t.Run(name, func(t *testing.T) {
			// The SDK's default chain also reads the process environment.
			for k, v := range env {
				if strings.HasPrefix(k, "AWS_") {
					t.Setenv(k, v)
				}
			}
			s, err := tier3.OpenEnv(ctx, env["url"], func(k string) string { return env[k] })
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Put(ctx, "k", strings.NewReader("v"), 1); err != nil {
				t.Fatal(err)
			}
			// The prefix is part of the object's name in the bucket.
			if _, err := srv.Store(t, bucket).Head(ctx, "pre/fix/k"); err != nil {
				t.Fatalf("object not under the URL's prefix: %v", err)
			}
		})
	}
}
