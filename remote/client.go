// Package remote is the client of the Rescale REST API: jobs, statuses, files, ranged contents, live
// files of running jobs, and the calls uploads are built on. Every call is retried the way Rescale's
// own client retries, and paced per throttle scope so a busy mount stays under the published limits.
// The API key is sent in a header and never appears in an error, a log line or a panic.
package remote

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// DefaultBaseURL is the main platform; regional ones are eu.rescale.com, kr.rescale.com,
// platform.rescale.jp, itar.rescale.com, itar.rescale-gov.com.
const DefaultBaseURL = "https://platform.rescale.com"

// PageSize is the page size asked of every list: the largest the platform serves [I].
const PageSize = 1000

// maxPages stops a list whose `next` links never end.
const maxPages = 100000

// maxJSONBody bounds a JSON answer read into memory (a page of 1000 files is about 2 MB); a URL that
// streams something else at us fails instead of exhausting memory.
const maxJSONBody = 256 << 20

const userAgent = "rescalefs"

// Options configure a Client. Only APIKey is required.
type Options struct {
	BaseURL    string       // "" = DefaultBaseURL; a trailing slash is ignored
	APIKey     string       // sent as "Token <key>", or "Bearer <key>" for a JWT-shaped session key
	HTTPClient *http.Client // nil = NewPolicyHTTPClient(Policy)
	Policy     Policy       // timeouts and budgets of every request; zero fields take the defaults
	Logger     *slog.Logger // nil = discard

	MaxAttempts   int           // per request, first try included; 0 = DefaultMaxAttempts
	MinBackoff    time.Duration // 0 = DefaultMinBackoff
	MaxBackoff    time.Duration // 0 = DefaultMaxBackoff
	MaxRetryAfter time.Duration // a longer Retry-After fails with ErrThrottled; 0 = DefaultMaxRetryAfter

	Limits map[Scope]float64 // requests per hour per scope; nil = DefaultLimits; a scope <= 0 or missing is unlimited
	Burst  time.Duration     // how many seconds of each scope's rate can go at once; 0 = DefaultBurst

	// Sleep waits between attempts and for throttle tokens; tests inject one that records and returns.
	Sleep func(ctx context.Context, d time.Duration) error
	// Now is the clock of the throttle buckets and of Retry-After dates; nil = time.Now.
	Now func() time.Time
}

// String leaves the key out, so printing Options is safe.
func (o Options) String() string {
	return fmt.Sprintf("remote.Options{BaseURL: %q, APIKey: [redacted]}", o.BaseURL)
}

// GoString leaves the key out of %#v too.
func (o Options) GoString() string { return o.String() }

// LogValue leaves the key out of structured logs.
func (o Options) LogValue() slog.Value { return slog.StringValue(o.String()) }

// Client talks to one Rescale platform with one key. It is safe for concurrent use.
type Client struct {
	base *url.URL // scheme, host and an optional path prefix without a trailing slash
	auth string   // the Authorization header value; never logged
	key  string   // kept only to scrub it from anything a server echoes back

	hc  *http.Client
	log *slog.Logger
	lim *limiter

	maxAttempts   int
	minBackoff    time.Duration
	maxBackoff    time.Duration
	maxRetryAfter time.Duration
	sleep         func(context.Context, time.Duration) error
	now           func() time.Time

	policy   Policy          // with defaults filled in
	health   *Health         // the platform's state as seen by this client's calls
	failures *recentFailures // files whose read just ran out of budget
}

