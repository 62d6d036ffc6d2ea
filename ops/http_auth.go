package ops

import (
	"context"
	"net"
	"net/http"
	"net/netip"
)

// Authenticator checks HTTP basic credentials and returns the principal
// they prove ("User:<name>"); ok is false for wrong ones.
type Authenticator func(user, password string) (principal string, ok bool)

type principalKey struct{}

// Principal returns the principal RequireAuth proved for r, or "".
func Principal(r *http.Request) string {
	p, _ := r.Context().Value(principalKey{}).(string)
	return p
}

// RemoteHost returns r's client IP as ACLs name hosts (IPv4-mapped
// addresses unmapped).
func RemoteHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip.Unmap().String()
	}
	return host
}

// SetAuthenticator installs the check behind RequireAuth (and behind the
// built-in endpoints with HTTPConfig.AuthAll). Until it is installed,
// guarded endpoints answer 503: the broker holding the users is starting.
func (s *HTTPServer) SetAuthenticator(a Authenticator) { s.auth.Store(&a) }

// RequireAuth wraps h so it is served only with valid HTTP basic
// credentials: 401 with a WWW-Authenticate challenge otherwise. The
// principal is available to h through Principal.
func (s *HTTPServer) RequireAuth(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := s.auth.Load()
		if auth == nil {
			http.Error(w, "starting: credentials cannot be checked yet", http.StatusServiceUnavailable)
			return
		}
		user, password, ok := r.BasicAuth()
		if !ok {
			w.Header().Set("WWW-Authenticate", `Basic realm="chronik", charset="UTF-8"`)
			http.Error(w, "authentication required: send HTTP basic credentials of a SCRAM user", http.StatusUnauthorized)
			return
		}
		principal, ok := (*auth)(user, password)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Basic realm="chronik", charset="UTF-8"`)
			http.Error(w, "authentication failed: invalid username or password", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, principal)))
	})
}
