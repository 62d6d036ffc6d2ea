package tier3_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/chronik-go/chronik/tier3"
	"github.com/chronik-go/chronik/tier3/miniotest"
)

// TestMinIOCreatesMissingBucket: brokers pointed at a fresh MinIO (docker
// compose up) create the bucket on their first upload, racing each other;
// a store without CreateBucket leaves a missing bucket missing.
func TestMinIOCreatesMissingBucket(t *testing.T) {
	srv := miniotest.Start(t)
	ctx := context.Background()
	open := func(bucket string, create bool) *tier3.MinIOStore {
		s, err := tier3.NewMinIOStore(tier3.MinIOOptions{
			Endpoint: srv.Endpoint(), Bucket: bucket, Prefix: "archive",
			AccessKey: miniotest.AccessKey, SecretKey: miniotest.SecretKey, CreateBucket: create,
		})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	plain := open("never-created", false)
	if _, err := plain.Put(ctx, "k", strings.NewReader("v"), 1); err == nil {
		t.Fatal("Put into a missing bucket without CreateBucket succeeded")
	}
	if _, err := plain.Head(ctx, "k"); !errors.Is(err, tier3.ErrNotFound) {
		t.Fatalf("Head in a missing bucket: %v, want ErrNotFound", err)
	}

	const writers = 4
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := fmt.Sprintf("body of %d", i)
			_, err := open("fresh", true).Put(ctx, fmt.Sprintf("k%d", i), strings.NewReader(body), int64(len(body)))
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Put that had to create the bucket: %v", err)
		}
	}
	got, err := open("fresh", false).List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != writers {
		t.Fatalf("listed %d objects after %d puts: %+v", len(got), writers, got)
	}
	for i := range writers {
		rc, info, err := open("fresh", false).Get(ctx, fmt.Sprintf("k%d", i))
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("body of %d", i); string(b) != want || info.Size != int64(len(want)) {
			t.Errorf("k%d = %q (%d bytes), want %q", i, b, info.Size, want)
		}
	}
}