// New checks the options and builds a Client. It sends nothing; CheckAuth does.
func New(o Options) (*Client, error) {
	key := strings.TrimSpace(o.APIKey)
	if key == "" {
		return nil, errors.New("remote: no API key")
	}
	if strings.ContainsAny(key, "\r\n") {
		return nil, errors.New("remote: API key contains a line break")
	}
	base, err := parseBaseURL(o.BaseURL)
	if err != nil {
		return nil, err
	}
	c := &Client{
		base:          base,
		key:           key,
		hc:            o.HTTPClient,
		log:           o.Logger,
		maxAttempts:   o.MaxAttempts,
		minBackoff:    o.MinBackoff,
		maxBackoff:    o.MaxBackoff,
		maxRetryAfter: o.MaxRetryAfter,
		sleep:         o.Sleep,
		now:           o.Now,
	}
	if isJWT(key) {
		c.auth = "Bearer " + key
	} else {
		c.auth = "Token " + key
	}
	c.policy = o.Policy.withDefaults()
	if c.hc == nil {
		c.hc = NewPolicyHTTPClient(c.policy)
	}
	c.hc = guardClient(c.hc)
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.failures = &recentFailures{}
	log := c.log
	c.health = &Health{onChange: func(down bool) {
		// Once per change of state, not once per request.
		if down {
			log.Warn("the platform is not answering; reads fail with an I/O error until it does", "url", base.Redacted(), "budget", c.policy.Budget)
		} else {
			log.Info("the platform answers again", "url", base.Redacted())
		}
	}}
	if c.maxAttempts <= 0 {
		c.maxAttempts = DefaultMaxAttempts
	}
	if c.minBackoff <= 0 {
		c.minBackoff = DefaultMinBackoff
	}
	if c.maxBackoff <= 0 {
		c.maxBackoff = DefaultMaxBackoff
	}
	if c.maxBackoff < c.minBackoff {
		c.maxBackoff = c.minBackoff
	}
	if c.maxRetryAfter <= 0 {
		c.maxRetryAfter = DefaultMaxRetryAfter
	}
	if c.sleep == nil {
		c.sleep = sleepCtx
	}
	if c.now == nil {
		c.now = time.Now
	}
	c.lim = newLimiter(o.Limits, o.Burst, c.now, c.sleep)
	return c, nil
}

// String names the platform, never the key. String, GoString and LogValue have value receivers so that
// a Client printed by value (a field of a struct printed with %+v or %#v) hides the key as well.
func (c Client) String() string { return "remote.Client(" + c.base.String() + ")" }

// GoString keeps the key out of %#v.
func (c Client) GoString() string { return c.String() }

// LogValue keeps the key out of structured logs.
func (c Client) LogValue() slog.Value { return slog.StringValue(c.String()) }

// BaseURL is the normalised platform URL, without a trailing slash.
func (c *Client) BaseURL() string { return c.base.String() }

