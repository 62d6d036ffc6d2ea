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
	// After is the "next" of the previous page: the hits after its last.
	After string `json:"after,omitempty"`
}

// APIError is the body of an error answer.
type APIError struct {
	Error string `json:"error"`
	// Bad is the part of the query at fault, with its byte offsets.
	Bad string `json:"bad,omitempty"`
	Pos int    `json:"pos,omitempty"`
	End int    `json:"end,omitempty"`
	// MaxHits is the largest page, on a 400 for asking more (clients
	// page with that size instead).
	MaxHits int `json:"max_hits,omitempty"`
	// TimeoutMs is the time a search may take, on a 503 for running out
	// of it.
	TimeoutMs int64 `json:"timeout_ms,omitempty"`
}

// Limits bound what one search costs a broker (docs/search.md, "Limits").
// A zero bound is no bound, except MaxConcurrent (1).
type Limits struct {
	// MaxHits bounds a page: offset + limit. Deeper hits are reached
	// with After.
	MaxHits int
	// MaxResponseBytes bounds the hits' bytes of an answer (values
	// included): past it the page ends early, with a "next".
	MaxResponseBytes int
	// Timeout bounds a search: at its end the answer is the page so far
	// with a "next" when some hits were read, else 503.
	Timeout time.Duration
	// MaxConcurrent searches run at once; more are answered 429.
	MaxConcurrent int
}

// DefaultLimits are the defaults of the CHRONIK_SEARCH_* settings.
func DefaultLimits() Limits {
	return Limits{MaxHits: 10_000, MaxResponseBytes: 16 << 20, Timeout: 30 * time.Second, MaxConcurrent: 4}
}

// Page bounds req to lim's page: an error when it asks for more hits
// than a page holds (errBadRequest, with the way on); the byte bound set.
func (lim Limits) Page(req *Request) error {
	if lim.MaxHits <= 0 {
		lim.MaxHits = MaxLimit
	}
	if req.Limit == 0 {
		req.Limit = min(DefaultLimit, lim.MaxHits)
	}
	if req.Limit > lim.MaxHits || req.Offset > lim.MaxHits-req.Limit {
		return fmt.Errorf("%w: offset %d + limit %d is more than the %d hits a page may hold (CHRONIK_SEARCH_MAX_HITS): "+
			"ask for at most %d and page on by sending each answer's \"next\" back as \"after\"",
			errBadRequest, req.Offset, req.Limit, lim.MaxHits, lim.MaxHits)
	}
	req.MaxBytes = lim.MaxResponseBytes
	return nil
}

// ToRequest checks an API request and turns it into a Request.
func (a *APIRequest) ToRequest(now time.Time) (Request, error) {
	r := Request{Topics: a.Topics, Query: a.Query, Limit: a.Limit, Offset: a.Offset, Sort: a.Sort, ExactTotal: a.ExactTotal, After: a.After}
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
// get a Result, within lim. Past lim.MaxConcurrent searches at once it
// answers 429 at once rather than queue.
func Handler(e *Engine, lim Limits) http.Handler {
	sem := make(chan struct{}, max(lim.MaxConcurrent, 1))
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
		if req.Limit >= 0 && req.Offset >= 0 {
			if err := lim.Page(&req); err != nil {
				writeJSON(w, http.StatusBadRequest, APIError{Error: err.Error(), MaxHits: lim.MaxHits})
				return
			}
		} // else the engine says what is wrong
		select {
		case sem <- struct{}{}:
			defer func() { <-sem }()
		default:
			w.Header().Set("Retry-After", "1")
			writeJSON(w, http.StatusTooManyRequests, APIError{Error: fmt.Sprintf(
				"%d searches are running, as many as this broker runs at once (CHRONIK_SEARCH_MAX_CONCURRENT): retry after a second", cap(sem))})
			return
		}
		ctx, cancel := r.Context(), context.CancelFunc(func() {})
		if lim.Timeout > 0 {
			ctx, cancel = context.WithTimeout(r.Context(), lim.Timeout)
		}
		defer cancel()
		res, err := e.Search(ctx, req)
		if err != nil {
			if ctx.Err() == context.DeadlineExceeded && r.Context().Err() == nil {
				writeJSON(w, http.StatusServiceUnavailable, APIError{TimeoutMs: lim.Timeout.Milliseconds(), Error: fmt.Sprintf(
					"the search took longer than %v (CHRONIK_SEARCH_TIMEOUT_MS) before its first hits were read: "+
						"narrow it (a shorter from/to range, fewer topics, a more selective query, a smaller limit) "+
						"or retry (indexes it finished building stay cached, so a retry goes further)", lim.Timeout)})
				return
			}
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
