package indexer

import (
	"cmp"
	"encoding/base64"
	"encoding/json"
	"fmt"
)

// Paging by continuation: every page that may not be the last carries
// Result.Next, a token naming the position after its last hit, and
// Request.After continues from it. Sorted by time the position is the
// last hit's coordinates, so a search for the page after it costs
// offset + limit kept hits whatever the page's depth, and indexes wholly
// before it are skipped like those that cannot reach a full page. Sorted
// by score the position is a hit count (Bleve's collector keeps offset +
// limit hits, which maxScoreHits bounds).

// cursor is what a continuation token holds.
type cursor struct {
	V    int    `json:"v"`
	Sort string `json:"s"` // "-time", "time" or "score"
	// Time orders: the last hit's coordinates; the (topic, partition)
	// breaks ties as the ranks of collectByTime do.
	Ts    int64  `json:"ts,omitempty"` // unix nanoseconds, as docCoords
	Off   int64  `json:"o,omitempty"`
	Topic string `json:"t,omitempty"`
	Part  int32  `json:"p,omitempty"`
	// Score order: hits already returned.
	N int `json:"n,omitempty"`
}

const cursorVersion = 1

func (c *cursor) encode() string {
	c.V = cursorVersion
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

// parseCursor reads a token of Result.Next for a search sorted by sort.
func parseCursor(tok, sort string) (*cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	var c cursor
	if err == nil {
		err = json.Unmarshal(b, &c)
	}
	if err != nil || c.V != cursorVersion || c.N < 0 {
		return nil, fmt.Errorf("%w: after %q is not a \"next\" token of this API", errBadRequest, tok)
	}
	if c.Sort != sort {
		return nil, fmt.Errorf("%w: after: the token continues a search sorted by %s, not %s", errBadRequest, c.Sort, sort)
	}
	return &c, nil
}

// cursorAt is the position of h, indexed at ts, in a time order.
func cursorAt(h *Hit, ts int64, sort string) *cursor {
	return &cursor{Sort: sort, Ts: ts, Off: h.Offset, Topic: h.Topic, Part: h.Partition}
}

// partOrder compares a unit's (topic, partition) with the cursor's.
func (c *cursor) partOrder(u *unit) int {
	return cmp.Or(cmp.Compare(u.t.Name, c.Topic), cmp.Compare(u.p, c.Part))
}

// past reports whether a match at (ts, off) of a unit whose partOrder is
// po comes after the cursor in the order (newest first when desc).
func (c *cursor) past(ts, off int64, po int, desc bool) bool {
	o := cmp.Or(cmp.Compare(ts, c.Ts), cmp.Compare(off, c.Off), po)
	if desc {
		return o < 0
	}
	return o > 0
}

// hitBytes approximates what a fetched hit holds and costs in an answer:
// its key, header and value bytes and the JSON around them.
func hitBytes(h *Hit) int {
	n := 128 + len(h.Topic) + len(h.Value)
	if h.Key != nil {
		n += len(*h.Key)
	}
	for k, v := range h.Headers {
		n += len(k) + len(v) + 8
	}
	return n
}