func parseBaseURL(s string) (*url.URL, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		s = DefaultBaseURL
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("remote: API URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("remote: API URL %q: want http(s)://host", u.Redacted())
	}
	if u.User != nil {
		return nil, fmt.Errorf("remote: API URL %q: credentials in the URL are not used; give the API key", u.Redacted())
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath, u.RawQuery, u.Fragment = "", "", ""
	return u, nil
}

// isJWT says whether a key is a short-lived session token (a JWT: "ey..." with two dots), which the
// platform takes as Bearer rather than Token.
func isJWT(key string) bool {
	return strings.HasPrefix(key, "ey") && strings.Count(key, ".") == 2
}

// request is one API call; do sends it, as many times as the retry rules allow.
type request struct {
	method string
	path   string     // relative to the base, e.g. "/api/v2/jobs/"; or
	u      *url.URL   // a full URL already on our host (a `next` link)
	query  url.Values // with path
	header http.Header

	// body makes the body for one attempt; nil = no body. It returns errNoReplay when the body was
	// consumed by an earlier attempt and cannot be made again.
	body   func() (io.Reader, error)
	length int64 // the body's exact length: the platform refuses chunked bodies

	attempts int // 0 = the client's MaxAttempts

	prepare func(*http.Request) // last touches per attempt (a Range that resumes); may be nil
}

// errNoReplay stops the retries of a request whose body cannot be sent twice.
var errNoReplay = errors.New("request body cannot be sent again")

func (c *Client) urlOf(r *request) *url.URL {
	if r.u != nil {
		return r.u
	}
	u := *c.base
	u.Path = c.base.Path + r.path
	u.RawQuery = r.query.Encode()
	return &u
}

// apiPath is a request path relative to the base, for the scope table.
func (c *Client) apiPath(p string) string {
	return strings.TrimPrefix(p, c.base.Path)
}

// do sends r and hands a 2xx answer to accept (which must read what it needs; do closes the body).
// Non-2xx answers become *APIError. Transport errors, 5xx on idempotent methods, 429 (on any method
// whose body can be replayed) and bodies cut while accept read them are retried with backoff.
func (c *Client) do(ctx context.Context, r *request, accept func(*http.Response) error) error {
	u := c.urlOf(r)
	return c.withBudget(ctx, r.method+" "+u.Path, func(ctx context.Context) error { return c.doOnce(ctx, r, u, accept) })
}

// doOnce is do under a budget.
func (c *Client) doOnce(ctx context.Context, r *request, u *url.URL, accept func(*http.Response) error) error {
	pc := policyFrom(ctx)
	path := u.Path // errors name the path, never the query
	scope := scopeOf(r.method, c.apiPath(u.Path))
	max := r.attempts
	if max <= 0 {
		max = c.maxAttempts
	}
	var lastErr error
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return ctxError(r.method, path, err, lastErr)
		}
		// The throttle's wait is ours, not the platform failing: it does not count against the budget.
		release := pc.hold()
		err := c.lim.wait(ctx, scope)
		release()
		if err != nil {
			return ctxError(r.method, path, err, lastErr)
		}
		req, err := c.newRequest(ctx, r, u)
		if errors.Is(err, errNoReplay) && lastErr != nil {
			return lastErr
		}
		if err != nil {
			return fmt.Errorf("%s %s: %w", r.method, path, err)
		}
		retry, wait := false, time.Duration(-1)
		resp, err := c.hc.Do(req)
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return ctxError(r.method, path, ctx.Err(), lastErr)
			}
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err // url.Error would print the whole URL with its query
			}
			lastErr = &netError{method: r.method, path: path, err: err}
			retry = (idempotent(r.method) || notSent(err)) && !errors.Is(err, ErrInsecureRedirect)
		case resp.StatusCode >= 200 && resp.StatusCode <= 299:
			err := accept(resp)
			resp.Body.Close()
			if err == nil {
				return nil
			}
			if ctx.Err() != nil {
				return ctxError(r.method, path, ctx.Err(), err)
			}
			var rb *retryableBody
			if !errors.As(err, &rb) {
				return err
			}
			lastErr = err
			retry = idempotent(r.method)
		default:
			e := c.apiError(r.method, path, resp)
			lastErr = e
			switch {
			case resp.StatusCode == http.StatusTooManyRequests:
				retry = true
				if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), c.now()); ok {
					if d > c.maxRetryAfter {
						e.Detail = truncate(fmt.Sprintf("%s (Retry-After %v exceeds %v)", e.Detail, d, c.maxRetryAfter), maxDetail*2)
						retry = false
					} else {
						wait = d
						// Everyone in this scope holds back, not only this request.
						c.lim.pause(scope, c.now().Add(d))
					}
				}
			case resp.StatusCode >= 500:
				retry = idempotent(r.method)
			}
		}
		if !retry || attempt >= max {
			return lastErr
		}
		if wait < 0 {
			wait = backoff(attempt, c.minBackoff, c.maxBackoff)
		}
		c.log.LogAttrs(ctx, slog.LevelDebug, "rescale api retry",
			slog.String("method", r.method), slog.String("path", path),
			slog.Int("attempt", attempt), slog.Duration("wait", wait), slog.String("error", lastErr.Error()))
		// A Retry-After is the platform answering "later": it does not count against the budget. A
		// backoff after a failure does, and shows as a call retrying.
		var resume func()
		if errors.Is(lastErr, ErrThrottled) {
			release, unthrottle := pc.hold(), c.health.throttle(c.now().Add(wait))
			resume = func() { unthrottle(); release() }
		} else {
			resume = c.health.retry(lastErr)
		}
		err = c.sleep(ctx, wait)
		resume()
		if err != nil {
			return ctxError(r.method, path, err, lastErr)
		}
	}
}

