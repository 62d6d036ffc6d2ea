package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/chronik-go/chronik/indexer"
	"github.com/chronik-go/chronik/ops"
	"github.com/chronik-go/chronik/tier3"
)

type searchOpts struct {
	server, bucket, cacheDir string
	topics                   []string
	from, to, output, sort   string
	after                    string
	limit, offset            int
	exactTotal               bool
	sec                      securityFlags // --server's basic auth and TLS trust
}

func newSearchCmd(env ops.Env) *cobra.Command {
	var o searchOpts
	cmd := &cobra.Command{
		Use:   "search [--server URL | --bucket URL] --topic T [flags] QUERY",
		Short: "Search records, archived ones included",
		Long: `Search a topic's records with a Bleve query string, through a broker's HTTP API
(--server, the default) or straight from object storage with no broker
running (--bucket, the same URL forms as CHRONIK_TIER3_URL).

  city:paris                 a JSON field (dotted paths: order.total:>100)
  +status:failed -region:eu  required and excluded clauses
  note:"disk full"           a phrase
  headers.source:billing     a header value
  key:order-1                the whole key (key.text:order for its words)
  timeout                    a bare word: every text field, headers and text values

Hits are newest first (--sort time for oldest first, score for relevance).
Any --limit works: hits come in pages of at most the broker's
CHRONIK_SEARCH_MAX_HITS (and CHRONIK_SEARCH_MAX_RESPONSE_BYTES), each
continuing the last, and jsonl prints each page as it comes.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSearch(cmd.Context(), o, args[0], env, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.server, "server", "http://127.0.0.1:6092", "a broker's HTTP address")
	f.StringVar(&o.bucket, "bucket", "", "search object storage directly: file:///path, s3://bucket/prefix or minio://host:port/bucket/prefix")
	f.StringSliceVar(&o.topics, "topic", nil, "topic to search (repeat or comma-separate for several)")
	f.StringVar(&o.from, "from", "", "earliest timestamp: RFC 3339 (2026-03-01T12:00:00.250Z) or relative (-15m)")
	f.StringVar(&o.to, "to", "", "latest timestamp, same forms as --from")
	f.IntVar(&o.limit, "limit", indexer.DefaultLimit, "hits to return; 0: every hit")
	f.IntVar(&o.offset, "offset", 0, "hits to skip (paging)")
	f.StringVar(&o.after, "after", "", `continue after the hits of an answer: its "next" (-o json shows it)`)
	f.StringVar(&o.sort, "sort", "-time", "-time (newest first), time, or score")
	f.BoolVar(&o.exactTotal, "exact-total", false, "count every match (sorted by time, indexes that cannot reach the page are skipped and the total is a lower bound)")
	f.StringVarP(&o.output, "output", "o", "table", "table, json or jsonl")
	f.StringVar(&o.cacheDir, "cache-dir", "", "index and chunk cache of --bucket searches (default: the user cache dir)")
	o.sec.registerHTTP(f)
	_ = cmd.MarkFlagRequired("topic")
	return cmd
}

func runSearch(ctx context.Context, o searchOpts, q string, env ops.Env, stdout, stderr io.Writer) error {
	switch o.output {
	case "table", "json", "jsonl":
	default:
		return fmt.Errorf("--output %q is not table, json or jsonl", o.output)
	}
	if o.limit < 0 {
		return fmt.Errorf("--limit %d must be 0 (every hit) or more", o.limit)
	}
	if o.offset < 0 {
		return fmt.Errorf("--offset %d must be 0 or more", o.offset)
	}
	api := indexer.APIRequest{Topics: o.topics, Query: q, From: o.from, To: o.to, Sort: o.sort, ExactTotal: o.exactTotal, After: o.after}
	// Relative times are resolved here, so the server's clock does not matter.
	now := time.Now()
	req, err := api.ToRequest(now)
	if err != nil {
		return err
	}
	if !req.From.IsZero() {
		api.From = req.From.Format(time.RFC3339Nano)
	}
	if !req.To.IsZero() {
		api.To = req.To.Format(time.RFC3339Nano)
	}
	if _, err := indexer.ParseQuery(q); err != nil {
		return queryError(err, stderr)
	}
	prog := newSearchProgress(stderr)
	defer prog.done()
	var page pageFunc
	if o.bucket != "" {
		eng, closeEng, err := bucketEngine(ctx, o)
		if err != nil {
			return err
		}
		defer closeEng()
		page = bucketPage(eng, indexer.DefaultLimits(), prog)
	} else {
		hc, err := o.sec.httpClient(env)
		if err != nil {
			return err
		}
		page = serverPage(o.server, hc, prog)
	}
	var emit func([]indexer.Hit) error
	if o.output == "jsonl" {
		enc := json.NewEncoder(stdout)
		emit = func(hits []indexer.Hit) error {
			prog.done()
			for i := range hits {
				if err := enc.Encode(&hits[i]); err != nil {
					return err
				}
			}
			return nil
		}
	}
	res, err := searchPages(ctx, api, o.offset, o.limit, page, emit)
	prog.done()
	if err != nil {
		return queryError(err, stderr)
	}
	return printResult(stdout, o.output, res)
}

// pageFunc runs one page of a search (Offset + Limit at most the page
// size the search API allows).
type pageFunc func(ctx context.Context, api indexer.APIRequest) (*indexer.Result, error)

// pageTooLarge is a page refused for asking more hits than max.
type pageTooLarge struct {
	max int
	msg string
}

func (e *pageTooLarge) Error() string { return e.msg }

// searchPages gets limit hits (0: every hit) after skipping offset, a page
// at a time, each continuing the last with its "next", and returns them
// in one Result (counts of the first page, sums of the work of all);
// with emit, each page's hits go to it instead. A page size the API
// refuses is replaced by the largest it names. Offsets deeper than a page
// are skipped a page at a time, asking for one hit past each.
func searchPages(ctx context.Context, api indexer.APIRequest, offset, limit int, page pageFunc, emit func([]indexer.Hit) error) (*indexer.Result, error) {
	size := indexer.DefaultLimits().MaxHits
	skip, got := offset, 0
	var out *indexer.Result
	var took float64
	for {
		off := min(skip, size-1)
		n := size - off
		if off < skip {
			n = 1
		} else if limit > 0 {
			n = min(n, limit-got)
		}
		api.Offset, api.Limit = off, n
		res, err := page(ctx, api)
		var tl *pageTooLarge
		if errors.As(err, &tl) && tl.max > 0 && tl.max < size {
			size = tl.max
			continue
		}
		if err != nil {
			return nil, err
		}
		took += res.TookMs
		if out == nil {
			first := *res
			out = &first
			out.Hits, out.Fetched, out.Missing = nil, 0, 0
		} else {
			out.Built += res.Built
		}
		out.Fetched += res.Fetched
		out.Missing += res.Missing
		hits := res.Hits
		if off < skip {
			skip -= off + len(hits) + res.Missing
			hits = nil
		} else {
			skip = 0
		}
		if limit > 0 && len(hits) > limit-got {
			hits = hits[:limit-got]
		}
		got += len(hits)
		if emit != nil {
			if err := emit(hits); err != nil {
				return nil, err
			}
		} else {
			out.Hits = append(out.Hits, hits...)
		}
		out.Next, out.Truncated = res.Next, ""
		if res.Next == "" || limit > 0 && got >= limit {
			break
		}
		api.After = res.Next
	}
	out.TookMs = took
	out.Took = time.Duration(took * float64(time.Millisecond))
	if out.Hits == nil {
		out.Hits = []indexer.Hit{}
	}
	return out, nil
}

func queryError(err error, stderr io.Writer) error {
	var qe *indexer.QueryError
	if errors.As(err, &qe) {
		fmt.Fprintln(stderr, qe.Caret())
	}
	return err
}

// serverPage runs pages through a broker's search API. A 429 (too many
// searches at once) is retried after its Retry-After, a few times.
func serverPage(server string, hc *http.Client, prog *searchProgress) pageFunc {
	return func(ctx context.Context, api indexer.APIRequest) (*indexer.Result, error) {
		const tries = 5
		waited := time.Duration(0)
		for try := 1; ; try++ {
			res, retry, err := searchServer(ctx, server, hc, api, prog)
			if retry == 0 {
				return res, err
			}
			if try == tries {
				return nil, fmt.Errorf("%w; still so after %d tries over %v: try again later", err, tries, waited.Round(time.Second))
			}
			prog.done()
			fmt.Fprintf(prog.w, "%v; retrying in %v\n", err, retry)
			select {
			case <-time.After(retry):
				waited += retry
			case <-ctx.Done():
				return nil, fmt.Errorf("search through %s: %w", server, ctx.Err())
			}
		}
	}
}

// searchServer runs one page through the search API. retry > 0: the
// broker was busy (429) and asks to retry after that long.
func searchServer(ctx context.Context, server string, hc *http.Client, api indexer.APIRequest, prog *searchProgress) (res *indexer.Result, retry time.Duration, err error) {
	body, err := json.Marshal(api)
	if err != nil {
		return nil, 0, err
	}
	u := strings.TrimSuffix(server, "/") + "/api/v1/search"
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, 0, fmt.Errorf("--server %q: %w", server, err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	stop := prog.spin("searching")
	resp, err := hc.Do(hreq)
	stop()
	if err != nil {
		if ctx.Err() == nil {
			return nil, 0, fmt.Errorf("cannot reach the search API at %s: is `chronik start` running? (%v)", server, err)
		}
		return nil, 0, fmt.Errorf("search through %s: %w", server, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var ae indexer.APIError
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(b, &ae) != nil || ae.Error == "" {
			ae.Error = fmt.Sprintf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
		}
		switch {
		case resp.StatusCode == http.StatusUnauthorized:
			return nil, 0, fmt.Errorf("search through %s: %s: give a SCRAM user's credentials with --sasl-username and --sasl-password-file (or %s)", server, ae.Error, envSASLPassword)
		case resp.StatusCode == http.StatusTooManyRequests:
			retry = time.Second
			if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s >= 0 {
				retry = min(time.Duration(s)*time.Second, time.Minute)
			}
			return nil, max(retry, 100*time.Millisecond), fmt.Errorf("search through %s: busy (%s): %s", server, resp.Status, ae.Error)
		case ae.End > 0:
			return nil, 0, &indexer.QueryError{Query: api.Query, Pos: ae.Pos, End: ae.End, Msg: strings.TrimPrefix(ae.Error, "bad query: ")}
		case ae.MaxHits > 0:
			return nil, 0, &pageTooLarge{max: ae.MaxHits, msg: ae.Error}
		}
		return nil, 0, fmt.Errorf("search through %s: %s", server, ae.Error)
	}
	var r indexer.Result
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, 0, fmt.Errorf("search through %s: answer: %w", server, err)
	}
	return &r, 0, nil
}

// bucketEngine opens a search engine straight on object storage.
func bucketEngine(ctx context.Context, o searchOpts) (*indexer.Engine, func(), error) {
	store, err := tier3.Open(ctx, o.bucket)
	if err != nil {
		return nil, nil, fmt.Errorf("--bucket %q: %w", o.bucket, err)
	}
	dir := o.cacheDir
	if dir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			base = os.TempDir()
		}
		dir = filepath.Join(base, "chronik", "search")
	}
	cache, err := indexer.OpenCache(filepath.Join(dir, "indexes"), 2<<30, 64)
	if err != nil {
		return nil, nil, err
	}
	chunkDir := filepath.Join(dir, "chunks-"+strconv.Itoa(os.Getpid()))
	chunks, err := tier3.NewCache(chunkDir, 1<<30)
	if err != nil {
		cache.Close()
		return nil, nil, err
	}
	arch, err := tier3.NewArchive(store, tier3.ArchiveConfig{Cache: chunks, ReadAhead: -1})
	if err != nil {
		cache.Close()
		_ = os.RemoveAll(chunkDir)
		return nil, nil, err
	}
	closeAll := func() {
		arch.Close()
		_ = os.RemoveAll(chunkDir)
		cache.Close()
	}
	eng, err := indexer.NewEngine(indexer.EngineConfig{Log: indexer.NewBucketLog(store, arch), Store: store, Cache: cache})
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	return eng, closeAll, nil
}

// bucketPage runs pages in this process, bounded as the search API bounds
// them (the time bound aside: the search is the caller's own).
func bucketPage(eng *indexer.Engine, lim indexer.Limits, prog *searchProgress) pageFunc {
	return func(ctx context.Context, api indexer.APIRequest) (*indexer.Result, error) {
		req, err := api.ToRequest(time.Now())
		if err != nil {
			return nil, err
		}
		if err := lim.Page(&req); err != nil {
			return nil, &pageTooLarge{max: lim.MaxHits, msg: err.Error()}
		}
		req.Progress = prog.update
		return eng.Search(ctx, req)
	}
}

func printResult(w io.Writer, output string, res *indexer.Result) error {
	switch output {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	case "jsonl":
		enc := json.NewEncoder(w)
		for i := range res.Hits {
			if err := enc.Encode(&res.Hits[i]); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIMESTAMP\tTOPIC\tPARTITION\tOFFSET\tKEY\tVALUE")
	for _, h := range res.Hits {
		key := ""
		if h.Key != nil {
			key = *h.Key
		}
		v := string(h.Value)
		if s, err := strconv.Unquote(v); err == nil {
			v = s
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\n", h.Timestamp.Format(time.RFC3339Nano), h.Topic, h.Partition, h.Offset,
			clip(key, 40), clip(strings.ReplaceAll(v, "\n", " "), 100))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	atLeast := ""
	if !res.TotalExact {
		atLeast = "at least "
	}
	_, err := fmt.Fprintf(w, "%d of %s%d hits in %.1f ms\n", len(res.Hits), atLeast, res.Total, res.TookMs)
	return err
}

func clip(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// progress reports on stderr, only when it is a terminal.
type searchProgress struct {
	w   io.Writer
	tty bool
	on  bool
}

func newSearchProgress(w io.Writer) *searchProgress {
	p := &searchProgress{w: w}
	if f, ok := w.(*os.File); ok {
		p.tty = term.IsTerminal(int(f.Fd()))
	}
	return p
}

func (p *searchProgress) update(ready, total int) {
	if !p.tty || total < 2 {
		return
	}
	p.on = true
	fmt.Fprintf(p.w, "\rindexes ready: %d/%d", ready, total)
}

// spin shows elapsed time until stop is called.
func (p *searchProgress) spin(what string) (stop func()) {
	if !p.tty {
		return func() {}
	}
	done := make(chan struct{})
	start := time.Now()
	go func() {
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				p.on = true
				fmt.Fprintf(p.w, "\r%s… %.1fs", what, time.Since(start).Seconds())
			}
		}
	}()
	return func() { close(done) }
}

func (p *searchProgress) done() {
	if p.on {
		fmt.Fprint(p.w, "\r\033[K")
		p.on = false
	}
}

// searchLimits are the search API's bounds on one request, from the
// CHRONIK_SEARCH_* settings.
func searchLimits(cfg ops.Config) indexer.Limits {
	return indexer.Limits{MaxHits: cfg.SearchMaxHits, MaxResponseBytes: cfg.SearchMaxResponseBytes,
		Timeout: cfg.SearchTimeout, MaxConcurrent: cfg.SearchMaxConcurrent}
}
