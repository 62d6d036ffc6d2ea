package indexer

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/blevesearch/bleve/v2"
	"github.com/blevesearch/bleve/v2/search/query"
)

// QueryError is a query that does not parse or cannot be evaluated, with
// the part of it at fault.
type QueryError struct {
	Query    string
	Pos, End int // byte offsets of the bad part in Query
	Msg      string
}

func (e *QueryError) Error() string {
	if e.Pos == 0 && e.End == len(e.Query) {
		return fmt.Sprintf("bad query %q: %s", e.Query, e.Msg)
	}
	return fmt.Sprintf("bad query: %s at %q (bytes %d-%d of %q)", e.Msg, e.Query[e.Pos:e.End], e.Pos, e.End, e.Query)
}

// Caret renders the query with the bad part underlined, for terminals.
func (e *QueryError) Caret() string {
	return fmt.Sprintf("  %s\n  %s%s", e.Query, strings.Repeat(" ", len([]rune(e.Query[:e.Pos]))),
		strings.Repeat("^", max(1, len([]rune(e.Query[e.Pos:e.End])))))
}

// probe is an empty index queries are tried on: field-level errors (a
// range bound that is not a date) show up only when a query runs.
var probe = sync.OnceValues(func() (bleve.Index, error) { return bleve.NewMemOnly(NewMapping()) })

// ParseQuery parses a Bleve query-string query. An empty query, or *,
// matches every record. Errors are *QueryError.
func ParseQuery(s string) (query.Query, error) {
	if t := strings.TrimSpace(s); t == "" || t == "*" {
		return query.NewMatchAllQuery(), nil
	}
	q, err := check(s)
	if err == nil {
		return q, nil
	}
	// Find the clause at fault: the first that fails on its own.
	for _, c := range clauses(s) {
		if _, cerr := check(s[c[0]:c[1]]); cerr != nil {
			return nil, &QueryError{Query: s, Pos: c[0], End: c[1], Msg: cleanMsg(cerr)}
		}
	}
	return nil, &QueryError{Query: s, Pos: 0, End: len(s), Msg: cleanMsg(err)}
}

func check(s string) (query.Query, error) {
	q, err := bleve.NewQueryStringQuery(s).Parse()
	if err != nil {
		return nil, err
	}
	if v, ok := q.(query.ValidatableQuery); ok {
		if err := v.Validate(); err != nil {
			return nil, err
		}
	}
	idx, err := probe()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := idx.SearchInContext(ctx, bleve.NewSearchRequest(q)); err != nil {
		return nil, err
	}
	return q, nil
}

func cleanMsg(err error) string {
	m := err.Error()
	m = strings.TrimPrefix(m, "parse error: ")
	m = strings.TrimPrefix(m, "error parsing query string: ")
	return m
}

// clauses splits a query string into its top-level clauses (byte
// ranges): runs of non-space outside quotes and parentheses.
func clauses(s string) [][2]int {
	var out [][2]int
	start, depth, quoted, esc := -1, 0, false, false
	for i, r := range s {
		switch {
		case esc:
			esc = false
		case r == '\\':
			esc = true
		case r == '"':
			quoted = !quoted
		case quoted:
		case r == '(':
			depth++
		case r == ')':
			depth--
		}
		space := r == ' ' || r == '\t' || r == '\n'
		if start < 0 && !space {
			start = i
		}
		if start >= 0 && space && !quoted && depth <= 0 {
			out = append(out, [2]int{start, i})
			start = -1
		}
	}
	if start >= 0 {
		out = append(out, [2]int{start, len(s)})
	}
	return out
}

// ParseTime reads a --from/--to bound: RFC 3339 (fractional seconds
// allowed), or a duration relative to now such as -15m or -2h30m.
func ParseTime(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && (strings.HasPrefix(s, "-") || strings.HasPrefix(s, "+")) {
		return now.Add(d), nil
	}
	return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time (2006-01-02T15:04:05.999Z07:00) nor a relative duration such as -15m", s)
}
