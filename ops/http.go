package ops

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// HTTPConfig configures a node's HTTP listener (CHRONIK_HTTP_ADDR).
type HTTPConfig struct {
	Addr string // host:port; port 0 picks a free port
	// Pprof serves net/http/pprof under /debug/pprof/ (CHRONIK_PPROF).
	Pprof bool
	// Gatherer is served on /metrics; nil serves no /metrics.
	Gatherer prometheus.Gatherer
	Logger   *slog.Logger // nil means slog.Default()
	// TLS, when set, serves HTTPS (CHRONIK_HTTP_TLS).
	TLS *tls.Config
	// AuthAll guards the built-in endpoints (/metrics, /healthz, /readyz,
	// /debug/pprof/) with RequireAuth too (CHRONIK_HTTP_AUTH_ALL).
	AuthAll bool
}

// HTTPServer is a node's HTTP listener: /metrics, /healthz, /readyz,
// optionally /debug/pprof/, and whatever else subsystems add with Handle
// (the search API and admin endpoints). Handle may be called before or
// after Start.
type HTTPServer struct {
	cfg HTTPConfig
	log *slog.Logger
	mux *http.ServeMux
	srv *http.Server

	// ready reports why the node is not ready, or nil once it is. Unset
	// means not ready yet: a node starts unready until it says otherwise.
	ready atomic.Pointer[func() error]
	auth  atomic.Pointer[Authenticator] // SetAuthenticator

	mu     sync.Mutex // guards the following
	ln     net.Listener
	served chan struct{} // closed when Serve returns

	closeOnce sync.Once
	closeErr  error
}

// NewHTTPServer returns a server with the built-in endpoints registered.
func NewHTTPServer(cfg HTTPConfig) *HTTPServer {
	s := &HTTPServer{cfg: cfg, log: cfg.Logger, mux: http.NewServeMux()}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.srv = &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	builtin := func(pattern string, h http.Handler) {
		if cfg.AuthAll {
			h = s.RequireAuth(h)
		}
		s.mux.Handle(pattern, h)
	}
	builtin("GET /healthz", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	}))
	builtin("GET /readyz", http.HandlerFunc(s.serveReady))
	if cfg.Gatherer != nil {
		builtin("GET /metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{
			ErrorLog:      slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
			ErrorHandling: promhttp.ContinueOnError,
		}))
	}
	if cfg.Pprof {
		builtin("/debug/pprof/", http.HandlerFunc(pprof.Index))
		builtin("/debug/pprof/cmdline", http.HandlerFunc(pprof.Cmdline))
		builtin("/debug/pprof/profile", http.HandlerFunc(pprof.Profile))
		builtin("/debug/pprof/symbol", http.HandlerFunc(pprof.Symbol))
		builtin("/debug/pprof/trace", http.HandlerFunc(pprof.Trace))
	}
	return s
}

// Handle registers h for pattern (http.ServeMux syntax, e.g.
// "GET /search/v1/").
func (s *HTTPServer) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// SetReadiness installs the readiness check behind /readyz: it returns nil
// when the node is ready to serve clients, else why not. nil uninstalls it,
// making the node unready.
func (s *HTTPServer) SetReadiness(check func() error) {
	if check == nil {
		s.ready.Store(nil)
		return
	}
	s.ready.Store(&check)
}

func (s *HTTPServer) serveReady(w http.ResponseWriter, _ *http.Request) {
	err := errors.New("starting")
	if check := s.ready.Load(); check != nil {
		err = (*check)()
	}
	if err != nil {
		http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ready")
}

// Start binds the listener and serves in the background until Close.
func (s *HTTPServer) Start() error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("ops: http listen on %s: %w", s.cfg.Addr, err)
	}
	if s.cfg.TLS != nil {
		ln = tls.NewListener(ln, s.cfg.TLS)
	}
	served := make(chan struct{})
	s.mu.Lock()
	s.ln, s.served = ln, served
	s.mu.Unlock()
	go func() {
		defer close(served)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("http listener stopped", "err", err)
		}
	}()
	return nil
}

// Addr is the bound address, or nil before Start.
func (s *HTTPServer) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Close stops the listener, lets in-flight requests finish for up to
// five seconds, then closes what is left. Later calls return the first
// call's result.
func (s *HTTPServer) Close() error {
	s.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.closeErr = s.srv.Shutdown(ctx)
		if errors.Is(s.closeErr, context.DeadlineExceeded) {
			s.closeErr = s.srv.Close()
		}
		s.mu.Lock()
		served := s.served
		s.mu.Unlock()
		if served != nil {
			<-served
		}
	})
	return s.closeErr
}

// NewRegistry returns a metrics registry for one node, with the Go runtime
// and process collectors. Each node owns its registry: there is no global
// one, so tests can run several nodes in one process.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}
