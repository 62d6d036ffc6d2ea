package ops

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func startHTTP(t *testing.T, cfg HTTPConfig) (*HTTPServer, string) {
	t.Helper()
	cfg.Addr = "127.0.0.1:0"
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	s := NewHTTPServer(cfg)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, "http://" + s.Addr().String()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

func TestHTTPHealthAndReadiness(t *testing.T) {
	s, base := startHTTP(t, HTTPConfig{})
	if code, _ := get(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d; want 200", code)
	}
	if code, body := get(t, base+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "starting") {
		t.Errorf("/readyz before a readiness check = %d %q; want 503 starting", code, body)
	}
	s.SetReadiness(func() error { return errors.New("recovering the wal") })
	if code, body := get(t, base+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "recovering the wal") {
		t.Errorf("/readyz while not ready = %d %q; want 503 with the reason", code, body)
	}
	s.SetReadiness(func() error { return nil })
	if code, _ := get(t, base+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz when ready = %d; want 200", code)
	}
	s.SetReadiness(nil)
	if code, _ := get(t, base+"/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz after the check is removed = %d; want 503", code)
	}
	// No /metrics without a gatherer; pprof off by default.
	for _, path := range []string{"/metrics", "/debug/pprof/", "/debug/pprof/cmdline"} {
		if code, _ := get(t, base+path); code != http.StatusNotFound {
			t.Errorf("%s = %d; want 404", path, code)
		}
	}
}

func TestHTTPPprofAndMetrics(t *testing.T) {
	reg := NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "chronik_test_total", Help: "A test counter."})
	reg.MustRegister(c)
	c.Add(3)
	_, base := startHTTP(t, HTTPConfig{Pprof: true, Gatherer: reg})
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/goroutine?debug=1"} {
		if code, _ := get(t, base+path); code != http.StatusOK {
			t.Errorf("%s = %d; want 200 with pprof on", path, code)
		}
	}
	code, body := get(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics = %d", code)
	}
	for _, want := range []string{"chronik_test_total 3", "go_goroutines", "process_"} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestHTTPHandleAddsEndpoints(t *testing.T) {
	s, base := startHTTP(t, HTTPConfig{})
	s.Handle("GET /search/v1/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "search "+r.URL.Path)
	}))
	if code, body := get(t, base+"/search/v1/x"); code != http.StatusOK || body != "search /search/v1/x" {
		t.Errorf("added handler = %d %q", code, body)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Errorf("/healthz still answers after Close")
	}
}
