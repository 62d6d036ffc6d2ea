package indexer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// APIRequest is the body of POST /api/v1/search (docs/search.md).
type APIRequest struct {
	Topics []string `json:"topics"`
	Query  string   `json:"query"`
	From   string   `json:"from,omitempty"` // RFC 3339 or a relative duration (-15m)
	To     string   `json:"to,omitempty"`
	Limit  int      `json:"limit,omitempty"`
	Offset int      `json:"offset,omitempty"`
	Sort   string   `json:"sort,omitempty"`
	// ExactTotal counts every match (Request.ExactTotal).
	ExactTotal bool `json:"exact_total,omitempty"`
}

// APIError is the body of an error answer.
type APIError struct {
	Error string `json:"error"`
	// Bad is the part of the query at fault, with its byte offsets.
	Bad string `json:"bad,omitempty"`
	Pos int    `json:"pos,omitempty"`
	End int    `json:"end,omitempty"`
}

// ToRequest checks an API request and turns it into a Request.
func (a *APIRequest) ToRequest(now time.Time) (Request, error) {
	r := Request{Topics: a.Topics, Query: a.Query, Limit: a.Limit, Offset: a.Offset, Sort: a.Sort, ExactTotal: a.ExactTotal}
	var err error
	if a.From != "" {
		if r.From, err = ParseTime(a.From, now); err != nil {
			return r, fmt.Errorf("from: %w", err)
		}
	}
	if a.To != "" {
		if r.To, err = ParseTime(a.To, now); err != nil {
			return r, fmt.Errorf("to: %w", err)
		}
	}
	return r, nil
}

// Handler serves the search API on an engine: POST a JSON APIRequest,
// get a Result. At most parallel searches run at once; more wait.
func Handler(e *Engine, parallel int) http.Handler {
	sem := make(chan struct{}, max(parallel, 1))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var a APIRequest
		dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&a); err != nil {
			writeJSON(w, http.StatusBadRequest, APIError{Error: "request body: " + err.Error()})
			return
		}
		req, err := a.ToRequest(time.Now())
		if err != nil {
			writeJSON(w, http.StatusBadRequest, APIError{Error: err.Error()})
			return
		}
		select {
		case sem <- struct{}{}:
			defer func() { <-sem }()
		case <-r.Context().Done():
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Minute)
		defer cancel()
		res, err := e.Search(ctx, req)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, res)
	})
}

func writeError(w http.ResponseWriter, err error) {
	var qe *QueryError
	switch {
	case errors.As(err, &qe):
		writeJSON(w, http.StatusBadRequest, APIError{Error: qe.Error(), Bad: qe.Query[qe.Pos:qe.End], Pos: qe.Pos, End: qe.End})
	case errors.Is(err, ErrUnknownTopic):
		writeJSON(w, http.StatusNotFound, APIError{Error: err.Error()})
	case errors.Is(err, errBadRequest):
		writeJSON(w, http.StatusBadRequest, APIError{Error: err.Error()})
	default:
		writeJSON(w, http.StatusInternalServerError, APIError{Error: err.Error()})
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
