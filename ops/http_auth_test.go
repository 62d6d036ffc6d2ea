package ops

import (
	"net/http"
	"testing"
)

// RequireAuth answers 503 until an authenticator is installed, then 401
// without or with wrong credentials, and passes the proved principal on;
// with AuthAll the built-in endpoints are guarded too.
func TestHTTPRequireAuth(t *testing.T) {
	s, base := startHTTP(t, HTTPConfig{AuthAll: true})
	s.Handle("GET /who", s.RequireAuth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(Principal(r) + " from " + RemoteHost(r)))
	})))
	if code, _ := get(t, base+"/who"); code != http.StatusServiceUnavailable {
		t.Fatalf("before an authenticator: %d, want 503", code)
	}
	s.SetAuthenticator(func(user, password string) (string, bool) {
		return "User:" + user, user == "alice" && password == "alice-secret"
	})
	basic := func(path, user, password string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		if user != "" {
			req.SetBasicAuth(user, password)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		buf := make([]byte, 256)
		n, _ := resp.Body.Read(buf)
		if resp.StatusCode == http.StatusUnauthorized && resp.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: 401 without a WWW-Authenticate challenge", path)
		}
		return resp.StatusCode, string(buf[:n])
	}
	for _, tc := range []struct {
		path, user, password string
		code                 int
	}{
		{"/who", "", "", http.StatusUnauthorized},
		{"/who", "alice", "wrong", http.StatusUnauthorized},
		{"/who", "alice", "alice-secret", http.StatusOK},
		{"/healthz", "", "", http.StatusUnauthorized},
		{"/healthz", "alice", "alice-secret", http.StatusOK},
	} {
		if code, body := basic(tc.path, tc.user, tc.password); code != tc.code {
			t.Errorf("%s as %q: %d %q, want %d", tc.path, tc.user, code, body, tc.code)
		}
	}
	if _, body := basic("/who", "alice", "alice-secret"); body != "User:alice from 127.0.0.1" {
		t.Errorf("handler saw %q", body)
	}
}
