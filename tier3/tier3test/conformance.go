// Package tier3test is the conformance suite every tier3.Store backend
// passes: the same behaviour from the in-memory store, the local
// filesystem, S3 (aws-sdk-go-v2) and MinIO (minio-go).
package tier3test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/chronik-go/chronik/tier3"
)

// Options tunes the suite for a backend.
type Options struct {
	// Corrupt, when set, damages one content byte of key in the backend
	// while keeping its stored checksum; the suite then checks that Get
	// reports tier3.ErrChecksum.
	Corrupt func(t *testing.T, key string, at int64)
}

// Run runs the suite. newStore returns an empty store (a fresh bucket,
// prefix or directory) each call.
func Run(t *testing.T, newStore func(t *testing.T) tier3.Store, opts Options) {
	ctx := func(t *testing.T) context.Context {
		c, cancel := context.WithTimeout(context.Background(), time.Minute)
		t.Cleanup(cancel)
		return c
	}
	put := func(t *testing.T, s tier3.Store, key string, data []byte) tier3.ObjectInfo {
		t.Helper()
		info, err := s.Put(ctx(t), key, bytes.NewReader(data), int64(len(data)))
		if err != nil {
			t.Fatalf("Put(%q): %v", key, err)
		}
		return info
	}
	sum := func(b []byte) string { h := sha256.Sum256(b); return hex.EncodeToString(h[:]) }
	random := func(n int) []byte { b := make([]byte, n); rand.Read(b); return b }

	t.Run("PutGetHead", func(t *testing.T) {
		s := newStore(t)
		for _, n := range []int{0, 1, 4096, 3<<20 + 17} {
			key := fmt.Sprintf("topics/a/0/obj-%d.log", n)
			data := random(n)
			info := put(t, s, key, data)
			if info.Size != int64(n) || info.SHA256 != sum(data) || info.Key != key {
				t.Fatalf("Put info = %+v, want size %d sha %s", info, n, sum(data))
			}
			got, ginfo, err := tier3.ReadAll(ctx(t), s, key)
			if err != nil {
				t.Fatalf("Get(%q): %v", key, err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("Get(%q) returned %d bytes that differ from the %d put", key, len(got), n)
			}
			if ginfo.SHA256 != sum(data) || ginfo.Size != int64(n) {
				t.Fatalf("Get info = %+v", ginfo)
			}
			h, err := s.Head(ctx(t), key)
			if err != nil || h.Size != int64(n) || h.SHA256 != sum(data) {
				t.Fatalf("Head(%q) = %+v, %v", key, h, err)
			}
		}
	})

	t.Run("Overwrite", func(t *testing.T) {
		s := newStore(t)
		put(t, s, "m/manifest.json", []byte("old"))
		put(t, s, "m/manifest.json", []byte("new, longer"))
		got, _, err := tier3.ReadAll(ctx(t), s, "m/manifest.json")
		if err != nil || string(got) != "new, longer" {
			t.Fatalf("after overwrite Get = %q, %v", got, err)
		}
	})

	t.Run("GetRange", func(t *testing.T) {
		s := newStore(t)
		data := random(1 << 20)
		put(t, s, "r/seg.log", data)
		for _, c := range []struct{ off, n, want int64 }{
			{0, 10, 10}, {100, 4096, 4096}, {1<<20 - 5, 100, 5}, {1 << 19, 1 << 19, 1 << 19}, {7, 0, 0},
		} {
			rc, err := s.GetRange(ctx(t), "r/seg.log", c.off, c.n)
			if err != nil {
				t.Fatalf("GetRange(%d, %d): %v", c.off, c.n, err)
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				t.Fatalf("GetRange(%d, %d) read: %v", c.off, c.n, err)
			}
			if int64(len(got)) != c.want || !bytes.Equal(got, data[c.off:c.off+c.want]) {
				t.Fatalf("GetRange(%d, %d) = %d bytes, want %d matching", c.off, c.n, len(got), c.want)
			}
		}
	})

	t.Run("NotFound", func(t *testing.T) {
		s := newStore(t)
		if _, _, err := s.Get(ctx(t), "no/such/key"); !errors.Is(err, tier3.ErrNotFound) {
			t.Fatalf("Get missing: %v, want ErrNotFound", err)
		}
		if _, err := s.GetRange(ctx(t), "no/such/key", 0, 10); !errors.Is(err, tier3.ErrNotFound) {
			t.Fatalf("GetRange missing: %v, want ErrNotFound", err)
		}
		if _, err := s.Head(ctx(t), "no/such/key"); !errors.Is(err, tier3.ErrNotFound) {
			t.Fatalf("Head missing: %v, want ErrNotFound", err)
		}
		if err := s.Delete(ctx(t), "no/such/key"); err != nil {
			t.Fatalf("Delete missing: %v, want nil", err)
		}
		if got, err := s.List(ctx(t), "no/such/"); err != nil || len(got) != 0 {
			t.Fatalf("List missing prefix = %v, %v", got, err)
		}
	})

	t.Run("ListDelete", func(t *testing.T) {
		s := newStore(t)
		keys := []string{"topics/t1/0/a.log", "topics/t1/0/b.log", "topics/t1/1/a.log", "topics/t10/0/a.log", "other/x"}
		for _, k := range keys {
			put(t, s, k, []byte(k))
		}
		list := func(prefix string) []string {
			t.Helper()
			infos, err := s.List(ctx(t), prefix)
			if err != nil {
				t.Fatalf("List(%q): %v", prefix, err)
			}
			var out []string
			for _, i := range infos {
				if i.Size != int64(len(i.Key)) {
					t.Fatalf("List(%q): %s has size %d, want %d", prefix, i.Key, i.Size, len(i.Key))
				}
				out = append(out, i.Key)
			}
			return out
		}
		eq := func(got []string, want ...string) {
			t.Helper()
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("List = %v, want %v", got, want)
			}
		}
		eq(list("topics/t1/"), "topics/t1/0/a.log", "topics/t1/0/b.log", "topics/t1/1/a.log")
		eq(list("topics/t1"), "topics/t1/0/a.log", "topics/t1/0/b.log", "topics/t1/1/a.log", "topics/t10/0/a.log")
		eq(list("topics/t1/0/a"), "topics/t1/0/a.log")
		eq(list(""), "other/x", "topics/t1/0/a.log", "topics/t1/0/b.log", "topics/t1/1/a.log", "topics/t10/0/a.log")
		if err := s.Delete(ctx(t), "topics/t1/0/a.log"); err != nil {
			t.Fatal(err)
		}
		eq(list("topics/t1/0/"), "topics/t1/0/b.log")
		if _, err := s.Head(ctx(t), "topics/t1/0/a.log"); !errors.Is(err, tier3.ErrNotFound) {
			t.Fatalf("Head after Delete: %v", err)
		}
	})

	t.Run("BadKeys", func(t *testing.T) {
		s := newStore(t)
		for _, k := range []string{"", "/abs", "a//b", "../escape", "a/../b", "dir/"} {
			if _, err := s.Put(ctx(t), k, bytes.NewReader(nil), 0); err == nil {
				t.Errorf("Put(%q) succeeded; want an error", k)
			}
		}
	})

	t.Run("ShortBody", func(t *testing.T) {
		s := newStore(t)
		if _, err := s.Put(ctx(t), "short", bytes.NewReader([]byte("abc")), 10); err == nil {
			t.Fatal("Put with a body shorter than size succeeded")
		}
		if _, err := s.Head(ctx(t), "short"); !errors.Is(err, tier3.ErrNotFound) {
			t.Fatalf("a failed Put left an object: %v", err)
		}
	})

	t.Run("Concurrent", func(t *testing.T) {
		s := newStore(t)
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for i := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				key := fmt.Sprintf("c/%d", i)
				data := bytes.Repeat([]byte{byte(i)}, 100_000)
				for range 3 {
					if _, err := s.Put(context.Background(), key, bytes.NewReader(data), int64(len(data))); err != nil {
						errs <- err
						return
					}
					got, _, err := tier3.ReadAll(context.Background(), s, key)
					if err != nil || !bytes.Equal(got, data) {
						errs <- fmt.Errorf("read back %s: %v (%d bytes)", key, err, len(got))
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	})

	t.Run("Conditional", func(t *testing.T) {
		cs, ok := newStore(t).(tier3.ConditionalStore)
		if !ok {
			t.Fatal("the backend does not implement tier3.ConditionalStore")
		}
		const key = "topics/c/0/manifest.json"
		putIf := func(data, ifMatch string) (tier3.ObjectInfo, error) {
			return cs.PutIf(ctx(t), key, bytes.NewReader([]byte(data)), int64(len(data)), ifMatch)
		}
		first, err := putIf("v1", "")
		if err != nil {
			t.Fatalf("PutIf of an absent key: %v", err)
		}
		if first.ETag == "" {
			t.Fatal("PutIf returned no ETag")
		}
		if _, err := putIf("v1 again", ""); !errors.Is(err, tier3.ErrPrecondition) {
			t.Fatalf("PutIf(absent) of an existing key: %v, want ErrPrecondition", err)
		}
		_, got, err := tier3.ReadAll(ctx(t), cs, key)
		if err != nil || got.ETag != first.ETag {
			t.Fatalf("Get after PutIf: ETag %q, %v; PutIf said %q", got.ETag, err, first.ETag)
		}
		second, err := putIf("v2, longer", first.ETag)
		if err != nil {
			t.Fatalf("PutIf with the current ETag: %v", err)
		}
		if h, err := cs.Head(ctx(t), key); err != nil || h.ETag != second.ETag || second.ETag == first.ETag {
			t.Fatalf("Head after the second PutIf: ETag %q, %v; want %q, not %q", h.ETag, err, second.ETag, first.ETag)
		}
		if _, err := putIf("stale", first.ETag); !errors.Is(err, tier3.ErrPrecondition) {
			t.Fatalf("PutIf with a stale ETag: %v, want ErrPrecondition", err)
		}
		if b, _, err := tier3.ReadAll(ctx(t), cs, key); err != nil || string(b) != "v2, longer" {
			t.Fatalf("a refused PutIf changed the object: %q, %v", b, err)
		}
		// Writers racing from the same version: exactly one wins.
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins, lost := 0, 0
		for i := range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := putIf(fmt.Sprintf("racer %d", i), second.ETag)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					wins++
				case errors.Is(err, tier3.ErrPrecondition):
					lost++
				default:
					t.Errorf("racing PutIf: %v", err)
				}
			}()
		}
		wg.Wait()
		if wins != 1 || lost != 5 {
			t.Fatalf("6 PutIf from one version: %d won, %d refused; want 1 and 5", wins, lost)
		}
		if err := cs.Delete(ctx(t), key); err != nil {
			t.Fatal(err)
		}
		if _, err := putIf("after delete", second.ETag); !errors.Is(err, tier3.ErrPrecondition) {
			t.Fatalf("PutIf(etag) of a deleted key: %v, want ErrPrecondition", err)
		}
	})

	if opts.Corrupt != nil {
		t.Run("Corrupt", func(t *testing.T) {
			s := newStore(t)
			data := random(64 << 10)
			put(t, s, "bad/seg.log", data)
			opts.Corrupt(t, "bad/seg.log", 1234)
			rc, _, err := s.Get(ctx(t), "bad/seg.log")
			if err == nil {
				_, err = io.ReadAll(rc)
				rc.Close()
			}
			if !errors.Is(err, tier3.ErrChecksum) {
				t.Fatalf("Get of a damaged object: %v, want ErrChecksum", err)
			}
		})
	}
}
