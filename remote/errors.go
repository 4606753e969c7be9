package remote

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"unicode/utf8"
)

// Sentinel errors, matched with errors.Is. An *APIError maps its HTTP status to one of them; the body
// checks of ReadRange return them wrapped with the method and path.
var (
	ErrNotFound     = errors.New("not found")                      // 404
	ErrUnauthorized = errors.New("unauthorized: API key rejected") // 401
	ErrForbidden    = errors.New("forbidden")                      // 403
	ErrThrottled    = errors.New("throttled by the platform")      // 429, still after retries
	ErrServer       = errors.New("platform server error")          // 5xx, still after retries
	ErrBadRequest   = errors.New("request rejected")               // 400 and other 4xx
	ErrRange        = errors.New("range not satisfiable")          // 416: a start at or past EOF
	ErrNotAPI       = errors.New("the URL does not answer like a Rescale API")
	ErrShortBody    = errors.New("response body shorter than asked") // cut, or clamped at EOF
	ErrLongBody     = errors.New("response body longer than asked")
	ErrBadRange     = errors.New("Content-Range does not match the request")
	// ErrUnreachable wraps transport errors (DNS, refused, reset, TLS) once retries are exhausted.
	ErrUnreachable = errors.New("platform unreachable")
)

// APIError is an HTTP answer the client did not accept. It names the method and the path without its
// query, so no part of a request that could carry a secret ends up in a message.
type APIError struct {
	Method string
	Path   string
	Status int
	Detail string // from the Django-REST body: "detail", or "field: message" lists

	notAPI bool   // the body was not JSON (an HTML page, a proxy's answer): not a Rescale API
	body   []byte // the JSON error body, bounded and scrubbed of the key
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: %d %s", e.Method, e.Path, e.Status, http.StatusText(e.Status))
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(e.Detail)
	}
	if e.notAPI {
		b.WriteString(" (")
		b.WriteString(ErrNotAPI.Error())
		b.WriteString(")")
	}
	return b.String()
}

// Is maps the status to the sentinels, so callers write errors.Is(err, remote.ErrNotFound).
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrNotAPI:
		return e.notAPI
	case ErrNotFound:
		return e.Status == http.StatusNotFound
	case ErrUnauthorized:
		return e.Status == http.StatusUnauthorized
	case ErrForbidden:
		return e.Status == http.StatusForbidden
	case ErrThrottled:
		return e.Status == http.StatusTooManyRequests
	case ErrServer:
		return e.Status >= 500 && e.Status <= 599
	case ErrRange:
		return e.Status == http.StatusRequestedRangeNotSatisfiable
	case ErrBadRequest:
		switch e.Status {
		case http.StatusNotFound, http.StatusUnauthorized, http.StatusForbidden, http.StatusTooManyRequests:
			return false
		}
		return e.Status >= 400 && e.Status <= 499
	}
	return false
}

// netError is a transport failure: it is ErrUnreachable and keeps the cause (for example
// syscall.ECONNREFUSED) reachable through errors.Is/As.
type netError struct {
	method, path string
	err          error
}

func (e *netError) Error() string {
	return fmt.Sprintf("%s %s: %v: %v", e.method, e.path, ErrUnreachable, e.err)
}
func (e *netError) Unwrap() []error { return []error{ErrUnreachable, e.err} }

// maxErrorBody bounds how much of an error answer is read; the detail is a line, not a page.
const maxErrorBody = 64 << 10

// parseDetail pulls the message out of a Django-REST error body: {"detail": "..."} or
// {"field": ["message", ...], "other": "message"} or ["message", ...]. ok is false when the body is
// not JSON, which callers take as a sign that the URL is not a Rescale API.
func parseDetail(body []byte) (detail string, ok bool) {
	body = []byte(strings.TrimSpace(string(body)))
	if len(body) == 0 {
		return "", true // an empty error body (a bare 404 or 502) says nothing either way
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return "", false
	}
	return flattenDetail(v), true
}

func flattenDetail(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case []any:
		parts := make([]string, 0, len(t))
		for _, x := range t {
			if s := flattenDetail(x); s != "" {
				parts = append(parts, s)
			}
		}
		return strings.Join(parts, "; ")
	case map[string]any:
		if d, ok := t["detail"]; ok {
			return flattenDetail(d)
		}
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, 0, len(keys))
		for _, k := range keys {
			if s := flattenDetail(t[k]); s != "" {
				parts = append(parts, k+": "+s)
			}
		}
		return strings.Join(parts, "; ")
	case nil:
		return ""
	default:
		return fmt.Sprint(t)
	}
}

// maxDetail bounds the detail kept in an error message.
const maxDetail = 300

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}