func (c *Client) newRequest(ctx context.Context, r *request, u *url.URL) (*http.Request, error) {
	var body io.Reader = http.NoBody
	if r.body != nil {
		b, err := r.body()
		if err != nil {
			return nil, err
		}
		body = b
	}
	req, err := http.NewRequestWithContext(ctx, r.method, u.String(), body)
	if err != nil {
		return nil, err
	}
	if r.body != nil {
		req.ContentLength = r.length
		if r.length == 0 {
			req.Body = http.NoBody
		}
	}
	for k, v := range r.header {
		req.Header[k] = v
	}
	if req.Header.Get("Accept") == "" {
		req.Header.Set("Accept", "application/json")
	}
	if r.prepare != nil {
		r.prepare(req)
	}
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set("Authorization", c.auth)
	return req, nil
}

// ctxError reports a cancelled or expired call; the last failure, if any, says what was being retried.
func ctxError(method, path string, err, last error) error {
	if last != nil {
		return fmt.Errorf("%s %s: %w (after: %w)", method, path, err, last)
	}
	return fmt.Errorf("%s %s: %w", method, path, err)
}

// apiError reads an error answer (bounded) and closes it.
func (c *Client) apiError(method, path string, resp *http.Response) *APIError {
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	e := &APIError{Method: method, Path: path, Status: resp.StatusCode}
	detail, ok := parseDetail(b)
	if !ok {
		// Not JSON: an HTML page or a proxy's text. Below 500 that is not the API answering; a 5xx
		// page is a gateway in front of the API failing, which ErrServer already says.
		e.notAPI = resp.StatusCode < 500
		detail = "non-JSON answer"
		if ct := resp.Header.Get("Content-Type"); ct != "" {
			detail += " (" + ct + ")"
		}
	}
	e.Detail = truncate(c.scrub(detail), maxDetail)
	if ok {
		e.body = []byte(c.scrub(string(b))) // field errors of a rejected body (JobRejectedError)
	}
	return e
}

// scrub removes the key from text a server sent back (an echo of our headers must not leak it).
func (c *Client) scrub(s string) string {
	if c.key == "" || !strings.Contains(s, c.key) {
		return s
	}
	return strings.ReplaceAll(s, c.key, "[redacted]")
}

// getJSON GETs path and decodes the answer into out.
func (c *Client) getJSON(ctx context.Context, path string, q url.Values, out any) error {
	return c.doJSON(ctx, &request{method: http.MethodGet, path: path, query: q}, out)
}

// doJSON sends r and decodes a 2xx answer into out (out nil: the body is ignored).
func (c *Client) doJSON(ctx context.Context, r *request, out any) error {
	return c.do(ctx, r, func(resp *http.Response) error {
		b, err := io.ReadAll(io.LimitReader(resp.Body, maxJSONBody))
		if err != nil {
			return &retryableBody{fmt.Errorf("%s %s: reading answer: %w", r.method, resp.Request.URL.Path, err)}
		}
		if out == nil {
			return nil
		}
		if err := json.Unmarshal(b, out); err != nil {
			detail := "answer is not the expected JSON"
			if ct := resp.Header.Get("Content-Type"); ct != "" && !strings.Contains(ct, "json") {
				detail += " (" + ct + ")"
			} else {
				detail += ": " + c.scrub(err.Error())
			}
			return &APIError{Method: r.method, Path: resp.Request.URL.Path, Status: resp.StatusCode,
				Detail: truncate(detail, maxDetail), notAPI: true}
		}
		return nil
	})
}

// postJSON POSTs body (nil: an empty body) as JSON and decodes the answer into out.
func (c *Client) postJSON(ctx context.Context, path string, body, out any) error {
	r := &request{method: http.MethodPost, path: path}
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("POST %s: %w", path, err)
		}
		r.body = func() (io.Reader, error) { return strings.NewReader(string(b)), nil }
		r.length = int64(len(b))
		r.header = http.Header{"Content-Type": {"application/json"}}
	}
	return c.doJSON(ctx, r, out)
}

