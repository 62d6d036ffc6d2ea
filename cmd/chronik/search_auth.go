package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/chronik-go/chronik/broker"
	"github.com/chronik-go/chronik/indexer"
	"github.com/chronik-go/chronik/ops"
)

// authorizeSearch serves a search only when the authenticated principal
// (ops.RequireAuth runs first) may READ every topic it names: 403, with no
// record content, otherwise.
func authorizeSearch(b *broker.Broker, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20+1))
		if err != nil {
			writeSearchError(w, http.StatusBadRequest, fmt.Sprintf("reading the request: %v", err))
			return
		}
		var req indexer.APIRequest
		if json.Unmarshal(body, &req) == nil {
			principal, host := ops.Principal(r), ops.RemoteHost(r)
			for _, t := range req.Topics {
				if !b.MayRead(principal, host, t) {
					writeSearchError(w, http.StatusForbidden,
						fmt.Sprintf("%s may not READ topic %q: an admin can grant it with `chronik acl add --allow-principal %s --operation read --topic %s`", principal, t, principal, t))
					return
				}
			}
		} // else the search handler answers the malformed body
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		next.ServeHTTP(w, r)
	})
}

func writeSearchError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(indexer.APIError{Error: msg})
}