// listAll follows a list's pages (page_size PageSize, `next` links absolute or relative) and keeps the
// items keep accepts (nil: all).
func listAll[T any](ctx context.Context, c *Client, path string, q url.Values, keep func(*T) bool) ([]T, error) {
	q = cloneValues(q)
	q.Set("page_size", fmt.Sprint(PageSize))
	r := &request{method: http.MethodGet, path: path, query: q}
	seen := map[string]bool{}
	var out []T
	for n := 0; ; n++ {
		if n >= maxPages {
			return nil, fmt.Errorf("GET %s: more than %d pages", path, maxPages)
		}
		var p page[T]
		if err := c.doJSON(ctx, r, &p); err != nil {
			return nil, err
		}
		if out == nil && p.Count > 0 {
			out = make([]T, 0, min(p.Count, 1<<20))
		}
		for i := range p.Results {
			if keep == nil || keep(&p.Results[i]) {
				out = append(out, p.Results[i])
			}
		}
		if p.Next == nil || *p.Next == "" {
			return out, nil
		}
		next, err := c.resolveNext(c.urlOf(r), *p.Next)
		if err != nil {
			return nil, fmt.Errorf("GET %s: next page: %w", path, err)
		}
		if seen[next.String()] {
			return nil, fmt.Errorf("GET %s: next page link loops", path)
		}
		seen[next.String()] = true
		r = &request{method: http.MethodGet, u: next}
	}
}

// resolveNext turns a `next` link into a URL on our own scheme and host: the link may be relative, and
// an absolute one naming another host (a proxy's view of itself) must never receive our key.
func (c *Client) resolveNext(cur *url.URL, next string) (*url.URL, error) {
	ref, err := url.Parse(next)
	if err != nil {
		return nil, err
	}
	u := cur.ResolveReference(ref)
	if u.Host != c.base.Host || u.Scheme != c.base.Scheme {
		c.log.Debug("rescale api: next link names another host; kept on ours", "host", u.Host)
		u.Scheme, u.Host = c.base.Scheme, c.base.Host
	}
	u.User, u.Fragment = nil, ""
	return u, nil
}

func cloneValues(q url.Values) url.Values {
	out := url.Values{}
	for k, v := range q {
		out[k] = append([]string(nil), v...)
	}
	return out
}

// segment checks an id that goes into a path: it must stay one segment.
func segment(kind, id string) (string, error) {
	if id == "" || id == "." || id == ".." || strings.ContainsAny(id, "/\\?#") {
		return "", fmt.Errorf("invalid %s %q: %w", kind, id, ErrBadRequest)
	}
	return id, nil
}

// CheckAuth makes one cheap request to validate the URL and the key before a mount: ErrUnauthorized
// for a rejected key, ErrNotAPI for a URL that answers but not like the Rescale API (an HTML page, a
// 404 on the jobs list), ErrUnreachable for a URL nothing answers on. It retries little: a person is
// waiting for the answer.
func (c *Client) CheckAuth(ctx context.Context) error {
	var p struct {
		Results json.RawMessage `json:"results"`
	}
	r := &request{method: http.MethodGet, path: "/api/v2/jobs/", query: url.Values{"page_size": {"1"}}, attempts: 3}
	err := c.doJSON(ctx, r, &p)
	switch {
	case err == nil && len(p.Results) == 0:
		return fmt.Errorf("%s: %w: GET /api/v2/jobs/ has no results list", c.base, ErrNotAPI)
	case err == nil:
		return nil
	case errors.Is(err, ErrUnauthorized), errors.Is(err, ErrForbidden):
		return err
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrNotAPI):
		if errors.Is(err, ErrNotAPI) {
			return fmt.Errorf("%s: %w", c.base, err)
		}
		return fmt.Errorf("%s: %w: %w", c.base, ErrNotAPI, err)
	}
	return fmt.Errorf("%s: %w", c.base, err)
}
